# A randomized differential test: seeded sequences of inserts (of new vectors and of copies of
# existing ones), deletes, updates (of the vector, and HOT updates of another column), VACUUM
# and REINDEX (with 1, 2 or the default number of lists, re-ranking from the heap or from the
# index's 8-bit records) on a table with one scann index per
# operator class, checked after every step against a sequential scan.  Vectors come from a
# small integer grid (many exact ties), from floats, and from extreme magnitudes (1e19, 1e-30);
# some are NULL.  At exact settings (every list probed, every candidate re-ranked) an index scan
# returns the sequential scan's rows with the same distances in the same order; at small
# scann.reorder it returns every row exactly once; a filtered LIMIT query returns its LIMIT rows.
# Random vectors are right here: this hunts for lost and repeated rows, not for recall.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('differential');
$node->init;
$node->append_conf('postgresql.conf', "fsync = off\nautovacuum = off");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_scann');

my $dims = 6;
my @ops = (['l2_ops', '<->'], ['ip_ops', '<#>'], ['cosine_ops', '<=>']);

# One vector: grid values (ties), floats, or extreme magnitudes; never all zero (cosine does
# not index zero vectors, which have no direction).
sub vector {
	my $kind = rand();
	my @v;
	for (1 .. $dims) {
		if ($kind < 0.55) { push @v, int(rand(5)) - 2 }
		elsif ($kind < 0.9) { push @v, sprintf('%.6g', rand(2) - 1) }
		elsif ($kind < 0.95) { push @v, (rand() < 0.5 ? -1 : 1) * (rand() < 0.5 ? 1e19 : 3e18) }
		else { push @v, sprintf('%.3g', rand() * 1e-30) }
	}
	$v[0] = 1 unless grep { $_ != 0 } @v;
	return '{' . join(',', @v) . '}';
}

sub value { return rand() < 0.05 ? 'NULL' : "'" . vector() . "'" }

my $next_id = 1;
sub insert_rows {
	my ($count) = @_;
	my @rows = map { '(' . $next_id++ . ', ' . int(rand(7)) . ', ' . value() . ')' } 1 .. $count;
	$node->safe_psql('postgres', 'INSERT INTO d VALUES ' . join(', ', @rows));
}

sub some_ids {
	my ($count) = @_;
	return join(',', map { 1 + int(rand($next_id)) } 1 .. $count);
}

# Rows and distances of ORDER BY v <op> q over the whole table, by index or by sequential
# scan: "distances|ids", distances in scan order, ids sorted.
sub ordered {
	my ($op, $q, $use_index, $reorder) = @_;
	my $plan = $use_index
	  ? "SET enable_seqscan = off; SET enable_indexscan = on; SET scann.nprobe = 100000; SET scann.reorder = $reorder;"
	  : 'SET enable_seqscan = on; SET enable_indexscan = off;';
	return $node->safe_psql('postgres', qq{$plan
SELECT string_agg(d::text, ',' ORDER BY n) || '|' || string_agg(id::text, ',' ORDER BY id)
  FROM (SELECT id, v $op '$q' AS d, row_number() OVER () AS n
          FROM (SELECT id, v FROM d WHERE v IS NOT NULL ORDER BY v $op '$q') s) t});
}

sub check {
	my ($what) = @_;
	my $q = vector();
	for my $o (@ops) {
		my ($ops, $op) = @$o;
		my $seq = ordered($op, $q, 0);
		my $exact = ordered($op, $q, 1, 100000);
		if ($exact ne $seq) {
			fail("$what, $ops, q = $q: an exact index scan differs from a sequential scan");
			diag("index: $exact\nseq:   $seq");
			return 0;
		}
		my ($ids) = $seq =~ /\|(.*)$/;
		my ($small) = ordered($op, $q, 1, 1 + int(rand(4))) =~ /\|(.*)$/;
		if (($small // '') ne ($ids // '')) {
			fail("$what, $ops, q = $q: small batches lost or repeated rows");
			diag("index: $small\nseq:   $ids");
			return 0;
		}
		my $g = int(rand(7));
		my ($want, $got) = split /\|/, $node->safe_psql('postgres', qq{
SET enable_seqscan = off; SET scann.nprobe = 1; SET scann.reorder = 2;
SELECT (SELECT least(count(*), 15) FROM d WHERE g = $g AND v IS NOT NULL) || '|' ||
       (SELECT count(*) FROM (SELECT id FROM d WHERE g = $g ORDER BY v $op '$q' LIMIT 15) s)});
		if ($want ne $got) {
			fail("$what, $ops, q = $q: a filtered query returned $got of its $want rows");
			return 0;
		}
	}
	return 1;
}

my $failures = 0;
for my $seed (11, 23, 37) {
	srand($seed);
	$next_id = 1;
	$node->safe_psql('postgres', q{DROP TABLE IF EXISTS d;
CREATE TABLE d (id int PRIMARY KEY, g int, v real[]) WITH (fillfactor = 70);
SET client_min_messages = warning;
CREATE INDEX d_l2 ON d USING scann (v l2_ops);
CREATE INDEX d_ip ON d USING scann (v ip_ops);
CREATE INDEX d_cos ON d USING scann (v cosine_ops);});
	my $steps = 0;
	for my $step (1 .. 45) {
		my $r = rand();
		my $what;
		if ($r < 0.3) { my $n = 1 + int(rand(120)); insert_rows($n); $what = "insert $n" }
		elsif ($r < 0.4) {
			my $n = 1 + int(rand(200));
			$node->safe_psql('postgres', "INSERT INTO d SELECT $next_id + row_number() OVER (), g, v "
				  . "FROM (SELECT g, v FROM d ORDER BY id % 7, id LIMIT $n) s");
			$next_id += $n + 1;
			$what = "insert $n copies";
		}
		elsif ($r < 0.5) {
			$node->safe_psql('postgres', 'DELETE FROM d WHERE id IN (' . some_ids(1 + int(rand(40))) . ')');
			$what = 'delete';
		}
		elsif ($r < 0.62) {
			$node->safe_psql('postgres', 'UPDATE d SET v = ' . value() . ' WHERE id IN (' . some_ids(1 + int(rand(20))) . ')');
			$what = 'update v';
		}
		elsif ($r < 0.74) {
			$node->safe_psql('postgres', 'UPDATE d SET g = (g + 1) % 7 WHERE id IN (' . some_ids(1 + int(rand(30))) . ')');
			$what = 'HOT update';
		}
		elsif ($r < 0.86) { $node->safe_psql('postgres', 'VACUUM d'); $what = 'VACUUM' }
		else {
			my $lists = (1, 2, 0)[ int(rand(3)) ];
			my $rerank = rand() < 0.5 ? 'sq8' : 'heap';
			$node->safe_psql('postgres', join('; ', 'SET client_min_messages = warning',
				(map { "ALTER INDEX $_ SET (lists = $lists, rerank = '$rerank')" } qw(d_l2 d_ip d_cos)),
				'REINDEX TABLE d'));
			$what = "REINDEX with lists = $lists, rerank = $rerank";
		}
		$steps++;
		next if check("seed $seed step $step ($what)");
		$failures++;
		last;
	}
	my $rows = $node->safe_psql('postgres', 'SELECT count(*) FROM d');
	ok($failures == 0, "seed $seed: $steps random steps on up to $rows rows, every check equal to a sequential scan");
}

$node->stop;
done_testing();

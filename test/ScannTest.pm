# Shared helpers of the TAP suite: the real data sets prepared by bench/datasets.py
# (cached under $PG_SCANN_DATA), loading them into a node, exact answers computed here
# in Perl, and recall.
package ScannTest;

use strict;
use warnings;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;

my $data_root = $ENV{PG_SCANN_DATA} || '/var/tmp/pg_scann-data';

# The data set's info.json plus its directory; dies (failing the test) when missing.
sub dataset {
	my ($name) = @_;
	my $dir = "$data_root/$name";
	open(my $fh, '<', "$dir/info.json")
	  or BAIL_OUT("data set $name is not prepared ($dir): run bench/datasets.py prepare $name");
	local $/;
	my $info = decode_json(<$fh>);
	close $fh;
	$info->{dir} = $dir;
	return $info;
}

# Loads the first $rows base rows into TABLE(id bigint primary key, embedding real[]).
sub load_table {
	my ($node, $table, $set, $rows) = @_;
	$node->safe_psql('postgres',
		"CREATE TABLE $table (id bigint PRIMARY KEY, embedding real[]);"
		  . "COPY $table FROM PROGRAM 'head -n $rows $set->{dir}/base.tsv';"
		  . "ANALYZE $table;");
}

# Loads the first $rows base rows into TABLE(id bigint primary key, embedding TYPE), by a cast
# from real[] (double precision[], or pgvector's vector and halfvec).
sub load_table_as {
	my ($node, $table, $set, $rows, $type) = @_;
	load_table($node, "${table}_real", $set, $rows);
	typed_copy($node, "${table}_real", $table, $type);
}

# Loads the first $count held-out queries into TABLE(id bigint primary key, embedding TYPE).
sub load_queries_as {
	my ($node, $table, $set, $count, $type) = @_;
	load_queries($node, "${table}_real", $set, $count);
	typed_copy($node, "${table}_real", $table, $type);
}

# Replaces TABLE(id, embedding real[]) SOURCE by TARGET with the embeddings cast to TYPE.
sub typed_copy {
	my ($node, $source, $target, $type) = @_;
	$node->safe_psql('postgres',
		"CREATE TABLE $target (id bigint PRIMARY KEY, embedding $type);"
		  . "INSERT INTO $target SELECT id, embedding::$type FROM $source;"
		  . "DROP TABLE $source; ANALYZE $target;");
}

# Reads $count float32 rows of $set->{dim} starting at row $first of FILE.
sub read_rows {
	my ($set, $file, $first, $count) = @_;
	my $dim = $set->{dim};
	open(my $fh, '<:raw', "$set->{dir}/$file") or die "cannot open $file: $!";
	seek($fh, $first * $dim * 4, 0) or die "seek: $!";
	my @rows;
	for (1 .. $count) {
		my $got = read($fh, my $buf, $dim * 4);
		last unless $got && $got == $dim * 4;
		push @rows, [ unpack('f<*', $buf) ];
	}
	close $fh;
	return \@rows;
}

sub query_vector { my ($set, $i) = @_; return read_rows($set, 'queries.f32', $i, 1)->[0]; }

# A real[] literal that round-trips float32 exactly.
sub literal { my ($v) = @_; return '{' . join(',', map { sprintf('%.9g', $_) } @$v) . '}'; }

sub query_literal { my ($set, $i) = @_; return literal(query_vector($set, $i)); }

# Distance of two vectors by metric name (l2, ip = negative inner product, cosine).
sub distance {
	my ($metric, $a, $b) = @_;
	my ($dot, $na, $nb, $l2) = (0, 0, 0, 0);
	for my $i (0 .. $#$a) {
		$dot += $a->[$i] * $b->[$i];
		$na += $a->[$i]**2;
		$nb += $b->[$i]**2;
		$l2 += ($a->[$i] - $b->[$i])**2;
	}
	return sqrt($l2) if $metric eq 'l2';
	return -$dot if $metric eq 'ip';
	return 1 - $dot / sqrt($na * $nb);
}

# Ids of the k nearest base rows (all rows of the set) to $q, ties by id.
sub exact_top_k {
	my ($set, $metric, $q, $k) = @_;
	my $base = read_rows($set, 'base.f32', 0, $set->{rows});
	my @d = map { [ distance($metric, $q, $base->[$_]), $_ ] } 0 .. $#$base;
	my @sorted = sort { $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1] } @d;
	return map { $_->[1] } @sorted[ 0 .. $k - 1 ];
}

# Loads the first $count held-out queries into TABLE(id bigint primary key, embedding real[]).
sub load_queries {
	my ($node, $table, $set, $count) = @_;
	$node->safe_psql('postgres',
		"CREATE TABLE $table (id bigint PRIMARY KEY, embedding real[]);"
		  . "COPY $table FROM PROGRAM 'head -n $count $set->{dir}/queries.tsv';");
}

# Recall@10 of index scans against exact (sequential) scans, over every query of
# $a{queries}: a returned row is a hit when its distance is within the exact 10th
# distance (data sets with duplicate rows have ties).  Options: table, queries, op, where
# (a filter), settings (GUC => value for the index scans).  Also checks the plan.
sub recall_at_10 {
	my ($node, %a) = @_;
	my ($t, $q, $op) = @a{qw(table queries op)};
	my $where = $a{where} ? "WHERE $a{where}" : '';
	my $set = join('', map { "SET $_ = $a{settings}{$_};" } sort keys %{ $a{settings} || {} });
	my $knn = sub {
		return "(SELECT t.embedding $op q.embedding AS d FROM $t t $where "
		  . "ORDER BY t.embedding $op q.embedding LIMIT 10)";
	};
	my $plan = $node->safe_psql('postgres',
		"SET enable_seqscan = off; $set EXPLAIN (COSTS OFF) SELECT id FROM $t t $where "
		  . "ORDER BY embedding $op (SELECT embedding FROM $q LIMIT 1) LIMIT 10");
	die "the index is not used:
$plan" unless $plan =~ /Index Scan using/;
	my $result = $node->safe_psql(
		'postgres', qq{
SET enable_indexscan = off;
CREATE TEMP TABLE exact AS
  SELECT q.id AS qid, (SELECT max(d) FROM @{[ $knn->() ]} s) AS kth FROM $q q;
RESET enable_indexscan;
SET enable_seqscan = off;
$set
SELECT round(avg(hits) / 10.0, 4) || ' ' || min(n) FROM (
  SELECT (SELECT count(*) FILTER (WHERE s.d <= e.kth + 1e-6 * abs(e.kth) + 1e-9) FROM @{[ $knn->() ]} s) AS hits,
         (SELECT count(*) FROM @{[ $knn->() ]} s) AS n
    FROM $q q JOIN exact e ON e.qid = q.id) r;
});
	my ($recall, $min_rows) = split / /, $result;
	return wantarray ? ($recall, $min_rows) : $recall;
}

# Blocks whose contents differ between two indexes of the same database, LSN and checksum
# aside (the first 10 bytes of the page header); 'size' when their lengths differ.  In the
# metapage (block 0), differences within one 8-byte field are allowed: the time the build
# measured its recall calibration.  Needs pageinspect.
sub differing_pages {
	my ($node, $a, $b) = @_;
	return $node->safe_psql('postgres', qq{
SELECT CASE WHEN pg_relation_size('$a') <> pg_relation_size('$b') THEN 'size'
  ELSE (SELECT count(*) FROM generate_series(0, pg_relation_size('$a') / 8192 - 1) b,
               LATERAL (SELECT get_raw_page('$a', b::int) AS pa, get_raw_page('$b', b::int) AS pb) p
        WHERE CASE WHEN b = 0
                   THEN (SELECT coalesce(max(i) - min(i) >= 8, false) FROM generate_series(10, 8191) i
                          WHERE get_byte(pa, i) <> get_byte(pb, i))
                   ELSE substr(pa, 11) <> substr(pb, 11) END)::text
  END});
}

# Runs `$code` while one client inserts copies of random rows among the first $rows of
# TABLE(id, embedding) for 5 seconds (started a second earlier, so inserts overlap every
# phase of what $code runs); returns the number of rows inserted. Ids of the copies come
# from a sequence copy_ids starting at 1,000,000.
sub while_inserting {
	my ($node, $table, $rows, $code) = @_;
	$node->safe_psql('postgres', 'CREATE SEQUENCE IF NOT EXISTS copy_ids START 1000000');
	my $script = $node->basedir . "/insert_$table.sql";
	unlink $script;
	append_to_file($script,
		"\\set r random(1, $rows)\n"
		  . "INSERT INTO $table SELECT nextval('copy_ids'), embedding FROM $table WHERE id = :r;\n");
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[
			'pgbench', '--no-vacuum', '--client=1', '--time=5', '-f', $script,
			'-h', $node->host, '-p', $node->port, 'postgres'
		],
		'>', \$out, '2>', \$err);
	sleep 1;
	$code->();
	$h->finish;
	my ($processed) = $out =~ /number of transactions actually processed: (\d+)/;
	return $processed // 0;
}

# A scan of every list of TABLE's index ordered by `$op` (<=> unless given) to the row with
# id 7, re-ranking `$reorder` candidates a batch (all rows unless given): "rows
# distinct_ids", which is "N N" when the index returns each of the table's N rows exactly
# once.
sub scan_all {
	my ($node, $table, $op, $reorder) = @_;
	$op //= '<=>';
	my $rows = $node->safe_psql('postgres', "SELECT count(*) FROM $table");
	$reorder //= $rows;
	return $node->safe_psql('postgres', qq{SET enable_seqscan = off;
SET scann.nprobe = 10000; SET scann.reorder = $reorder;
SELECT count(*) || ' ' || count(DISTINCT id) FROM (SELECT id FROM $table
  ORDER BY embedding $op (SELECT embedding FROM $table WHERE id = 7) LIMIT $rows) s});
}

# Checks scan_all: each of TABLE's rows comes back once.
sub every_row_once {
	my ($node, $table, $what, $op) = @_;
	my $rows = $node->safe_psql('postgres', "SELECT count(*) FROM $table");
	is(scan_all($node, $table, $op), "$rows $rows",
		"$what: a scan of every list returns each of the $rows rows once");
}

# Recall of @$got against @$expected (ids), as a fraction of @$expected.
sub recall {
	my ($got, $expected) = @_;
	my %want = map { $_ => 1 } @$expected;
	my $hits = grep { $want{$_} } @$got;
	return @$expected ? $hits / scalar(@$expected) : 1;
}

1;

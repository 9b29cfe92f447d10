# The annoy variant (WITH (variant = 'annoy')) on real data: recall@10 against exact scans
# (MiniLM, Fashion-MNIST, GloVe cosine and inner product), at the calibrated defaults, rising
# with scann.nprobe and with trees; filtered queries; a parallel build writing the pages of a serial one; inserts,
# deletes, VACUUM and slot reuse followed by a streaming standby with WAL consistency
# checks; a relcache flush in the middle of a scan; a corrupt forest refused; crash recovery
# during concurrent inserts.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test';
use ScannTest;

my $primary = PostgreSQL::Test::Cluster->new('annoy_primary');
$primary->init(allows_streaming => 1);
# wal_consistency_checking: the standby's replay (and crash recovery) compares every page a
# generic WAL record produces with the image the primary logged with it.
$primary->append_conf('postgresql.conf', qq{
maintenance_work_mem = '256MB'
max_parallel_maintenance_workers = 2
max_wal_size = '4GB'
max_connections = 20
wal_consistency_checking = 'generic'
});
$primary->start;
$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('annoy_standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION pg_scann; CREATE EXTENSION pageinspect');

# MiniLM, all 778 rows, cosine, default trees and leaf size.
my $minilm = ScannTest::dataset('minilm');
ScannTest::load_table($primary, 'minilm', $minilm, $minilm->{rows});
ScannTest::load_queries($primary, 'minilm_q', $minilm, 100);
$primary->safe_psql('postgres',
	"CREATE INDEX minilm_idx ON minilm USING scann (embedding cosine_ops) WITH (variant = 'annoy')");
is($primary->safe_psql('postgres',
		q{SELECT variant || ' ' || trees || ' ' || entries / trees FROM scann_index_info('minilm_idx')}),
	'annoy 4 778', 'MiniLM: an annoy index of 4 trees, each holding every row');
my $r = ScannTest::recall_at_10($primary, table => 'minilm', queries => 'minilm_q', op => '<=>',
	settings => { 'scann.nprobe' => 20 });
cmp_ok($r, '>=', 0.95, "MiniLM cosine recall\@10 (4 trees, nprobe 20 leaves): $r");

# Fashion-MNIST, 20,000 rows, l2.
my $fashion = ScannTest::dataset('fashion-mnist');
ScannTest::load_table($primary, 'fashion', $fashion, 20000);
ScannTest::load_queries($primary, 'fashion_q', $fashion, 100);
$primary->safe_psql('postgres', q{
CREATE TABLE fashion_q50 AS SELECT * FROM fashion_q WHERE id < 50;
CREATE INDEX fashion_idx ON fashion USING scann (embedding l2_ops) WITH (variant = 'annoy');
});
$r = ScannTest::recall_at_10($primary, table => 'fashion', queries => 'fashion_q', op => '<->',
	settings => { 'scann.nprobe' => 16 });
cmp_ok($r, '>=', 0.95, "Fashion-MNIST l2 recall\@10 (4 trees, nprobe 16 leaves): $r");
# Without scann.nprobe (-1), the leaves the build's recall calibration picks for
# scann.target_recall (0.95, measured on rows of the table).
$r = ScannTest::recall_at_10($primary, table => 'fashion', queries => 'fashion_q', op => '<->');
cmp_ok($r, '>=', 0.93, "Fashion-MNIST l2 recall\@10 at the defaults (target recall 0.95): $r");
my @sweep;
for my $nprobe (2, 4, 16) {
	push @sweep, scalar ScannTest::recall_at_10($primary, table => 'fashion',
		queries => 'fashion_q50', op => '<->', settings => { 'scann.nprobe' => $nprobe });
}
ok($sweep[0] < $sweep[1] && $sweep[1] < $sweep[2], "recall rises with nprobe 2, 4, 16: @sweep");
# A filter keeping about 10% of the rows: LIMIT 10 still returns 10 rows.
my ($fr, $rows) = ScannTest::recall_at_10($primary, table => 'fashion', queries => 'fashion_q50',
	op => '<->', where => 't.id % 10 = 3', settings => { 'scann.nprobe' => 32 });
is($rows, 10, 'with a 10% filter, LIMIT 10 returns 10 rows for every query');
cmp_ok($fr, '>=', 0.9, "recall\@10 against the exact filtered query: $fr");
# Each row sits in 4 leaves; a scan of every leaf, 37 candidates a batch, returns it once.
is(ScannTest::scan_all($primary, 'fashion', '<->', 37), '20000 20000',
	'a scan of every leaf returns each of the 20,000 rows once');
$primary->safe_psql('postgres', 'DROP INDEX fashion_idx');

# GloVe, 50,000 rows, cosine: a serial and a parallel build write the same pages.
my $glove = ScannTest::dataset('glove-100');
ScannTest::load_table($primary, 'glove', $glove, 50000);
ScannTest::load_queries($primary, 'glove_q', $glove, 100);
$primary->safe_psql('postgres', 'ALTER TABLE glove SET (parallel_workers = 2)');
$primary->safe_psql('postgres', q{SET max_parallel_maintenance_workers = 0;
CREATE INDEX glove_idx ON glove USING scann (embedding cosine_ops) WITH (variant = 'annoy')});
my ($ret, $stdout, $stderr) = $primary->psql('postgres', q{SET client_min_messages = debug1;
CREATE INDEX glove_parallel ON glove USING scann (embedding cosine_ops) WITH (variant = 'annoy')});
like($stderr, qr/encodes rows with 2 parallel workers/, 'GloVe: the parallel build uses 2 workers');
is(ScannTest::differing_pages($primary, 'glove_idx', 'glove_parallel'), '0',
	'every page of the parallel build equals the serial build\'s');
$primary->safe_psql('postgres', 'DROP INDEX glove_parallel');
$r = ScannTest::recall_at_10($primary, table => 'glove', queries => 'glove_q', op => '<=>',
	settings => { 'scann.nprobe' => 512, 'scann.reorder' => 200 });
cmp_ok($r, '>=', 0.95, "GloVe cosine recall\@10 (4 trees, nprobe 512 leaves, reorder 200): $r");

# Recall rises with trees at the same leaves probed (leaves of the same size).
my %by_trees;
$by_trees{4} = ScannTest::recall_at_10($primary, table => 'glove', queries => 'glove_q',
	op => '<=>', settings => { 'scann.nprobe' => 64 });
$primary->safe_psql('postgres', 'DROP INDEX glove_idx');
for my $trees (1, 2) {
	$primary->safe_psql('postgres',
		"CREATE INDEX glove_idx ON glove USING scann (embedding cosine_ops) WITH (variant = 'annoy', trees = $trees)");
	$by_trees{$trees} = ScannTest::recall_at_10($primary, table => 'glove',
		queries => 'glove_q', op => '<=>', settings => { 'scann.nprobe' => 64 });
	$primary->safe_psql('postgres', 'DROP INDEX glove_idx');
}
ok($by_trees{1} < $by_trees{2} && $by_trees{2} < $by_trees{4},
	"recall at nprobe 64 rises with 1, 2, 4 trees: @by_trees{1, 2, 4}");

# Inner product on the same, unnormalized rows (T scaled to their norms, as in 002_recall).
$primary->safe_psql('postgres',
	"CREATE INDEX glove_ip ON glove USING scann (embedding ip_ops) WITH (variant = 'annoy', anisotropic_threshold = 0.37)");
$r = ScannTest::recall_at_10($primary, table => 'glove', queries => 'glove_q', op => '<#>',
	settings => { 'scann.nprobe' => 1024, 'scann.reorder' => 200 });
cmp_ok($r, '>=', 0.95, "GloVe inner-product recall\@10 (4 trees, nprobe 1024 leaves, reorder 200): $r");
$primary->safe_psql('postgres', 'DROP INDEX glove_ip');

# Inserts, deletes, VACUUM and slot reuse, on the primary and its standby: build on half of
# Fashion-MNIST's 20,000 rows, insert the other half, delete every fifth row, vacuum, insert
# the deleted vectors again.
$primary->safe_psql('postgres', q{
CREATE TABLE grow (id bigint PRIMARY KEY, embedding real[]);
INSERT INTO grow SELECT * FROM fashion WHERE id < 10000;
CREATE INDEX grow_idx ON grow USING scann (embedding l2_ops) WITH (variant = 'annoy');
});

# Top-20 ids of 20 queries through the index, as one string.
sub answers {
	my ($node) = @_;
	return $node->safe_psql('postgres', q{
SET enable_seqscan = off; SET scann.nprobe = 8;
SELECT string_agg(r, ';' ORDER BY qid) FROM (
  SELECT q.id AS qid, (SELECT string_agg(id::text, ',') FROM (SELECT id FROM grow ORDER BY embedding <-> q.embedding LIMIT 20) s) AS r
    FROM fashion_q q WHERE q.id < 20) a});
}

sub compare {
	my ($what) = @_;
	$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
	my $p = answers($primary);
	like($p, qr/^\d+(,\d+){19}(;\d+(,\d+){19}){19}$/, "$what: the primary answers 20 queries with 20 rows each");
	is(answers($standby), $p, "$what: the standby returns the same results as the primary");
}

compare('after build');
$primary->safe_psql('postgres', 'INSERT INTO grow SELECT * FROM fashion WHERE id >= 10000');
compare('after inserts');
is($primary->safe_psql('postgres', q{SELECT largest_list > leaf_size FROM scann_index_info('grow_idx')}),
	't', 'leaves grow past the leaf size with inserts (the trees never change)');
$primary->safe_psql('postgres', q{
CREATE TABLE grow_deleted AS SELECT * FROM grow WHERE id % 5 = 0;
DELETE FROM grow WHERE id % 5 = 0;
VACUUM grow;
});
compare('after deletes and VACUUM');
is($primary->safe_psql('postgres', q{SELECT entries || ' ' || trees FROM scann_index_info('grow_idx')}),
	'64000 4', 'VACUUM freed the 4 slots of each deleted row');
$r = ScannTest::recall_at_10($primary, table => 'grow', queries => 'fashion_q', op => '<->',
	settings => { 'scann.nprobe' => 16 });
cmp_ok($r, '>=', 0.95, "recall after inserts, deletes and VACUUM (nprobe 16): $r");
is($primary->safe_psql('postgres', q{
SET enable_seqscan = off; SET scann.nprobe = 16;
SELECT count(*) FROM fashion_q q, LATERAL (SELECT id FROM grow ORDER BY embedding <-> q.embedding LIMIT 50) s
 WHERE s.id % 5 = 0}), '0', 'deleted rows are never returned');
my $size_sql = "SELECT pg_relation_size('grow_idx')";
my $size_before = $primary->safe_psql('postgres', $size_sql);
$primary->safe_psql('postgres', 'INSERT INTO grow SELECT id + 100000, embedding FROM grow_deleted');
is($primary->safe_psql('postgres', $size_sql), $size_before,
	'the deleted vectors inserted again fill the freed slots of their leaves: the index does not grow');
compare('after reusing freed slots');
is(ScannTest::scan_all($standby, 'grow', '<->', 53), '20000 20000',
	'the standby\'s index returns each of the 20,000 rows once');
unlike(slurp_file($standby->logfile), qr/inconsistent page found/,
	'every page the standby replayed equals the image the primary logged with it');
$standby->stop;

# A relcache flush between two batches of a scan frees the index's cached state
# (rd_amcache): ANALYZE of rows inserted meanwhile updates the index's pg_class row, whose
# invalidation this backend processes at its next command.  The scan goes on (its leaf search
# walks its own share of the forest) and returns each row of its snapshot once.
$primary->safe_psql('postgres', q{
CREATE TABLE got (id bigint);
DO $$
DECLARE
  c refcursor;
  r record;
BEGIN
  SET LOCAL enable_seqscan = off;
  SET LOCAL scann.nprobe = 2;
  SET LOCAL scann.reorder = 50;
  OPEN c FOR SELECT id FROM grow ORDER BY embedding <-> (SELECT embedding FROM fashion_q WHERE id = 3);
  FOR i IN 1..60 LOOP
    FETCH c INTO r;
    INSERT INTO got VALUES (r.id);
  END LOOP;
  INSERT INTO grow SELECT id + 200000, embedding FROM fashion WHERE id < 300;
  ANALYZE grow;
  LOOP
    FETCH c INTO r;
    EXIT WHEN NOT FOUND;
    INSERT INTO got VALUES (r.id);
  END LOOP;
END $$;
});
is($primary->safe_psql('postgres', q{SELECT count(*) || ' ' || count(DISTINCT id) || ' ' || count(*) FILTER (WHERE id >= 200000) FROM got}),
	'20000 20000 0', 'a scan across a relcache flush returns each of its 20,000 rows once');
is($primary->safe_psql('postgres', q{SELECT reltuples FROM pg_class WHERE relname = 'grow_idx'}),
	'20300', 'the ANALYZE in the middle of the scan changed the index\'s pg_class row');

# A corrupt forest (one byte of its stream changed on disk) is refused with an error, never
# walked; REINDEX repairs the index.
my $query = q{SET enable_seqscan = off;
SELECT string_agg(id::text, ',') FROM
  (SELECT id FROM minilm ORDER BY embedding <=> (SELECT embedding FROM minilm WHERE id = 7) LIMIT 5) s};
my $before = $primary->safe_psql('postgres', $query);
like($before, qr/^7,/, 'MiniLM: a row is its own nearest neighbour');
# The forest's stream starts with "ANOY" right after a page header.
my $block = $primary->safe_psql('postgres', q{
SELECT b FROM generate_series(0, pg_relation_size('minilm_idx') / 8192 - 1) b
 WHERE substr(get_raw_page('minilm_idx', b::int), 25, 4) = 'ANOY'::bytea});
like($block, qr/^\d+$/, "the forest's stream starts on block $block");
my $path = $primary->data_dir . '/'
  . $primary->safe_psql('postgres', q{SELECT pg_relation_filepath('minilm_idx')});
$primary->stop;
open(my $fh, '+<:raw', $path) or die "cannot open $path: $!";
seek($fh, $block * 8192 + 24 + 1000, 0) or die "seek: $!";
read($fh, my $byte, 1) == 1 or die "read: $!";
seek($fh, $block * 8192 + 24 + 1000, 0) or die "seek: $!";
print $fh chr(ord($byte) ^ 0x10);
close($fh) or die "close: $!";
$primary->start;
($ret, $stdout, $stderr) = $primary->psql('postgres', "\\set VERBOSITY verbose\n$query");
like($stderr, qr/ERROR:  XX002: scann index "minilm_idx" has a corrupt annoy forest/,
	'a scan through the corrupt forest fails with SQLSTATE XX002 (index_corrupted)');
like($stderr, qr/DETAIL:  The forest stream fails its check: annoy forest stream: checksum mismatch/,
	'saying what is wrong');
like($stderr, qr/HINT:  REINDEX the index/, 'and how to recover');
($ret, $stdout, $stderr) = $primary->psql('postgres',
	'INSERT INTO minilm SELECT 100000, embedding FROM minilm WHERE id = 1');
like($stderr, qr/has a corrupt annoy forest/, 'an insert fails the same way instead of routing through it');
$primary->safe_psql('postgres', 'REINDEX INDEX minilm_idx');
is($primary->safe_psql('postgres', $query), $before, 'after REINDEX the index answers as before');

# Crash recovery: an immediate shutdown while four clients insert; afterwards the index holds
# every committed row once, and each of the last rows inserted is its own nearest neighbour.
$primary->safe_psql('postgres', q{
CREATE TABLE t (id bigserial PRIMARY KEY, src_id bigint, embedding real[]);
INSERT INTO t (src_id, embedding) SELECT id, embedding FROM glove WHERE id < 5000;
CREATE INDEX t_idx ON t USING scann (embedding cosine_ops) WITH (variant = 'annoy');
CHECKPOINT;
});
my $script = $primary->basedir . '/insert.sql';
append_to_file($script,
	"\\set id random(5000, 19999)\nINSERT INTO t (src_id, embedding) SELECT id, embedding FROM glove WHERE id = :id;\n");
my ($out, $err) = ('', '');
my $pgbench = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '4', '-j', '2', '-T', '60', '-f', $script, '-h', $primary->host,
	  '-p', $primary->port, 'postgres' ],
	'>', \$out, '2>', \$err);
$primary->poll_query_until('postgres', 'SELECT count(*) > 1500 FROM t WHERE src_id >= 5000')
  or die 'inserts did not start';
$primary->stop('immediate');
$pgbench->finish;
$primary->start;
$rows = $primary->safe_psql('postgres', 'SELECT count(*) FROM t');
cmp_ok($rows, '>', 6500, "rows committed before the crash survived recovery: $rows");
is(ScannTest::scan_all($primary, 't', '<=>', 101), "$rows $rows",
	'the recovered index returns every committed row once');
is($primary->safe_psql('postgres', q{
SET enable_seqscan = off; SET scann.nprobe = 40;
SELECT count(*) FROM (SELECT * FROM t WHERE src_id >= 5000 ORDER BY id DESC LIMIT 200) r
 WHERE (SELECT min(x.embedding <=> r.embedding) FROM
         (SELECT embedding FROM t ORDER BY embedding <=> r.embedding LIMIT 1) x) < 1e-6}),
	'200', 'each of the last 200 inserted rows is its own nearest neighbour through the index');
unlike(slurp_file($primary->logfile), qr/inconsistent page found/,
	'every page crash recovery replayed equals the image logged with it');

$primary->stop;
done_testing();

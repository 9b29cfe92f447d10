# pgvector's vector and halfvec columns through pg_scann_pgvector's operator classes, on
# pgvector's own operators: CREATE EXTENSION ... CASCADE, the validator, the name clash of
# untyped literals, recall@10 on GloVe (50,000 rows, cosine) and Fashion-MNIST (20,000 rows,
# l2) for both types, plans that use the index for pgvector's operators unchanged, answers
# equal to exact scans with pgvector's own distances (re-ranked from the table with the
# operator's function, and from 8-bit records as lower bounds the executor rechecks), the
# order of pgvector's distances kept, inserts, deletes and VACUUM, and 16,000 dimensions;
# recall calibration at the build and on vector and halfvec queries (scann_recalibrate),
# scann_measure_recall, and the annoy variant (records and table) on both types.
# Skipped when the server has no vector extension.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test';
use ScannTest;

my $node = PostgreSQL::Test::Cluster->new('pgvector');
$node->init;
$node->append_conf('postgresql.conf', "maintenance_work_mem = 512MB\nmax_wal_size = 4GB\nfsync = off");
$node->start;
if ($node->safe_psql('postgres', "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'") ne '1') {
	$node->stop;
	plan skip_all => 'the vector extension (pgvector) is not installed in this PostgreSQL';
}

my ($ret, $out, $err) = $node->psql('postgres', 'CREATE EXTENSION pg_scann_pgvector CASCADE');
like($err, qr/installing required extension "pg_scann".*installing required extension "vector"/s,
	'CREATE EXTENSION pg_scann_pgvector CASCADE installs pg_scann and vector');
is($node->safe_psql('postgres', q{
SELECT string_agg(opcname || ' ' || amvalidate(c.oid), ', ' ORDER BY opcname)
  FROM pg_opclass c JOIN pg_am a ON a.oid = c.opcmethod
 WHERE a.amname = 'scann' AND opcintype IN ('vector'::regtype, 'halfvec'::regtype)}),
	'halfvec_cosine_ops true, halfvec_ip_ops true, halfvec_l2_ops true, vector_cosine_ops true, vector_ip_ops true, vector_l2_ops true',
	'the six operator classes pass the validator');

# Two untyped literals could be real[], double precision[], vector, halfvec or sparsevec; a
# cast on either side settles it.
($ret, $out, $err) = $node->psql('postgres', q{SELECT '{1,2,3}' <-> '{1,2,4}'});
like($err, qr/operator is not unique: unknown <-> unknown/, 'untyped literals are ambiguous');
is($node->safe_psql('postgres', q{
SELECT '[1,2,3]'::vector <-> '[1,2,4]', '[1,2,3]'::halfvec <-> '[1,2,4]', '{1,2,3}'::real[] <-> '{1,2,4}'}),
	'1|1|1', 'one cast resolves the operator');

my $glove = ScannTest::dataset('glove-100');
my $fashion = ScannTest::dataset('fashion-mnist');
ScannTest::load_table_as($node, 'glove_v', $glove, 50000, 'vector(100)');
ScannTest::load_queries_as($node, 'glove_vq', $glove, 100, 'vector(100)');
ScannTest::load_table_as($node, 'fashion_v', $fashion, 20000, 'vector(784)');
ScannTest::load_queries_as($node, 'fashion_vq', $fashion, 100, 'vector(784)');
$node->safe_psql('postgres', q{
CREATE TABLE glove_h (id bigint PRIMARY KEY, embedding halfvec(100));
INSERT INTO glove_h SELECT id, embedding::halfvec(100) FROM glove_v;
CREATE TABLE glove_hq AS SELECT id, embedding::halfvec(100) AS embedding FROM glove_vq;
CREATE TABLE fashion_h (id bigint PRIMARY KEY, embedding halfvec(784));
INSERT INTO fashion_h SELECT id, embedding::halfvec(784) FROM fashion_v;
CREATE TABLE fashion_hq AS SELECT id, embedding::halfvec(784) AS embedding FROM fashion_vq;
ANALYZE glove_h, fashion_h;
-- The last rows of two tables wait to be inserted after the build.
CREATE TABLE glove_v_later AS SELECT * FROM glove_v WHERE id >= 45000;
DELETE FROM glove_v WHERE id >= 45000;
CREATE TABLE fashion_h_later AS SELECT * FROM fashion_h WHERE id >= 18000;
DELETE FROM fashion_h WHERE id >= 18000;
CREATE INDEX glove_v_idx ON glove_v USING scann (embedding vector_cosine_ops);
CREATE INDEX glove_h_idx ON glove_h USING scann (embedding halfvec_cosine_ops);
CREATE INDEX fashion_v_idx ON fashion_v USING scann (embedding);
CREATE INDEX fashion_h_idx ON fashion_h USING scann (embedding halfvec_l2_ops);
});
is($node->safe_psql('postgres', q{
SELECT string_agg(format('%s %s %s %s', idx, i.metric, i.dims, i.trained), ', ' ORDER BY idx::text)
  FROM unnest('{glove_v_idx,glove_h_idx,fashion_v_idx,fashion_h_idx}'::regclass[]) idx,
       LATERAL scann_index_info(idx) i}),
	'fashion_h_idx l2 784 t, fashion_v_idx l2 784 t, glove_h_idx cosine 100 t, glove_v_idx cosine 100 t',
	'the indexes are trained on vector and halfvec rows, vector_l2_ops by default');

# pgvector's query, unchanged: ORDER BY embedding <op> '[...]' LIMIT 10 uses the index.
my $q = $node->safe_psql('postgres', 'SELECT embedding FROM glove_vq WHERE id = 0');
like($node->safe_psql('postgres', "EXPLAIN (COSTS OFF) SELECT id FROM glove_v ORDER BY embedding <=> '$q' LIMIT 10"),
	qr/Index Scan using glove_v_idx on glove_v\n\s+Order By: \(embedding <=> '\[[-0-9.,e]+\]'::vector\)/,
	"the planner chooses the index for pgvector's <=> on a vector column by itself");
like($node->safe_psql('postgres', "EXPLAIN (COSTS OFF) SELECT id FROM fashion_h ORDER BY embedding <-> (SELECT embedding FROM fashion_hq LIMIT 1) LIMIT 10"),
	qr/Index Scan using fashion_h_idx on fashion_h\n\s+Order By: \(embedding <-> \$0\)/,
	"the planner chooses the index for pgvector's <-> on a halfvec column by itself");
# A real[] query against a vector column resolves to pg_scann's real[] operator (pgvector casts
# vector to real[] implicitly): no index; cast to vector, it uses the index.
my $qr = $node->safe_psql('postgres', 'SELECT embedding::real[] FROM glove_vq WHERE id = 0');
like($node->safe_psql('postgres', "SET enable_seqscan = off; EXPLAIN (COSTS OFF) SELECT id FROM glove_v ORDER BY embedding <=> '$qr'::real[] LIMIT 10"),
	qr/Sort Key: \(\(\(embedding\)::real\[\] <=> /, 'a real[] query against a vector column sorts by the real[] operator');
like($node->safe_psql('postgres', "EXPLAIN (COSTS OFF) SELECT id FROM glove_v ORDER BY embedding <=> '$qr'::real[]::vector LIMIT 10"),
	qr/Index Scan using glove_v_idx/, 'cast to vector, it uses the index');
my @rows = split /\n/, $node->safe_psql('postgres', qq{
SET enable_seqscan = off; SELECT id, embedding <=> '$q' FROM glove_v ORDER BY embedding <=> '$q' LIMIT 10});
is(scalar(@rows), 10, 'the query returns 10 rows through the index');

$node->safe_psql('postgres', q{
INSERT INTO glove_v SELECT * FROM glove_v_later;
INSERT INTO fashion_h SELECT * FROM fashion_h_later;
});
my %glove = (settings => { 'scann.nprobe' => 60, 'scann.reorder' => 200 });
my $r = ScannTest::recall_at_10($node, table => 'glove_v', queries => 'glove_vq', op => '<=>', %glove);
cmp_ok($r, '>=', 0.95, "GloVe vector cosine recall\@10 (nprobe 60, reorder 200), 5,000 rows inserted after the build: $r");
$r = ScannTest::recall_at_10($node, table => 'glove_h', queries => 'glove_hq', op => '<=>', %glove);
cmp_ok($r, '>=', 0.95, "GloVe halfvec cosine recall\@10 (nprobe 60, reorder 200): $r");
$r = ScannTest::recall_at_10($node, table => 'fashion_v', queries => 'fashion_vq', op => '<->');
cmp_ok($r, '>=', 0.95, "Fashion-MNIST vector l2 recall\@10 at defaults: $r");
$r = ScannTest::recall_at_10($node, table => 'fashion_h', queries => 'fashion_hq', op => '<->');
cmp_ok($r, '>=', 0.95, "Fashion-MNIST halfvec l2 recall\@10 at defaults, 2,000 rows inserted after the build: $r");

# Recall calibration through the operator classes: every build calibrated on its rows;
# scann_recalibrate reads vector and halfvec queries (GloVe's random words, which rows as
# queries do not resemble; 100 others than the measured ones); scann_measure_recall searches
# pgvector's columns with pgvector's operators.
is($node->safe_psql('postgres', q{
SELECT string_agg(format('%s %s %s', idx, calibrated_with, cardinality(calibration_knob) > 0), ', ' ORDER BY idx::text)
  FROM unnest('{glove_v_idx,glove_h_idx,fashion_v_idx,fashion_h_idx}'::regclass[]) idx,
       LATERAL scann_index_info(idx) i}),
	'fashion_h_idx rows t, fashion_v_idx rows t, glove_h_idx rows t, glove_v_idx rows t',
	'the builds calibrated on their vector and halfvec rows');
ScannTest::load_queries_as($node, 'glove_vall', $glove, 200, 'vector(100)');
$node->safe_psql('postgres', q{
CREATE TABLE glove_vcal AS SELECT * FROM glove_vall WHERE id >= 100;
SELECT scann_recalibrate('glove_v_idx', 'SELECT embedding FROM glove_vcal');
SELECT scann_recalibrate('glove_h_idx', 'SELECT embedding::halfvec(100) FROM glove_vcal');
});
is($node->safe_psql('postgres', q{
SELECT string_agg(calibrated_with, ' ' ORDER BY idx::text)
  FROM unnest('{glove_v_idx,glove_h_idx}'::regclass[]) idx, LATERAL scann_index_info(idx) i}),
	'queries queries', 'scann_recalibrate calibrates on vector and on halfvec queries');
# 100 calibration queries measure recall@10 within about +-0.015, and 5,000 of glove_v's rows
# came after its build.
$r = ScannTest::recall_at_10($node, table => 'glove_v', queries => 'glove_vq', op => '<=>');
cmp_ok($r, '>=', 0.93, "GloVe vector recall\@10 at target 0.95 after calibrating on vector queries: $r");
$r = ScannTest::recall_at_10($node, table => 'glove_h', queries => 'glove_hq', op => '<=>');
cmp_ok($r, '>=', 0.93, "GloVe halfvec recall\@10 at target 0.95 after calibrating on halfvec queries: $r");
# The same rows in the same order as real[]: the build's calibration and a recalibration on
# the same queries (vector and real[]) measure the same curve, point for point.
$node->safe_psql('postgres', q{
CREATE TABLE fashion_r AS SELECT id, embedding::real[] AS embedding FROM fashion_v ORDER BY ctid;
CREATE INDEX fashion_r_idx ON fashion_r USING scann (embedding l2_ops);
});
my $curve = sub {
	return $node->safe_psql('postgres',
		"SELECT format('%s %s %s', calibration_knob, calibration_recall, calibrated_with) FROM scann_index_info('$_[0]')");
};
like($curve->('fashion_r_idx'), qr/^\{\d+(,\d+)+\} \{[\d.]+(,[\d.]+)+\} rows$/, 'the real[] index has a calibration curve');
is($curve->('fashion_v_idx'), $curve->('fashion_r_idx'), "the vector index's build measured the real[] index's curve");
$node->safe_psql('postgres', q{
SELECT scann_recalibrate('fashion_v_idx', 'SELECT embedding FROM fashion_vq ORDER BY id DESC');
SELECT scann_recalibrate('fashion_r_idx', 'SELECT embedding::real[] FROM fashion_vq ORDER BY id DESC');
});
like($curve->('fashion_v_idx'), qr/ queries$/, 'fashion_v_idx recalibrated on vector queries');
is($curve->('fashion_v_idx'), $curve->('fashion_r_idx'), '... measuring the curve real[] queries give the real[] index');
$node->safe_psql('postgres', 'DROP TABLE fashion_r');
($ret, $out, $err) = $node->psql('postgres',
	"SELECT scann_recalibrate('glove_v_idx', 'SELECT embedding::real[] FROM glove_vcal')");
like($err, qr/queries must return a single column of type vector/, 'scann_recalibrate refuses real[] queries for a vector index');
for my $case (['fashion_v', 'fashion_vq'], ['fashion_h', 'fashion_hq']) {
	my ($table, $queries) = @$case;
	my $measured = $node->safe_psql('postgres',
		"SET scann.nprobe = 2; SELECT round(scann_measure_recall('${table}_idx', 'SELECT embedding FROM $queries')::numeric, 4)");
	my $by_hand = ScannTest::recall_at_10($node, table => $table, queries => $queries, op => '<->',
		settings => { 'scann.nprobe' => 2 });
	cmp_ok(abs($measured - $by_hand), '<=', 0.0001,
		"scann_measure_recall on $table $measured equals the exact comparison $by_hand");
}

# The annoy variant on vector and halfvec columns, re-ranked from records and from the table.
$node->safe_psql('postgres', q{
CREATE TABLE fashion_va AS SELECT * FROM fashion_v;
CREATE TABLE fashion_ha AS SELECT * FROM fashion_h;
CREATE INDEX fashion_va_idx ON fashion_va USING scann (embedding vector_l2_ops) WITH (variant = 'annoy', rerank = 'sq8');
CREATE INDEX fashion_ha_idx ON fashion_ha USING scann (embedding halfvec_l2_ops) WITH (variant = 'annoy', rerank = 'heap');
});
is($node->safe_psql('postgres', q{
SELECT string_agg(format('%s %s %s %s', idx, variant, rerank, calibrated_with), ', ' ORDER BY idx::text)
  FROM unnest('{fashion_va_idx,fashion_ha_idx}'::regclass[]) idx, LATERAL scann_index_info(idx) i}),
	'fashion_ha_idx annoy heap rows, fashion_va_idx annoy sq8 rows', 'annoy indexes on vector and halfvec, calibrated');
for my $case (['fashion_va', 'fashion_vq'], ['fashion_ha', 'fashion_hq']) {
	my ($table, $queries) = @$case;
	$r = ScannTest::recall_at_10($node, table => $table, queries => $queries, op => '<->');
	cmp_ok($r, '>=', 0.93, "annoy on $table, l2 recall\@10 at the defaults (target recall 0.95): $r");
	$r = ScannTest::recall_at_10($node, table => $table, queries => $queries, op => '<->',
		settings => { 'scann.nprobe' => 16 });
	cmp_ok($r, '>=', 0.95, "annoy on $table, l2 recall\@10 (nprobe 16 leaves): $r");
}

# "id:distance" of the first $k rows of each of the first $n queries, through the index
# (every list probed, every candidate re-ranked) or an exact sequential scan.
sub top {
	my ($table, $queries, $op, $use_index, $k, $n) = @_;
	my $scan = $use_index
	  ? 'SET enable_seqscan = off; SET scann.nprobe = 100000; SET scann.reorder = 100000;'
	  : 'SET enable_indexscan = off;';
	return $node->safe_psql('postgres', qq{$scan
SELECT string_agg(r, ';' ORDER BY q.id) FROM (SELECT * FROM $queries ORDER BY id LIMIT $n) q, LATERAL (
  SELECT string_agg(id || ':' || d, ',' ORDER BY d, id) AS r FROM (
    SELECT id, embedding $op q.embedding AS d FROM $table ORDER BY embedding $op q.embedding LIMIT $k) s) a});
}

# Through the index every list probed returns the exact answer with pgvector's distances:
# re-ranked from the table with the operator's own function (100-d rows, rerank = 'heap' by
# default), and from 8-bit records whose lower bounds the executor rechecks (784-d rows).
for my $case (['glove_v', 'glove_vq', '<=>'], ['glove_h', 'glove_hq', '<=>'],
	['fashion_v', 'fashion_vq', '<->'], ['fashion_h', 'fashion_hq', '<->'],
	['fashion_va', 'fashion_vq', '<->'], ['fashion_ha', 'fashion_hq', '<->'])
{
	my ($table, $queries, $op) = @$case;
	my $exact = top($table, $queries, $op, 0, 10, 10);
	like($exact, qr/^(\d+:[\d.e+-]+,){9}\d+:[\d.e+-]+(;|$)/, "$table: the exact scan answers");
	is(top($table, $queries, $op, 1, 10, 10), $exact,
		"$table $op: the index gives the exact rows at pgvector's own distances");
}
# Inner product, from the table and from records.
$node->safe_psql('postgres', 'CREATE INDEX glove_v_ip ON glove_v USING scann (embedding vector_ip_ops)');
my $exact_ip = top('glove_v', 'glove_vq', '<#>', 0, 10, 10);
$node->safe_psql('postgres', 'DROP INDEX glove_v_idx');
is(top('glove_v', 'glove_vq', '<#>', 1, 10, 10), $exact_ip,
	"vector_ip_ops, re-ranked from the table: the exact rows at pgvector's distances");
$node->safe_psql('postgres',
	"DROP INDEX glove_v_ip; CREATE INDEX glove_v_ip ON glove_v USING scann (embedding vector_ip_ops) WITH (rerank = 'sq8')");
is(top('glove_v', 'glove_vq', '<#>', 1, 10, 10), $exact_ip,
	"vector_ip_ops, re-ranked from records: the exact rows at pgvector's distances");
$node->safe_psql('postgres',
	"DROP INDEX glove_v_ip; CREATE INDEX glove_v_idx ON glove_v USING scann (embedding vector_cosine_ops)");

# At the default settings, the rows of the first batch (scann.reorder, 100) come back in the
# order of pgvector's own distances: the executor trusts an ORDER BY value it is not asked to
# recheck.  (A LIMIT of the whole batch with rows re-ranked from records makes the executor
# look into the next batch, which follows in approximate order, as for real[].)
for my $case (['glove_v', 'glove_vq', '<=>'], ['glove_h', 'glove_hq', '<=>'],
	['fashion_v', 'fashion_vq', '<->'], ['fashion_h', 'fashion_hq', '<->'])
{
	my ($table, $queries, $op) = @$case;
	is($node->safe_psql('postgres', qq{
SET enable_seqscan = off;
SELECT count(*) FILTER (WHERE d < prev) || ' ' || count(*) FROM (
  SELECT d, lag(d) OVER (PARTITION BY qid ORDER BY n) AS prev FROM $queries q, LATERAL (
    SELECT q.id AS qid, embedding $op q.embedding AS d, row_number() OVER () AS n
      FROM (SELECT embedding FROM $table ORDER BY embedding $op q.embedding LIMIT 50) s) t) u}),
		'0 5000', "$table: 100 queries return 50 rows each in the order of pgvector's distances");
}

# Where pgvector's float loop and pg_scann's kernel round differently, the order is pgvector's.
# Rows of ones with +1e8 and -1e8 at two places have an inner product of -30 with a vector of
# ones, but both computations lose some of the ones to rounding, in different ways: ordered by
# pg_scann's kernel (real[]), 16 rows pgvector puts at -28 come before 32 it puts at -29.
$node->safe_psql('postgres', q{
CREATE TABLE cancel (id int PRIMARY KEY, v vector(32));
INSERT INTO cancel SELECT p * 100 + r,
  (SELECT array_agg(CASE WHEN j = p THEN 1e8 WHEN j = r THEN -1e8 ELSE 1 END::real ORDER BY j)
     FROM generate_series(1, 32) j)::vector
  FROM generate_series(1, 32) p, generate_series(1, 32) r WHERE p <> r;
CREATE TABLE ones AS SELECT array_fill(1::real, ARRAY[32])::vector AS q;
});
# Rows whose pgvector distance is below the one before, among the first 64 of an ordering.
my $inversions = sub {
	my ($order_by, $settings) = @_;
	return $node->safe_psql('postgres', qq{$settings
SELECT count(*) FILTER (WHERE d < prev) FROM (
  SELECT d, lag(d) OVER (ORDER BY n) AS prev FROM (
    SELECT v <#> (SELECT q FROM ones) AS d, row_number() OVER () AS n
      FROM (SELECT v FROM cancel ORDER BY $order_by LIMIT 64) s) t) u});
};
cmp_ok($inversions->('v::real[] <#> (SELECT q::real[] FROM ones)', 'SET enable_indexscan = off;'), '>', 0,
	"ordered by pg_scann's kernel, rows are out of pgvector's order");
for my $rerank ('heap', 'sq8') {
	$node->safe_psql('postgres', "DROP INDEX IF EXISTS cancel_v;
		CREATE INDEX cancel_v ON cancel USING scann (v vector_ip_ops) WITH (rerank = '$rerank')");
	like($node->safe_psql('postgres', 'SET enable_seqscan = off; EXPLAIN (COSTS OFF) SELECT v FROM cancel ORDER BY v <#> (SELECT q FROM ones) LIMIT 64'),
		qr/Index Scan using cancel_v/, "rerank = '$rerank': the query uses the index");
	is($inversions->('v <#> (SELECT q FROM ones)', 'SET enable_seqscan = off; SET scann.nprobe = 1000; SET scann.reorder = 1000;'),
		'0', "rerank = '$rerank': the index returns the rows in the order of pgvector's own values");
}

# Deletes and VACUUM.
$node->safe_psql('postgres', q{
DELETE FROM glove_v WHERE id % 5 = 0;
DELETE FROM fashion_h WHERE id % 5 = 0;
VACUUM glove_v;
VACUUM fashion_h;
});
$r = ScannTest::recall_at_10($node, table => 'glove_v', queries => 'glove_vq', op => '<=>', %glove);
cmp_ok($r, '>=', 0.95, "GloVe vector recall\@10 after deletes and VACUUM: $r");
$r = ScannTest::recall_at_10($node, table => 'fashion_h', queries => 'fashion_hq', op => '<->');
cmp_ok($r, '>=', 0.95, "Fashion-MNIST halfvec recall\@10 after deletes and VACUUM: $r");
is($node->safe_psql('postgres', q{
SET enable_seqscan = off;
SELECT (SELECT count(*) FROM glove_vq q, LATERAL (SELECT id FROM glove_v ORDER BY embedding <=> q.embedding LIMIT 50) s WHERE s.id % 5 = 0)
     + (SELECT count(*) FROM fashion_hq q, LATERAL (SELECT id FROM fashion_h ORDER BY embedding <-> q.embedding LIMIT 50) s WHERE s.id % 5 = 0)}),
	'0', 'deleted rows are never returned');

# pgvector's largest vectors: 16,000 dimensions, for vector and halfvec.
$node->safe_psql('postgres', q{
CREATE TABLE wide (id int PRIMARY KEY, v vector(16000), h halfvec(16000));
INSERT INTO wide SELECT i, a::vector, a::halfvec FROM generate_series(1, 150) i,
  LATERAL (SELECT array_agg(sin(i * j * 0.001)::real) AS a FROM generate_series(1, 16000) j) x;
CREATE INDEX wide_v ON wide USING scann (v vector_l2_ops);
CREATE INDEX wide_h ON wide USING scann (h halfvec_cosine_ops);
});
is($node->safe_psql('postgres', "SELECT dims || ' ' || trained FROM scann_index_info('wide_v')"),
	'16000 true', 'an index of 16,000-d vectors is trained');
for my $case (['v', '<->'], ['h', '<=>']) {
	my ($col, $op) = @$case;
	my $sql = "SELECT string_agg(id || ':' || d, ',' ORDER BY d, id) FROM (SELECT id, $col $op (SELECT $col FROM wide WHERE id = 7) AS d "
	  . "FROM wide ORDER BY $col $op (SELECT $col FROM wide WHERE id = 7) LIMIT 5) s";
	my $exact = $node->safe_psql('postgres', "SET enable_indexscan = off; $sql");
	like($exact, qr/^7:0,/, "16,000-d $col: the exact scan finds the row itself first");
	is($node->safe_psql('postgres', "SET enable_seqscan = off; SET scann.nprobe = 1000; $sql"), $exact,
		"16,000-d $col $op: the index gives the exact answer");
}

$node->stop;
done_testing();

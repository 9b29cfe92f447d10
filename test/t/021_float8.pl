# double precision[] columns, read through the generic path (the operator class's conversion
# to real[], support function 2): recall@10 on 20,000 Fashion-MNIST rows stored as
# double precision[] (l2, the rows re-ranked from 8-bit records) and on GloVe (cosine, from
# the table); the same answers as a real[] column of the same rows; inserts, deletes and
# VACUUM; recall calibration on the rows at the build and on double precision[] queries
# (scann_recalibrate), scann_measure_recall; the annoy variant with 8-bit records; a streaming
# standby (wal_consistency_checking) answering as the primary does.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test';
use ScannTest;

my $primary = PostgreSQL::Test::Cluster->new('float8_primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf',
	"maintenance_work_mem = 512MB\nmax_wal_size = 4GB\nwal_consistency_checking = 'generic'");
$primary->start;
$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('float8_standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;

$primary->safe_psql('postgres', 'CREATE EXTENSION pg_scann');
my $fashion = ScannTest::dataset('fashion-mnist');
my $glove = ScannTest::dataset('glove-100');
ScannTest::load_table_as($primary, 'fashion8', $fashion, 20000, 'float8[]');
ScannTest::load_queries_as($primary, 'fashion8_q', $fashion, 100, 'float8[]');
ScannTest::load_table_as($primary, 'glove8', $glove, 12000, 'float8[]');
ScannTest::load_queries_as($primary, 'glove8_q', $glove, 50, 'float8[]');
# The last rows of each set wait to be inserted after the build.
$primary->safe_psql('postgres', q{
CREATE TABLE fashion8_later AS SELECT * FROM fashion8 WHERE id >= 18000;
DELETE FROM fashion8 WHERE id >= 18000;
CREATE TABLE glove8_later AS SELECT * FROM glove8 WHERE id >= 10000;
DELETE FROM glove8 WHERE id >= 10000;
CREATE INDEX fashion8_idx ON fashion8 USING scann (embedding float8_l2_ops);
CREATE INDEX glove8_idx ON glove8 USING scann (embedding float8_cosine_ops);
});
is($primary->safe_psql('postgres', q{
SELECT string_agg(format('%s %s %s', i.metric, i.dims, i.trained), ', ' ORDER BY n)
  FROM unnest('{fashion8_idx,glove8_idx}'::regclass[]) WITH ORDINALITY u(idx, n),
       LATERAL scann_index_info(idx) i}),
	'l2 784 t, cosine 100 t', 'both indexes are trained on the double precision[] rows');
like($primary->safe_psql('postgres', q{
EXPLAIN (COSTS OFF) SELECT id FROM fashion8 ORDER BY embedding <-> (SELECT embedding FROM fashion8_q LIMIT 1) LIMIT 10}),
	qr/Index Scan using fashion8_idx on fashion8\n.*Order By: \(embedding <-> \$0\)/s,
	'the planner chooses the index for a double precision[] query by itself');
$primary->safe_psql('postgres', q{
INSERT INTO fashion8 SELECT * FROM fashion8_later;
INSERT INTO glove8 SELECT * FROM glove8_later;
});

my $r = ScannTest::recall_at_10($primary, table => 'fashion8', queries => 'fashion8_q', op => '<->');
cmp_ok($r, '>=', 0.95, "Fashion-MNIST as double precision[], l2 recall\@10 at defaults: $r");
$r = ScannTest::recall_at_10($primary, table => 'glove8', queries => 'glove8_q', op => '<=>',
	settings => { 'scann.nprobe' => 60, 'scann.reorder' => 200 });
cmp_ok($r, '>=', 0.95, "GloVe as double precision[], cosine recall\@10 (nprobe 60, reorder 200): $r");


# Recall calibration reads double precision[] rows at the build and double precision[] queries
# in scann_recalibrate, through the same conversion; scann_measure_recall searches the column.
is($primary->safe_psql('postgres', q{
SELECT string_agg(format('%s %s %s', rerank, calibrated_with, cardinality(calibration_knob) > 0), ', ' ORDER BY n)
  FROM unnest('{fashion8_idx,glove8_idx}'::regclass[]) WITH ORDINALITY u(idx, n),
       LATERAL scann_index_info(idx) i}),
	'sq8 rows t, heap rows t', 'the builds calibrated on their double precision[] rows (784-d rows re-ranked from records)');
ScannTest::load_queries_as($primary, 'glove8_all', $glove, 150, 'float8[]');
$primary->safe_psql('postgres', q{
CREATE TABLE glove8_cal AS SELECT * FROM glove8_all WHERE id >= 50;
SELECT scann_recalibrate('glove8_idx', 'SELECT embedding FROM glove8_cal');
});
is($primary->safe_psql('postgres', "SELECT calibrated_with FROM scann_index_info('glove8_idx')"),
	'queries', 'scann_recalibrate calibrates on double precision[] queries');
$r = ScannTest::recall_at_10($primary, table => 'glove8', queries => 'glove8_q', op => '<=>');
cmp_ok($r, '>=', 0.94, "GloVe as double precision[], recall\@10 at target 0.95 after calibrating on queries: $r");
for my $bad (
	[ "SELECT scann_recalibrate('glove8_idx', 'SELECT embedding::real[] FROM glove8_cal')",
		qr/queries must return a single column of type double precision\[\]/, 'a real[] query column' ],
	[ "SELECT scann_recalibrate('glove8_idx', 'SELECT array_fill(1e39::float8, ARRAY[100])')",
		qr/vector has a value out of range for type real: 1e\+39 at position 1/, 'a query beyond real' ])
{
	my ($ret, $out, $err) = $primary->psql('postgres', $bad->[0]);
	like($err, $bad->[1], "scann_recalibrate refuses $bad->[2]");
}
my $measured = $primary->safe_psql('postgres',
	"SET scann.nprobe = 2; SELECT round(scann_measure_recall('fashion8_idx', 'SELECT embedding FROM fashion8_q')::numeric, 4)");
my $by_hand = ScannTest::recall_at_10($primary, table => 'fashion8', queries => 'fashion8_q', op => '<->',
	settings => { 'scann.nprobe' => 2 });
cmp_ok(abs($measured - $by_hand), '<=', 0.0001,
	"scann_measure_recall on double precision[] $measured equals the exact comparison $by_hand");

# The annoy variant on the same rows, re-ranked from records.
$primary->safe_psql('postgres', q{
CREATE TABLE fashion8a AS SELECT * FROM fashion8;
CREATE INDEX fashion8a_idx ON fashion8a USING scann (embedding float8_l2_ops) WITH (variant = 'annoy', rerank = 'sq8');
});
is($primary->safe_psql('postgres', "SELECT variant || ' ' || rerank || ' ' || calibrated_with FROM scann_index_info('fashion8a_idx')"),
	'annoy sq8 rows', 'an annoy index with records on double precision[] rows, calibrated');
$r = ScannTest::recall_at_10($primary, table => 'fashion8a', queries => 'fashion8_q', op => '<->');
cmp_ok($r, '>=', 0.93, "annoy on double precision[], l2 recall\@10 at the defaults (target recall 0.95): $r");
$r = ScannTest::recall_at_10($primary, table => 'fashion8a', queries => 'fashion8_q', op => '<->',
	settings => { 'scann.nprobe' => 16 });
cmp_ok($r, '>=', 0.95, "annoy on double precision[], l2 recall\@10 (nprobe 16 leaves): $r");
$primary->safe_psql('postgres', 'DROP TABLE fashion8a');

# The same rows as real[]: searching every list and re-ranking every candidate, the two
# indexes (trained on different rows: 2,000 of fashion8's came after its build) give the same
# rows at the same distances.
ScannTest::load_table($primary, 'fashion4', $fashion, 20000);
$primary->safe_psql('postgres',
	'CREATE INDEX fashion4_idx ON fashion4 USING scann (embedding l2_ops)');
my $top = sub {
	my ($table) = @_;
	return $primary->safe_psql('postgres', qq{
SET enable_seqscan = off; SET scann.nprobe = 100000; SET scann.reorder = 100000;
SELECT string_agg(r, ';' ORDER BY q.id) FROM fashion8_q q, LATERAL (
  SELECT string_agg(id || ':' || d, ',' ORDER BY n) AS r FROM (
    SELECT id, embedding <-> q.embedding::real[] AS d, row_number() OVER () AS n
      FROM (SELECT id, embedding FROM $table ORDER BY embedding <-> q.embedding::real[] LIMIT 10) s) t) a});
};
my $real_answers = $top->('fashion4');
like($real_answers, qr/^(\d+:[\d.e+-]+,){9}\d+:[\d.e+-]+(;|$)/, 'the real[] index answers every query');
is($top->('fashion8'), $real_answers,
	'a double precision[] column gives the same rows at the same distances as real[]');

# Top-20 ids of 20 queries of each set through the index, as one string.
sub answers {
	my ($node) = @_;
	return $node->safe_psql('postgres', q{
SET enable_seqscan = off;
SET scann.nprobe = 8;
SELECT string_agg(r, ';' ORDER BY k, qid) FROM (
  SELECT 'f' AS k, q.id AS qid, (SELECT string_agg(id::text, ',') FROM (SELECT id FROM fashion8 ORDER BY embedding <-> q.embedding LIMIT 20) s) AS r
    FROM (SELECT * FROM fashion8_q ORDER BY id LIMIT 20) q
  UNION ALL
  SELECT 'g', q.id, (SELECT string_agg(id::text, ',') FROM (SELECT id FROM glove8 ORDER BY embedding <=> q.embedding LIMIT 20) s)
    FROM (SELECT * FROM glove8_q ORDER BY id LIMIT 20) q) a});
}

sub compare {
	my ($what) = @_;
	$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
	my $p = answers($primary);
	like($p, qr/^\d+(,\d+){19}(;\d+(,\d+){19}){39}$/, "$what: the primary answers 40 queries with 20 rows each");
	is(answers($standby), $p, "$what: the standby returns the same results as the primary");
}

compare('after build and inserts');
$primary->safe_psql('postgres', q{
DELETE FROM fashion8 WHERE id % 5 = 0;
DELETE FROM glove8 WHERE id % 5 = 0;
VACUUM fashion8;
VACUUM glove8;
});
compare('after deletes and VACUUM');
$r = ScannTest::recall_at_10($primary, table => 'fashion8', queries => 'fashion8_q', op => '<->');
cmp_ok($r, '>=', 0.95, "recall\@10 after deletes and VACUUM: $r");
is($primary->safe_psql('postgres', q{
SET enable_seqscan = off;
SELECT count(*) FROM fashion8_q q, LATERAL (SELECT id FROM fashion8 ORDER BY embedding <-> q.embedding LIMIT 50) s
 WHERE s.id % 5 = 0}), '0', 'deleted rows are never returned');
$primary->safe_psql('postgres',
	'INSERT INTO fashion8 SELECT id + 100000, embedding FROM fashion8_later WHERE id % 5 = 0');
compare('after reusing freed slots');

# A row beyond real's range fails the insert on the primary and leaves the standby as it was.
my ($ret, $out, $err) = $primary->psql('postgres',
	"INSERT INTO glove8 SELECT 999999, array_fill(1e39::float8, ARRAY[100])");
like($err, qr/vector has a value out of range for type real: 1e\+39 at position 1.*CONTEXT:  new row of table "glove8", indexed by "glove8_idx"/s,
	'a double precision value beyond real fails the insert, naming the row');
compare('after a failed insert');

unlike(slurp_file($standby->logfile), qr/inconsistent page found/,
	'every page the standby replayed equals the image the primary logged with it');

$standby->stop;
$primary->stop;
done_testing();

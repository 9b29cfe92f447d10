# WAL: a streaming standby answers every query exactly as the primary does after the
# build, after inserts (new pages, filled slots), and after deletes and VACUUM, for a
# small-block index (GloVe, 8 blocks per page) and one whose blocks span pages
# (Fashion-MNIST with one dimension per subspace: 398 units per block).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test';
use ScannTest;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
# wal_consistency_checking: every generic WAL record also carries the page image it must
# produce, and the standby's replay fails (FATAL "inconsistent page found") unless its
# page equals that image.
$primary->append_conf('postgresql.conf',
	"maintenance_work_mem = 256MB\nwal_consistency_checking = 'generic'");
$primary->start;
$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;

$primary->safe_psql('postgres', 'CREATE EXTENSION pg_scann');
my $glove = ScannTest::dataset('glove-100');
my $fashion = ScannTest::dataset('fashion-mnist');
ScannTest::load_table($primary, 'glove', $glove, 12000);
ScannTest::load_table($primary, 'fashion', $fashion, 3000);
ScannTest::load_queries($primary, 'glove_q', $glove, 20);
ScannTest::load_queries($primary, 'fashion_q', $fashion, 20);
# Keep part of each set back to insert after the build.
$primary->safe_psql('postgres', q{
CREATE TABLE glove_later AS SELECT * FROM glove WHERE id >= 10000;
DELETE FROM glove WHERE id >= 10000;
CREATE TABLE fashion_later AS SELECT * FROM fashion WHERE id >= 2500;
DELETE FROM fashion WHERE id >= 2500;
CREATE INDEX glove_idx ON glove USING scann (embedding cosine_ops);
CREATE INDEX fashion_idx ON fashion USING scann (embedding l2_ops) WITH (dims_per_subspace = 1);
});

# Top-20 ids of every query through the index, as one string.
sub answers {
	my ($node) = @_;
	return $node->safe_psql('postgres', q{
SET enable_seqscan = off;
SET scann.nprobe = 8;
SELECT string_agg(r, ';' ORDER BY k, qid) FROM (
  SELECT 'g' AS k, q.id AS qid, (SELECT string_agg(id::text, ',') FROM (SELECT id FROM glove ORDER BY embedding <=> q.embedding LIMIT 20) s) AS r FROM glove_q q
  UNION ALL
  SELECT 'f', q.id, (SELECT string_agg(id::text, ',') FROM (SELECT id FROM fashion ORDER BY embedding <-> q.embedding LIMIT 20) s) FROM fashion_q q) a});
}

sub compare {
	my ($what) = @_;
	$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
	my $p = answers($primary);
	my $s = answers($standby);
	like($p, qr/^\d+(,\d+){19}(;\d+(,\d+){19}){39}$/, "$what: the primary answers 40 queries with 20 rows each");
	is($s, $p, "$what: the standby returns the same results as the primary");
}

compare('after build');
$primary->safe_psql('postgres', q{
INSERT INTO glove SELECT * FROM glove_later;
INSERT INTO fashion SELECT * FROM fashion_later;
});
compare('after inserts');
$primary->safe_psql('postgres', q{
CREATE TABLE glove_deleted AS SELECT * FROM glove WHERE id % 3 = 0;
CREATE TABLE fashion_deleted AS SELECT * FROM fashion WHERE id % 3 = 0;
DELETE FROM glove WHERE id % 3 = 0;
DELETE FROM fashion WHERE id % 3 = 0;
VACUUM glove;
VACUUM fashion;
});
compare('after deletes and VACUUM');
# Freed slots are reused: the deleted vectors inserted again land in the lists they left
# and fill the freed slots, so the index does not grow; the standby follows.
my $size_sql = "SELECT pg_relation_size('glove_idx') || ' ' || pg_relation_size('fashion_idx')";
my $sizes_before = $primary->safe_psql('postgres', $size_sql);
$primary->safe_psql('postgres', q{
INSERT INTO glove SELECT id + 100000, embedding FROM glove_deleted;
INSERT INTO fashion SELECT id + 100000, embedding FROM fashion_deleted;
});
is($primary->safe_psql('postgres', $size_sql), $sizes_before,
	'inserts after VACUUM fill freed slots instead of growing the index');
compare('after reusing freed slots');
is($standby->safe_psql('postgres', q{
SET enable_seqscan = off; SET scann.nprobe = 1000;
SELECT count(*) FROM (SELECT id FROM fashion ORDER BY embedding <-> (SELECT embedding FROM fashion_q LIMIT 1) LIMIT 100000) s}),
	$primary->safe_psql('postgres', 'SELECT count(*) FROM fashion'),
	'the standby index holds every row of the table');

# An index built on an empty table records the first row's dimension in its metapage; the
# standby replays that record, so a query of another length fails there too.
$primary->safe_psql('postgres', q{
CREATE TABLE late (id int, v real[]);
CREATE INDEX late_v ON late USING scann (v);
INSERT INTO late SELECT id, embedding FROM fashion_q LIMIT 3;
});
$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
my ($ret, $out, $err) = $standby->psql('postgres', q{
SET enable_seqscan = off; SELECT count(*) FROM (SELECT 1 FROM late ORDER BY v <-> '{1,2,3}' LIMIT 5) s});
like($err, qr/expected 784 dimensions, got 3/,
	'the standby knows the dimension the primary learned from the first row');

unlike(slurp_file($standby->logfile), qr/inconsistent page found/,
	'every page the standby replayed equals the image the primary logged with it');

$standby->stop;
$primary->stop;
done_testing();

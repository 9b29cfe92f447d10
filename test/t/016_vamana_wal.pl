# WAL of the vamana variant.  A streaming standby (wal_consistency_checking: every generic
# record's page image is checked on replay) answers every query as the primary does after the
# build, FreshDiskANN inserts, deletes with VACUUM's repairs, and inserts into freed nodes.
# Then an immediate shutdown while four clients insert: after crash recovery the index holds
# every committed row (each its own nearest neighbour through the index) and takes VACUUM and
# new inserts.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test';
use ScannTest;

my $primary = PostgreSQL::Test::Cluster->new('vamana_primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf',
	"maintenance_work_mem = 256MB\nmax_connections = 20\nwal_consistency_checking = 'generic'");
$primary->start;
$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('vamana_standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;

$primary->safe_psql('postgres', 'CREATE EXTENSION pg_scann');
my $glove = ScannTest::dataset('glove-100');
my $fashion = ScannTest::dataset('fashion-mnist');
ScannTest::load_table($primary, 'glove', $glove, 12000);
ScannTest::load_table($primary, 'fashion', $fashion, 3000);
ScannTest::load_queries($primary, 'glove_q', $glove, 20);
ScannTest::load_queries($primary, 'fashion_q', $fashion, 20);
$primary->safe_psql('postgres', q{
CREATE TABLE glove_later AS SELECT * FROM glove WHERE id >= 10000;
DELETE FROM glove WHERE id >= 10000;
CREATE TABLE fashion_later AS SELECT * FROM fashion WHERE id >= 2500;
DELETE FROM fashion WHERE id >= 2500;
CREATE INDEX glove_v ON glove USING scann (embedding cosine_ops) WITH (variant = 'vamana');
CREATE INDEX fashion_v ON fashion USING scann (embedding l2_ops) WITH (variant = 'vamana');
});

# Top-20 ids of every query through the index, as one string.
sub answers {
	my ($node) = @_;
	return $node->safe_psql('postgres', q{
SET enable_seqscan = off;
SET scann.search_list = 120;
SELECT string_agg(r, ';' ORDER BY k, qid) FROM (
  SELECT 'g' AS k, q.id AS qid, (SELECT string_agg(id::text, ',') FROM (SELECT id FROM glove ORDER BY embedding <=> q.embedding LIMIT 20) s) AS r FROM glove_q q
  UNION ALL
  SELECT 'f', q.id, (SELECT string_agg(id::text, ',') FROM (SELECT id FROM fashion ORDER BY embedding <-> q.embedding LIMIT 20) s) FROM fashion_q q) a});
}

# The graph's health as scann_index_info reads it from the pages.
sub graph {
	my ($node, $index) = @_;
	return $node->safe_psql('postgres',
		"SELECT entries || ' ' || free_slots || ' ' || deleted_nodes || ' ' || bad_edges || ' ' || entry_point FROM scann_index_info('$index')");
}

sub compare {
	my ($what) = @_;
	$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
	my $p = answers($primary);
	my $s = answers($standby);
	like($p, qr/^\d+(,\d+){19}(;\d+(,\d+){19}){39}$/, "$what: the primary answers 40 queries with 20 rows each");
	is($s, $p, "$what: the standby returns the same results as the primary");
	for my $index ('glove_v', 'fashion_v') {
		is(graph($standby, $index), graph($primary, $index), "$what: $index has the same graph on the standby");
	}
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
my ($entries, $free) = split / /, graph($primary, 'glove_v');
cmp_ok($free, '>=', 4000, "VACUUM freed the deleted rows' nodes ($free free)");
my $pages = $primary->safe_psql('postgres', "SELECT pg_relation_size('glove_v')");
$primary->safe_psql('postgres', q{
INSERT INTO glove SELECT * FROM glove_deleted;
INSERT INTO fashion SELECT * FROM fashion_deleted;
});
compare('after inserts into freed nodes');
is($primary->safe_psql('postgres', "SELECT pg_relation_size('glove_v')"), $pages,
	'the new rows took freed nodes: the index did not grow');
unlike(slurp_file($standby->logfile), qr/inconsistent page found/,
	'every page the standby replayed equals the image logged with it');
$standby->stop;

# Crash recovery with concurrent inserts.
ScannTest::load_table($primary, 'src', $glove, 20000);
$primary->safe_psql('postgres', q{
CREATE TABLE t (id bigserial PRIMARY KEY, src_id bigint, embedding real[]);
INSERT INTO t (src_id, embedding) SELECT id, embedding FROM src WHERE id < 5000;
CREATE INDEX t_v ON t USING scann (embedding cosine_ops) WITH (variant = 'vamana');
CHECKPOINT;
});
my $script = $primary->basedir . '/insert.sql';
PostgreSQL::Test::Utils::append_to_file($script,
	"\\set id random(5000, 19999)\nINSERT INTO t (src_id, embedding) SELECT id, embedding FROM src WHERE id = :id;\n");
my ($out, $err);
my $pgbench = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '4', '-j', '2', '-T', '120', '-f', $script, '-h', $primary->host,
	  '-p', $primary->port, 'postgres' ],
	'>', \$out, '2>', \$err);
$primary->poll_query_until('postgres', 'SELECT count(*) > 1000 FROM t WHERE src_id >= 5000')
  or die 'inserts did not start';
$primary->stop('immediate');
$pgbench->finish;
$primary->start;

my $rows = $primary->safe_psql('postgres', 'SELECT count(*) FROM t');
cmp_ok($rows, '>', 6000, "rows committed before the crash survived recovery: $rows");
is($primary->safe_psql('postgres', q{
SET enable_seqscan = off;
SELECT count(*) FROM (SELECT id FROM t ORDER BY embedding <=> (SELECT embedding FROM src LIMIT 1) LIMIT 1000000) s}),
	$rows, 'the recovered index returns every committed row');
is($primary->safe_psql('postgres', q{
SET enable_seqscan = off;
SELECT count(*) FROM (SELECT * FROM t WHERE src_id >= 5000 ORDER BY id DESC LIMIT 200) r
 WHERE (SELECT min(x.embedding <=> r.embedding) FROM
         (SELECT embedding FROM t ORDER BY embedding <=> r.embedding LIMIT 1) x) < 1e-6}),
	'200', 'each of the last 200 inserted rows is its own nearest neighbour through the index');
$primary->safe_psql('postgres', q{
DELETE FROM t WHERE id % 2 = 0;
VACUUM t;
INSERT INTO t (src_id, embedding) SELECT id, embedding FROM src WHERE id BETWEEN 100 AND 199;
});
is($primary->safe_psql('postgres', q{
SET enable_seqscan = off;
SELECT count(*) FROM (SELECT id FROM t ORDER BY embedding <=> (SELECT embedding FROM src LIMIT 1) LIMIT 1000000) s}),
	$primary->safe_psql('postgres', 'SELECT count(*) FROM t'),
	'after VACUUM and more inserts the index still holds exactly the table');
is((split / /, graph($primary, 't_v'))[3], '0', 'and no live node points at a node that is not live');
unlike(slurp_file($primary->logfile), qr/inconsistent page found/,
	'every page crash recovery replayed equals the image logged with it');

$primary->stop;
done_testing();

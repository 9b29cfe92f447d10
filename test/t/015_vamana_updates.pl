# FreshDiskANN's updates in a vamana index on real data: inserts after the build, a fifth of
# the rows deleted and VACUUMed (their nodes repaired around, then freed), new rows inserted
# into the freed nodes.  Deleted rows never come back, recall stays at 0.95 against exact
# answers, the index does not grow by the new rows, and no live node points to a node that is
# not live; every row is returned once by a scan that keeps going.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test';
use ScannTest;

my $node = PostgreSQL::Test::Cluster->new('vamana_updates');
$node->init;
$node->append_conf('postgresql.conf',
	"maintenance_work_mem = 512MB\nmax_wal_size = 4GB\nfsync = off\njit = off");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_scann');

my $fashion = ScannTest::dataset('fashion-mnist');
ScannTest::load_table($node, 'src', $fashion, 20000);
ScannTest::load_queries($node, 'fashion_q', $fashion, 100);
$node->safe_psql('postgres', q{
CREATE TABLE items (id bigint PRIMARY KEY, embedding real[]);
INSERT INTO items SELECT * FROM src WHERE id < 14000;
CREATE INDEX items_v ON items USING scann (embedding l2_ops) WITH (variant = 'vamana');
INSERT INTO items SELECT * FROM src WHERE id >= 14000 AND id < 16000;
ANALYZE items;
});
my $info = sub {
	return $node->safe_psql('postgres',
		"SELECT entries || ' ' || free_slots || ' ' || deleted_nodes || ' ' || bad_edges || ' ' || unreachable_nodes || ' ' || pages FROM scann_index_info('items_v')"
	);
};
my ($entries, $free, $deleted, $bad, $unreachable, $pages) = split / /, $info->();
is("$entries $deleted $bad", '16000 0 0', 'after 2,000 inserts: 16,000 live nodes, no bad edge');
my $r = ScannTest::recall_at_10($node, table => 'items', queries => 'fashion_q', op => '<->');
cmp_ok($r, '>=', 0.95, "recall\@10 after inserts: $r");

# A fifth of the rows deleted: their nodes are walked through but never returned.
$node->safe_psql('postgres', 'DELETE FROM items WHERE id % 5 = 0');
my $deleted_sql = q{
SET enable_seqscan = off;
SELECT count(*) FROM fashion_q q, LATERAL (SELECT id FROM items ORDER BY embedding <-> q.embedding LIMIT 50) s
 WHERE s.id % 5 = 0 AND s.id < 16000};
is($node->safe_psql('postgres', $deleted_sql), '0', 'deleted rows are not returned before VACUUM');
$node->safe_psql('postgres', 'VACUUM items');
($entries, $free, $deleted, $bad, $unreachable, $pages) = split / /, $info->();
is("$entries $deleted $bad $unreachable", '12800 0 0 0',
	'after VACUUM: 12,800 live nodes, none deleted, no edge to a freed node, all reachable');
cmp_ok($free, '>=', 3200, "the 3,200 deleted rows' nodes are free ($free free)");
is($node->safe_psql('postgres', $deleted_sql), '0', 'deleted rows are not returned after VACUUM');
$r = ScannTest::recall_at_10($node, table => 'items', queries => 'fashion_q', op => '<->');
cmp_ok($r, '>=', 0.95, "recall\@10 after deletes and VACUUM: $r");

# New rows take the freed nodes: the index keeps its size.
$node->safe_psql('postgres',
	'INSERT INTO items SELECT * FROM src WHERE id >= 16000 AND id < 19200; ANALYZE items');
my ($entries2, $free2, $deleted2, $bad2, $unreachable2, $pages2) = split / /, $info->();
is("$entries2 $bad2", '16000 0', 'after 3,200 new rows: 16,000 live nodes, no bad edge');
is($pages2, $pages, "the new rows reused freed nodes: the index kept its $pages pages");
is($node->safe_psql('postgres', $deleted_sql), '0', 'deleted rows never come back');
$r = ScannTest::recall_at_10($node, table => 'items', queries => 'fashion_q', op => '<->');
cmp_ok($r, '>=', 0.95, "recall\@10 after inserting into freed nodes: $r");
ScannTest::every_row_once($node, 'items', 'after deletes, VACUUM and reuse', '<->');

# GloVe by cosine, where duplicates are rare and the graph is harder: the same cycle.
my $glove = ScannTest::dataset('glove-100');
ScannTest::load_table($node, 'gsrc', $glove, 26000);
ScannTest::load_queries($node, 'glove_q', $glove, 100);
$node->safe_psql('postgres', q{
CREATE TABLE g (id bigint PRIMARY KEY, embedding real[]);
INSERT INTO g SELECT * FROM gsrc WHERE id < 20000;
CREATE INDEX g_v ON g USING scann (embedding cosine_ops) WITH (variant = 'vamana');
DELETE FROM g WHERE id % 5 = 1;
VACUUM g;
INSERT INTO g SELECT * FROM gsrc WHERE id >= 20000;
ANALYZE g;
});
is($node->safe_psql('postgres', "SELECT entries || ' ' || bad_edges FROM scann_index_info('g_v')"),
	'22000 0', 'GloVe after deletes, VACUUM and inserts: 22,000 live nodes, no bad edge');
$r = ScannTest::recall_at_10($node, table => 'g', queries => 'glove_q', op => '<=>',
	settings => { 'scann.search_list' => 800 });
cmp_ok($r, '>=', 0.95, "GloVe recall\@10 after deletes, VACUUM and inserts (search_list 800): $r");

$node->stop;
done_testing();

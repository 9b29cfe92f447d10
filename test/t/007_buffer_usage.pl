# Pages that scans keep reading stay protected from the clock sweep.  Scans pin the heap
# pages they re-rank (and their list pages) through ReadRecentBuffer(), which in PostgreSQL 15
# leaves a buffer's usage count alone; the scan raises it itself, as ReadBuffer() would.
# Without that, a page re-ranked by every query would keep the usage count of its first
# read and be among the first the clock sweep evicts.
#
# After a restart (shared buffers empty), one session runs the same query 8 times, each
# re-ranking every row of the MiniLM table (all 778 rows), so every heap page is read once per
# query by the scan and (but for the one row returned) by nothing else.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test';
use ScannTest;

my $node = PostgreSQL::Test::Cluster->new('buffer_usage');
$node->init;
$node->append_conf('postgresql.conf', 'shared_buffers = 32MB');
$node->start;
my $set = ScannTest::dataset('minilm');
$node->safe_psql('postgres', 'CREATE EXTENSION pg_scann; CREATE EXTENSION pg_buffercache');
ScannTest::load_table($node, 'items', $set, $set->{rows});
$node->safe_psql('postgres',
	'CREATE INDEX items_idx ON items USING scann (embedding cosine_ops)');
my $heap_pages = $node->safe_psql('postgres', q{SELECT pg_relation_size('items') / 8192});
$node->restart;

my $q = ScannTest::query_literal($set, 0);
my $settings = "SET enable_seqscan = off; SET scann.nprobe = 1000; SET scann.reorder = 2000;\n";
my $query =
  "SELECT count(*) FROM (SELECT id FROM items ORDER BY embedding <=> '$q' LIMIT 1) s;\n";
like($node->safe_psql('postgres', $settings . "EXPLAIN (COSTS OFF) $query"),
	qr/Index Scan using items_idx/, 'the query is an index scan');
my $usage = $node->safe_psql(
	'postgres', $settings . ($query x 8) . q{
SELECT count(*) || ' ' || min(usagecount) FROM pg_buffercache
WHERE relfilenode = pg_relation_filenode('items') AND relforknumber = 0
  AND reldatabase = (SELECT oid FROM pg_database WHERE datname = current_database())});
my ($cached, $min_usage) = (split /\n/, $usage)[-1] =~ /^(\d+) (\d+)$/;
is($cached, $heap_pages, "every heap page ($heap_pages) was read into shared buffers");
cmp_ok($min_usage, '>=', 5,
	'after 8 scans every heap page has the maximum usage count (1 without the raise)');


$node->stop;
done_testing();

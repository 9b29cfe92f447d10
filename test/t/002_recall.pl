# Recall@10 of scann against exact sequential scans on real data sets (bench/datasets.py):
# MiniLM (cosine, all rows), Fashion-MNIST (l2), GloVe (cosine, and the same rows
# unnormalized with inner product); recall rising with scann.nprobe; a filter keeping 10%
# of rows; inserts after build, deletes and VACUUM.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test';
use ScannTest;

my $node = PostgreSQL::Test::Cluster->new('recall');
$node->init;
$node->append_conf('postgresql.conf', "maintenance_work_mem = 512MB\nmax_wal_size = 4GB\nfsync = off");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_scann');

# MiniLM, all 778 rows, cosine, default settings.
my $minilm = ScannTest::dataset('minilm');
ScannTest::load_table($node, 'minilm', $minilm, $minilm->{rows});
ScannTest::load_queries($node, 'minilm_q', $minilm, 100);
$node->safe_psql('postgres', 'CREATE INDEX ON minilm USING scann (embedding cosine_ops)');
my $r = ScannTest::recall_at_10($node, table => 'minilm', queries => 'minilm_q', op => '<=>');
cmp_ok($r, '>=', 0.95, "MiniLM cosine recall\@10 at defaults: $r");

# Fashion-MNIST, 20,000 rows, l2.
my $fashion = ScannTest::dataset('fashion-mnist');
ScannTest::load_table($node, 'fashion', $fashion, 20000);
ScannTest::load_queries($node, 'fashion_q', $fashion, 100);
$node->safe_psql('postgres', 'CREATE INDEX fashion_idx ON fashion USING scann (embedding l2_ops)');
my $plan = $node->safe_psql('postgres',
	"EXPLAIN (COSTS OFF) SELECT id FROM fashion ORDER BY embedding <-> (SELECT embedding FROM fashion_q LIMIT 1) LIMIT 10");
like($plan, qr/Index Scan using fashion_idx/, 'the planner chooses the index for ORDER BY ... LIMIT by itself');
$r = ScannTest::recall_at_10($node, table => 'fashion', queries => 'fashion_q', op => '<->');
cmp_ok($r, '>=', 0.95, "Fashion-MNIST l2 recall\@10 at defaults: $r");

# The same rows build the same index, page for page (past the page header's LSN, and the
# calibration's time in the metapage).
$node->safe_psql('postgres', 'CREATE EXTENSION pageinspect; CREATE INDEX fashion_idx2 ON fashion USING scann (embedding l2_ops)');
is(ScannTest::differing_pages($node, 'fashion_idx2', 'fashion_idx'), '0', 'two builds over the same rows write identical pages');
$node->safe_psql('postgres', 'DROP INDEX fashion_idx2');

# A build is interruptible: a statement timeout cancels it cleanly (the cancel arrives in
# C++ training code and unwinds through the guard), and the session goes on.
my ($rc, $stdout, $stderr) = $node->psql('postgres',
	"SET statement_timeout = '300ms'; CREATE INDEX fashion_slow ON fashion USING scann (embedding l2_ops) WITH (dims_per_subspace = 1)");
like($stderr, qr/canceling statement due to statement timeout/, 'statement_timeout cancels CREATE INDEX');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_class WHERE relname = 'fashion_slow'"), '0',
	'the cancelled build left no index');

# Recall rises with nprobe.
my @sweep;
for my $nprobe (1, 4, 16) {
	push @sweep, scalar ScannTest::recall_at_10($node, table => 'fashion', queries => 'fashion_q', op => '<->',
		settings => { 'scann.nprobe' => $nprobe });
}
ok($sweep[0] < $sweep[1] && $sweep[1] < $sweep[2], "recall rises with nprobe 1, 4, 16: @sweep");

# A filter that keeps about 10% of the rows: LIMIT 10 still returns 10 rows.
my ($fr, $rows) = ScannTest::recall_at_10($node, table => 'fashion', queries => 'fashion_q', op => '<->',
	where => 't.id % 10 = 3');
is($rows, 10, 'with a 10% filter, LIMIT 10 returns 10 rows for every query');
cmp_ok($fr, '>=', 0.9, "recall\@10 against the exact filtered query: $fr");

# GloVe, 50,000 rows: cosine, and inner product on the same unnormalized rows.
my $glove = ScannTest::dataset('glove-100');
ScannTest::load_table($node, 'glove', $glove, 50000);
ScannTest::load_queries($node, 'glove_q', $glove, 100);
$node->safe_psql('postgres', 'CREATE INDEX glove_cos ON glove USING scann (embedding cosine_ops)');
$r = ScannTest::recall_at_10($node, table => 'glove', queries => 'glove_q', op => '<=>',
	settings => { 'scann.nprobe' => 60, 'scann.reorder' => 200 });
cmp_ok($r, '>=', 0.95, "GloVe cosine recall\@10 (224 lists, nprobe 60, reorder 200): $r");
# Unnormalized rows: T scaled to their norms (0.37 x the median norm) ranks inner products
# better than the default 0.2 here (see README).
$node->safe_psql('postgres', 'DROP INDEX glove_cos; CREATE INDEX glove_ip ON glove USING scann (embedding ip_ops) WITH (anisotropic_threshold = 0.37)');
$r = ScannTest::recall_at_10($node, table => 'glove', queries => 'glove_q', op => '<#>',
	settings => { 'scann.nprobe' => 100, 'scann.reorder' => 200 });
cmp_ok($r, '>=', 0.95, "GloVe inner-product recall\@10 (224 lists, nprobe 100, reorder 200): $r");

# Inserts after build, deletes and VACUUM: build on the first half, insert the second,
# delete every fifth row, vacuum.
$node->safe_psql('postgres', q{
CREATE TABLE grow (id bigint PRIMARY KEY, embedding real[]);
INSERT INTO grow SELECT * FROM fashion WHERE id < 10000;
CREATE INDEX grow_idx ON grow USING scann (embedding l2_ops);
INSERT INTO grow SELECT * FROM fashion WHERE id >= 10000;
DELETE FROM grow WHERE id % 5 = 0;
VACUUM grow;
});
$r = ScannTest::recall_at_10($node, table => 'grow', queries => 'fashion_q', op => '<->');
cmp_ok($r, '>=', 0.95, "recall after inserts, deletes and VACUUM: $r");
is($node->safe_psql('postgres', q{
SET enable_seqscan = off;
SELECT count(*) FROM fashion_q q, LATERAL (SELECT id FROM grow ORDER BY embedding <-> q.embedding LIMIT 50) s
 WHERE s.id % 5 = 0}), '0', 'deleted rows are never returned');

$node->stop;
done_testing();

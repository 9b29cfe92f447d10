# Recall@10 of the vamana variant against exact sequential scans on real data sets
# (bench/datasets.py): MiniLM (cosine, all rows, defaults), Fashion-MNIST (l2), GloVe (cosine,
# and the same rows unnormalized by inner product); recall rising with scann.search_list; a
# filter keeping 10% of the rows; every row once from a scan that keeps going; two builds of
# the same rows (one serial, one with workers) writing the same pages; a build cancelled by a
# statement timeout.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test';
use ScannTest;

my $node = PostgreSQL::Test::Cluster->new('vamana_recall');
$node->init;
$node->append_conf('postgresql.conf',
	"maintenance_work_mem = 512MB\nmax_wal_size = 4GB\nfsync = off\njit = off");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_scann; CREATE EXTENSION pageinspect');

# MiniLM, all 778 rows, cosine, default settings.
my $minilm = ScannTest::dataset('minilm');
ScannTest::load_table($node, 'minilm', $minilm, $minilm->{rows});
ScannTest::load_queries($node, 'minilm_q', $minilm, 100);
$node->safe_psql('postgres',
	"CREATE INDEX ON minilm USING scann (embedding cosine_ops) WITH (variant = 'vamana')");
my $r = ScannTest::recall_at_10($node, table => 'minilm', queries => 'minilm_q', op => '<=>');
cmp_ok($r, '>=', 0.95, "MiniLM cosine recall\@10 at defaults: $r");

# Fashion-MNIST, 20,000 rows, l2.
my $fashion = ScannTest::dataset('fashion-mnist');
ScannTest::load_table($node, 'fashion', $fashion, 20000);
ScannTest::load_queries($node, 'fashion_q', $fashion, 100);
$node->safe_psql('postgres',
	"CREATE INDEX fashion_v ON fashion USING scann (embedding l2_ops) WITH (variant = 'vamana')");
my $plan = $node->safe_psql('postgres',
	"EXPLAIN (COSTS OFF) SELECT id FROM fashion ORDER BY embedding <-> (SELECT embedding FROM fashion_q LIMIT 1) LIMIT 10"
);
like($plan, qr/Index Scan using fashion_v/,
	'the planner chooses the vamana index for ORDER BY ... LIMIT by itself');
$r = ScannTest::recall_at_10($node, table => 'fashion', queries => 'fashion_q', op => '<->');
cmp_ok($r, '>=', 0.95, "Fashion-MNIST l2 recall\@10 at defaults: $r");

# Calibration: the build measured recall against search_list, and with scann.search_list
# unset (-1) the scan takes the smallest list that reaches scann.target_recall on these
# held-out queries (Fashion-MNIST's test images, none of them a row of the table).
sub chosen_list {
	my ($index, $table, $queries, $op, $settings) = @_;
	my ($rc, $out, $err) = $node->psql('postgres',
		"SET client_min_messages = debug1; SET enable_seqscan = off; $settings "
		  . "SELECT id FROM $table ORDER BY embedding $op (SELECT embedding FROM $queries LIMIT 1) LIMIT 10");
	return $err =~ /scann index "$index": search_list (\d+) for target recall/ ? $1 : undef;
}
my ($knobs, $recalls, $with) = split /\|/, $node->safe_psql('postgres',
	"SELECT calibration_knob, calibration_recall, calibrated_with FROM scann_index_info('fashion_v')");
note("Fashion-MNIST vamana calibration: search_list $knobs recall $recalls");
like($knobs, qr/^\{100,/, 'the ladder of search lists starts at scann.reorder (100)');
is($with, 'rows', 'CREATE INDEX calibrated the vamana index on rows of the table');
my $k95 = chosen_list('fashion_v', 'fashion', 'fashion_q', '<->', '');
ok(defined $k95 && $k95 < 1000, 'target 0.95 chooses search_list ' . ($k95 // 'undef') . ', below the ladder\'s top (1000)');
$r = ScannTest::recall_at_10($node, table => 'fashion', queries => 'fashion_q', op => '<->',
	settings => { 'scann.reorder' => 10 });
cmp_ok($r, '>=', 0.95, "Fashion-MNIST recall\@10 with no knob set (target 0.95, reorder 10): $r");
my $r99 = ScannTest::recall_at_10($node, table => 'fashion', queries => 'fashion_q', op => '<->',
	settings => { 'scann.target_recall' => 0.99, 'scann.reorder' => 10 });
cmp_ok($r99, '>=', 0.985, "Fashion-MNIST recall\@10 at target 0.99 (reorder 10): $r99");
my $k99 = chosen_list('fashion_v', 'fashion', 'fashion_q', '<->', 'SET scann.target_recall = 0.99;');
ok(defined $k99 && $k99 >= $k95 && $k99 < 1000, "target 0.99 chooses search_list " . ($k99 // 'undef'));
is(chosen_list('fashion_v', 'fashion', 'fashion_q', '<->', 'SET scann.search_list = 20;'), undef,
	'an explicit scann.search_list wins and consults no target');

# Recall rises with the search list (scann.reorder, the list's floor, set below it).
my @sweep;
for my $list (10, 40, 160) {
	push @sweep, scalar ScannTest::recall_at_10($node, table => 'fashion', queries => 'fashion_q',
		op => '<->', settings => { 'scann.search_list' => $list, 'scann.reorder' => 10 });
}
ok($sweep[0] < $sweep[1] && $sweep[1] < $sweep[2],
	"recall rises with search_list 10, 40, 160: @sweep");

# A filter that keeps 10% of the rows: LIMIT 10 still returns 10 rows, close to the exact
# filtered answer (the filtered top 10 are about the unfiltered top 100, which the list must
# hold: 400 candidates).
my ($fr, $rows) = ScannTest::recall_at_10($node, table => 'fashion', queries => 'fashion_q',
	op => '<->', where => 't.id % 10 = 3', settings => { 'scann.search_list' => 400 });
is($rows, 10, 'with a 10% filter, LIMIT 10 returns 10 rows for every query');
cmp_ok($fr, '>=', 0.9, "recall\@10 against the exact filtered query: $fr");
($fr, $rows) = ScannTest::recall_at_10($node, table => 'fashion', queries => 'fashion_q',
	op => '<->', where => 't.id % 100 = 3');
is($rows, 10, 'with a 1% filter at the defaults, LIMIT 10 still returns 10 rows');

# A scan that keeps going returns every row exactly once (small batches: the list widens, then
# the node pages are swept), for every operator.
is(ScannTest::scan_all($node, 'fashion', '<->', 7), '20000 20000',
	'every row of Fashion-MNIST once, 7 candidates a batch');

# The same rows build the same pages, serially and with parallel workers (the metapage's
# calibration time aside).
$node->safe_psql('postgres', q{
SET client_min_messages = debug1;
SET max_parallel_maintenance_workers = 0;
CREATE INDEX fashion_v0 ON fashion USING scann (embedding l2_ops) WITH (variant = 'vamana');
});
is(ScannTest::differing_pages($node, 'fashion_v0', 'fashion_v'), '0',
	'a serial build writes the same pages as a build with parallel workers');
my ($ret, $out, $err) = $node->psql('postgres', q{
SET client_min_messages = debug1;
SET max_parallel_maintenance_workers = 2;
CREATE INDEX fashion_v2 ON fashion USING scann (embedding l2_ops) WITH (variant = 'vamana');
});
like($err, qr/builds its vamana graph with [12] parallel workers/,
	'the graph is built with parallel workers when PostgreSQL grants them');
is(ScannTest::differing_pages($node, 'fashion_v2', 'fashion_v'), '0',
	'and its pages are the same again');
$node->safe_psql('postgres', 'DROP INDEX fashion_v0, fashion_v2');

# A build is interruptible: a statement timeout cancels it.
($ret, $out, $err) = $node->psql('postgres',
	"SET statement_timeout = '2s'; CREATE INDEX fashion_slow ON fashion USING scann (embedding l2_ops) WITH (variant = 'vamana', build_list = 200)"
);
like($err, qr/canceling statement due to statement timeout/,
	'statement_timeout cancels CREATE INDEX');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_class WHERE relname = 'fashion_slow'"),
	'0', 'the cancelled build left no index');

# GloVe, 50,000 rows: cosine, and inner product on the same unnormalized rows.
my $glove = ScannTest::dataset('glove-100');
ScannTest::load_table($node, 'glove', $glove, 50000);
ScannTest::load_queries($node, 'glove_all', $glove, 200);
$node->safe_psql('postgres', q{
CREATE TABLE glove_q AS SELECT * FROM glove_all WHERE id < 100;
CREATE TABLE glove_cal AS SELECT * FROM glove_all WHERE id >= 100});
$node->safe_psql('postgres',
	"CREATE INDEX glove_cos ON glove USING scann (embedding cosine_ops) WITH (variant = 'vamana')");
$r = ScannTest::recall_at_10($node, table => 'glove', queries => 'glove_q', op => '<=>',
	settings => { 'scann.search_list' => 800 });
cmp_ok($r, '>=', 0.95, "GloVe cosine recall\@10 (search_list 800): $r");
# The table holds GloVe's 50,000 most frequent words and the queries are random words: unlike
# the rows the build calibrated on, so the target takes queries like them (the recall at the
# build's calibration is reported, not asserted).
($knobs, $recalls) = split /\|/, $node->safe_psql('postgres',
	"SELECT calibration_knob, calibration_recall FROM scann_index_info('glove_cos')");
note("GloVe vamana calibration on rows: search_list $knobs recall $recalls");
my $kg = chosen_list('glove_cos', 'glove', 'glove_q', '<=>', '');
$r = ScannTest::recall_at_10($node, table => 'glove', queries => 'glove_q', op => '<=>');
note("GloVe recall\@10 with no knob set, calibrated on rows: $r (search_list " . ($kg // 'undef') . ')');
$node->safe_psql('postgres', "SELECT scann_recalibrate('glove_cos', 'SELECT embedding FROM glove_cal')");
($knobs, $recalls) = split /\|/, $node->safe_psql('postgres',
	"SELECT calibration_knob, calibration_recall FROM scann_index_info('glove_cos')");
note("GloVe vamana calibration on other random words: search_list $knobs recall $recalls");
$kg = chosen_list('glove_cos', 'glove', 'glove_q', '<=>', '');
$r = ScannTest::recall_at_10($node, table => 'glove', queries => 'glove_q', op => '<=>');
cmp_ok($r, '>=', 0.95, "GloVe cosine recall\@10 with no knob set, calibrated on such queries (search_list " . ($kg // 'undef') . "): $r");
ok(defined $kg && $kg < 1000, 'GloVe: the chosen search_list is below the ladder\'s top');
is($node->safe_psql('postgres', "SELECT unreachable_nodes FROM scann_index_info('glove_cos')"),
	'0', 'every GloVe node is reachable from the entry point');
$node->safe_psql('postgres', q{DROP INDEX glove_cos;
CREATE INDEX glove_ip ON glove USING scann (embedding ip_ops) WITH (variant = 'vamana', dims_per_subspace = 2)});
$r = ScannTest::recall_at_10($node, table => 'glove', queries => 'glove_q', op => '<#>',
	settings => { 'scann.search_list' => 800 });
cmp_ok($r, '>=', 0.95,
	"GloVe inner-product recall\@10 (dims_per_subspace 2, search_list 800): $r");

$node->stop;
done_testing();

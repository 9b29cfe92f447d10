# The vamana build past memory (DiskANN's k-means shards, each row in its two nearest): with a
# maintenance_work_mem too small for the rows' vectors and graph, the build goes through
# overlapping shards, stays within its memory (the building backend's private memory is
# watched while it runs), and its graph recalls within 0.01 of the in-memory build's at the
# same settings; both graphs reach every node.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use lib 'test';
use ScannTest;

my $node = PostgreSQL::Test::Cluster->new('vamana_shards');
$node->init;
$node->append_conf('postgresql.conf',
	"maintenance_work_mem = 512MB\nmax_wal_size = 4GB\nfsync = off\njit = off");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_scann');

my $fashion = ScannTest::dataset('fashion-mnist');
ScannTest::load_table($node, 'fashion', $fashion, 20000);
ScannTest::load_queries($node, 'fashion_q', $fashion, 100);
$node->safe_psql('postgres',
	'CREATE TABLE fashion2 AS SELECT * FROM fashion; ALTER TABLE fashion2 ADD PRIMARY KEY (id); ANALYZE fashion2'
);

# The private (anonymous) memory of a backend, in kB.
sub rss_anon {
	my ($pid) = @_;
	open(my $fh, '<', "/proc/$pid/status") or return undef;
	my ($kb) = map { /^RssAnon:\s+(\d+)/ ? $1 : () } <$fh>;
	close $fh;
	return $kb;
}

# In memory: 20,000 784-d rows take about 68 MB to build (vectors, lists, codes).  The same
# training sample for both builds, so their codes are the same.
$node->safe_psql('postgres',
	"CREATE INDEX fashion_mem ON fashion USING scann (embedding l2_ops) WITH (variant = 'vamana', sample = 2000)"
);

# Past memory: 16 MB, one build at a time, watched from here.
my $bg = $node->background_psql('postgres');
my $pid = $bg->query_safe('SELECT pg_backend_pid()');
$bg->query_safe("SET maintenance_work_mem = '16MB'; SET max_parallel_maintenance_workers = 0; SET client_min_messages = debug1");
my $before = rss_anon($pid);
$bg->query_until(qr/start/, "\\echo start\nCREATE INDEX fashion_shards ON fashion2 USING scann (embedding l2_ops) WITH (variant = 'vamana', sample = 2000);\n\\echo done\n");
my $peak = $before;
for (my $i = 0; $i < 20 * 600; $i++) {
	my $now = rss_anon($pid);
	$peak = $now if defined $now && $now > $peak;
	last if $bg->{stdout} =~ /done/;
	usleep(50_000);
	$bg->{run}->pump_nb();
}
like($bg->{stdout}, qr/done/, 'the sharded build finished');
like($bg->{stderr}, qr/builds its vamana graph in (\d+) shards/, 'the build went through shards');
my ($shards) = $bg->{stderr} =~ /in (\d+) shards/;
cmp_ok($shards, '>=', 2, "$shards overlapping shards");
$bg->quit;
my $grew_mb = ($peak - $before) / 1024;
cmp_ok($grew_mb, '<', 2 * 16,
	sprintf('the sharded build stayed within its memory: %.1f MB above the idle backend at its peak, maintenance_work_mem 16 MB (the graph in memory would take 68 MB)', $grew_mb));

for my $index ('fashion_mem', 'fashion_shards') {
	is($node->safe_psql('postgres', "SELECT unreachable_nodes || ' ' || bad_edges FROM scann_index_info('$index')"),
		'0 0', "$index: every node reachable, no edge to a node that is not live");
}

# Recall at the same settings, every candidate of the list re-ranked.
for my $list (20, 40, 80) {
	my %settings = ('scann.search_list' => $list, 'scann.reorder' => 10);
	my $mem = ScannTest::recall_at_10($node, table => 'fashion', queries => 'fashion_q', op => '<->',
		settings => \%settings);
	my $sharded = ScannTest::recall_at_10($node, table => 'fashion2', queries => 'fashion_q',
		op => '<->', settings => \%settings);
	cmp_ok($sharded, '>=', $mem - 0.01,
		"search_list $list: recall\@10 of the sharded build $sharded, in memory $mem");
}
is(ScannTest::scan_all($node, 'fashion2', '<->', 50), '20000 20000',
	'the sharded index returns every row once');

$node->stop;
done_testing();

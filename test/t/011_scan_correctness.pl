# A scan may be approximate in which rows rank first, never in which rows it returns: on
# Fashion-MNIST (integer pixels: rows tie at the same distance), full ordered scans return every row exactly once
# for all three operator classes at small scann.reorder (many batches, each cut among ties),
# with many dead entries and after VACUUM; one huge row among them neither hides rows nor
# blurs the others' codes; and a query's lookup tables stay within work_mem however many
# lists it probes.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test';
use ScannTest;

my $node = PostgreSQL::Test::Cluster->new('scan_correctness');
$node->init;
$node->append_conf('postgresql.conf',
	"maintenance_work_mem = 256MB\nmax_wal_size = 4GB\nfsync = off\nautovacuum = off");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_scann');

my $fashion = ScannTest::dataset('fashion-mnist');
ScannTest::load_table($node, 'fashion', $fashion, 20000);
my $ties = $node->safe_psql('postgres', q{SELECT count(*) - count(DISTINCT embedding <-> q)
  FROM fashion, (SELECT embedding AS q FROM fashion WHERE id = 7) s});
cmp_ok($ties, '>', 0, "rows tie at the same distance to the query row ($ties ties)");

# Every row once, at several reorder sizes, for each operator class.
for my $opclass (['l2_ops', '<->'], ['ip_ops', '<#>'], ['cosine_ops', '<=>']) {
	my ($ops, $op) = @$opclass;
	$node->safe_psql('postgres', "CREATE INDEX fashion_idx ON fashion USING scann (embedding $ops)");
	for my $reorder (3, 100) {
		my $rows = $node->safe_psql('postgres', 'SELECT count(*) FROM fashion');
		is(ScannTest::scan_all($node, 'fashion', $op, $reorder), "$rows $rows",
			"$ops: batches of $reorder candidates return each of the $rows rows once");
	}
	$node->safe_psql('postgres', 'DROP INDEX fashion_idx');
}

# Dead entries: a third of the rows updated to another row's vector, a tenth deleted; then
# VACUUM.  The scan returns the live rows, each once.
$node->safe_psql('postgres', 'CREATE INDEX fashion_idx ON fashion USING scann (embedding l2_ops)');
$node->safe_psql('postgres', q{
UPDATE fashion f SET embedding = o.embedding FROM fashion o WHERE o.id = (f.id * 7) % 20000 AND f.id % 3 = 0;
DELETE FROM fashion WHERE id % 10 = 1;});
for my $reorder (5, 1000) {
	my $rows = $node->safe_psql('postgres', 'SELECT count(*) FROM fashion');
	is(ScannTest::scan_all($node, 'fashion', '<->', $reorder), "$rows $rows",
		"with dead entries, batches of $reorder return each of the $rows live rows once");
}
$node->safe_psql('postgres', 'VACUUM fashion');
my $rows = $node->safe_psql('postgres', 'SELECT count(*) FROM fashion');
is(ScannTest::scan_all($node, 'fashion', '<->', 7), "$rows $rows", 'after VACUUM too');

# A filtered query keeps going until it has its LIMIT rows (a filter passing ~10%).
is($node->safe_psql('postgres', q{SET enable_seqscan = off; SET scann.reorder = 10;
SELECT count(*) FROM (SELECT id FROM fashion WHERE id % 10 = 3
  ORDER BY embedding <-> (SELECT embedding FROM fashion WHERE id = 7) LIMIT 1500) s}),
	'1500', 'a filtered query gets its LIMIT rows through many small batches');
$node->safe_psql('postgres', 'DROP INDEX fashion_idx');

# One row of 1e19s among them, in the training sample: exact answers at settings that probe
# every list, and recall at ordinary settings as without it.
ScannTest::load_queries($node, 'fashion_q', $fashion, 100);
$node->safe_psql('postgres', q{
INSERT INTO fashion VALUES (1000000, array_fill(1e19::real, ARRAY[784]));
CREATE INDEX fashion_idx ON fashion USING scann (embedding l2_ops);});
my $huge_first = $node->safe_psql('postgres', q{SET enable_seqscan = off; SET scann.nprobe = 10000;
SELECT id FROM fashion ORDER BY embedding <-> array_fill(1e19::real, ARRAY[784]) LIMIT 1});
is($huge_first, '1000000', 'the huge row is found');
my $r = ScannTest::recall_at_10($node, table => 'fashion', queries => 'fashion_q', op => '<->',
	settings => { 'scann.nprobe' => 10000, 'scann.reorder' => 1000 });
is($r, '1.0000', 'probing every list, the index answers as an exact scan does');
$r = ScannTest::recall_at_10($node, table => 'fashion', queries => 'fashion_q', op => '<->');
cmp_ok($r, '>=', 0.95, "at defaults the huge row does not blur the others' codes: recall\@10 $r");

# Lookup tables within work_mem: 800 rows of 16,000 dimensions, one dimension per subspace,
# 25 lists (a list's tables: 16,000 x 16 floats and bytes, 1.3 MB).  Probing all 25 lists
# would hold 32 MB of tables at once; within work_mem = 64kB the scan holds one list's.  The
# backend's peak memory (VmHWM) is read before and after, with 1 MB of shared buffers so
# that pages add little.
$node->safe_psql('postgres', q{
CREATE TABLE wide (id int PRIMARY KEY, embedding real[]);
SELECT setseed(0.5);
INSERT INTO wide SELECT i, ARRAY(SELECT (random() * 2 - 1)::real FROM generate_series(1, 16000) d WHERE i > 0)
  FROM generate_series(1, 800) i;
CREATE INDEX wide_idx ON wide USING scann (embedding l2_ops) WITH (lists = 25, dims_per_subspace = 1);});
my $peak = sub {
	my ($pid) = @_;
	my $status = slurp_file("/proc/$pid/status");
	my ($kb) = $status =~ /VmHWM:\s+(\d+) kB/;
	return $kb;
};
my $session = $node->background_psql('postgres');
my $pid = $session->query_safe('SELECT pg_backend_pid()');
$session->query_safe(q{SET enable_seqscan = off; SET work_mem = '64kB'; SET scann.nprobe = 1;
SELECT count(*) FROM (SELECT id FROM wide ORDER BY embedding <-> (SELECT embedding FROM wide WHERE id = 1) LIMIT 5) s;
SELECT entries FROM scann_index_info('wide_idx');});
my $before = $peak->($pid);
is($session->query_safe(q{SET scann.nprobe = 25;
SELECT count(*) FROM (SELECT id FROM wide ORDER BY embedding <-> (SELECT embedding FROM wide WHERE id = 1) LIMIT 5) s}),
	'5', 'a 16,000-d query probing all 25 lists');
my $grown = $peak->($pid) - $before;
cmp_ok($grown, '<', 12 * 1024, "its peak memory grew by $grown kB (32 MB of tables at once before)");
$session->quit;

$node->stop;
done_testing();

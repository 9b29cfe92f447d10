# Parallel CREATE INDEX: the assign-and-encode pass runs in parallel workers when the
# planner grants them, and the index it writes is the one a serial build writes, page for
# page (the runs are merged in (list, heap TID) order).  Covers cosine and inner product on
# GloVe-100 (the inner-product threshold is scaled by the leader before the workers get it),
# l2 on Fashion-MNIST (784-d rows stored out of line, detoasted in the workers), a build
# without the leader's participation, CREATE INDEX CONCURRENTLY while a client inserts, and
# a bad row met in a parallel pass.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test';
use ScannTest;

my $node = PostgreSQL::Test::Cluster->new('parallel_build');
$node->init;
# Two workers need 32 MB of maintenance_work_mem each, and the leader too.
$node->append_conf('postgresql.conf', qq{
max_parallel_maintenance_workers = 2
maintenance_work_mem = '128MB'
max_prepared_transactions = 2
});
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_scann; CREATE EXTENSION pageinspect');
my $glove = ScannTest::dataset('glove-100');
my $fashion = ScannTest::dataset('fashion-mnist');
ScannTest::load_table($node, 'glove', $glove, 30000);
ScannTest::load_table($node, 'fashion', $fashion, 5000);
# The tables are smaller than min_parallel_table_scan_size would give workers for.
$node->safe_psql('postgres',
	'ALTER TABLE glove SET (parallel_workers = 2); ALTER TABLE fashion SET (parallel_workers = 2)');

# Runs CREATE INDEX (or any statement) with the given settings; returns the number of
# parallel workers the build reported (0 for a serial pass) and psql's stderr.
sub build {
	my ($sql, %settings) = @_;
	my $set = join('', map { "SET $_ = $settings{$_};" } sort keys %settings);
	my ($ret, $out, $err) =
	  $node->psql('postgres', "SET client_min_messages = debug1; $set $sql");
	my ($workers) = $err =~ /encodes rows with (\d+) parallel workers/;
	return ($ret, $workers // 0, $err);
}

sub differing_pages { return ScannTest::differing_pages($node, @_); }

for my $case (
	[ 'glove', 'cosine_ops', 'GloVe cosine' ],
	[ 'glove', 'ip_ops', 'GloVe inner product' ],
	[ 'fashion', 'l2_ops', 'Fashion-MNIST l2' ])
{
	my ($table, $opclass, $what) = @$case;
	my ($ret, $workers) = build("CREATE INDEX serial_idx ON $table USING scann (embedding $opclass)",
		max_parallel_maintenance_workers => 0);
	is("$ret $workers", '0 0', "$what: the serial build runs without workers");
	my $err;
	($ret, $workers, $err) =
	  build("CREATE INDEX parallel_idx ON $table USING scann (embedding $opclass)");
	is("$ret $workers", '0 2', "$what: the parallel build encodes rows with 2 workers");
	like($err,
		qr/building index "parallel_idx" on table "$table" serially\n.*encodes rows with 2 parallel workers\nDETAIL:  PostgreSQL's message "building index \.\.\. serially" above refers to its own planning/s,
		"$what: the debug message explains PostgreSQL's \"serially\" before it");
	is(differing_pages('serial_idx', 'parallel_idx'), '0',
		"$what: every page of the parallel build equals the serial build's");
	$node->safe_psql('postgres', 'DROP INDEX parallel_idx');
	next unless $table eq 'glove' && $opclass eq 'cosine_ops';

	($ret, $workers) = build("CREATE INDEX parallel_idx ON $table USING scann (embedding $opclass)",
		parallel_leader_participation => 'off');
	is("$ret $workers", '0 2', "$what: a build whose leader only merges uses 2 workers");
	is(differing_pages('serial_idx', 'parallel_idx'), '0',
		"$what: and writes the same pages");
	$node->safe_psql('postgres', 'DROP INDEX parallel_idx');
}
continue
{
	$node->safe_psql('postgres', 'DROP INDEX serial_idx');
}

# The recall of a parallel build (the same pages as the serial build, so the same recall
# as 002_recall's GloVe cosine figure at these settings).
build('CREATE INDEX glove_idx ON glove USING scann (embedding cosine_ops)');
ScannTest::load_queries($node, 'glove_q', $glove, 100);
my $r = ScannTest::recall_at_10($node, table => 'glove', queries => 'glove_q', op => '<=>',
	settings => { 'scann.nprobe' => 60, 'scann.reorder' => 200 });
cmp_ok($r, '>=', 0.95, "GloVe cosine recall\@10 of the parallel build (nprobe 60, reorder 200): $r");
$node->safe_psql('postgres', 'DROP INDEX glove_idx');

# CREATE INDEX CONCURRENTLY in parallel (the workers scan with the leader's MVCC snapshot)
# while a client inserts copies of rows: afterwards every row is in the index once.
my ($ret, $workers);
my $inserted = ScannTest::while_inserting($node, 'glove', 30000, sub {
	($ret, $workers) =
	  build('CREATE INDEX CONCURRENTLY glove_idx ON glove USING scann (embedding cosine_ops)');
});
is("$ret $workers", '0 2', 'CREATE INDEX CONCURRENTLY encodes rows with 2 workers');
cmp_ok($inserted, '>', 0, "$inserted rows were inserted meanwhile");
is($node->safe_psql('postgres',
		q{SELECT indisvalid AND indisready FROM pg_index WHERE indexrelid = 'glove_idx'::regclass}),
	't', 'the index is valid');
ScannTest::every_row_once($node, 'glove', 'CREATE INDEX CONCURRENTLY in parallel');
$node->safe_psql('postgres', 'DROP INDEX glove_idx');

# Broken HOT chains: rows whose vector was changed by a HOT update that a prepared
# transaction keeps from being pruned. The index must be marked indcheckxmin, as a serial
# build marks it, so that transactions older than the build do not use it.  The leader's
# own counting pass over the whole table meets the chains before any worker starts (the
# workers, here the only scans of the encoding pass, report none).
$node->safe_psql('postgres', q{
CREATE TABLE hot (id bigint PRIMARY KEY, embedding real[]) WITH (fillfactor = 50, parallel_workers = 2);
INSERT INTO hot SELECT * FROM glove WHERE id <= 20000;
BEGIN; SELECT pg_current_xact_id(); PREPARE TRANSACTION 'hold';
UPDATE hot SET embedding = (SELECT embedding FROM glove g WHERE g.id = hot.id + 20000);
});
is($node->safe_psql('postgres',
		q{SELECT n_tup_hot_upd = (SELECT count(*) FROM hot) FROM pg_stat_user_tables WHERE relname = 'hot'}),
	't', 'every row\'s vector update was a HOT update');
($ret, $workers) = build('CREATE INDEX hot_serial ON hot USING scann (embedding cosine_ops)',
	max_parallel_maintenance_workers => 0);
($ret, $workers) = build('CREATE INDEX hot_parallel ON hot USING scann (embedding cosine_ops)',
	parallel_leader_participation => 'off');
is("$ret $workers", '0 2', 'the build over broken HOT chains used 2 workers, the leader none');
is($node->safe_psql('postgres', q{SELECT string_agg(indexrelid::regclass || ' ' || indcheckxmin, ', '
  ORDER BY indexrelid::regclass::text) FROM pg_index WHERE indexrelid IN ('hot_serial'::regclass, 'hot_parallel'::regclass)}),
	'hot_parallel true, hot_serial true',
	'the parallel build, like the serial one, keeps older transactions off the index');
$node->safe_psql('postgres', "ROLLBACK PREPARED 'hold'; DROP TABLE hot");

# A row of the wrong dimension fails the build with the usual message, whichever
# participant meets it; no index is left behind.  The training sample is kept small so
# that it (drawn with a fixed seed from a table of fixed contents) misses the row and the
# parallel pass meets it.
$node->safe_psql('postgres', q{
CREATE TABLE bad (id bigint, embedding real[]) WITH (parallel_workers = 2);
INSERT INTO bad SELECT * FROM glove WHERE id < 30000 ORDER BY id;
INSERT INTO bad SELECT 2000000, embedding[1:99] FROM glove WHERE id = 1;
});
my $err;
($ret, $workers, $err) = build(
	'CREATE INDEX bad_idx ON bad USING scann (embedding cosine_ops) WITH (sample = 1000)');
is($workers, 2, 'the build with a bad row ran in parallel');
like($err,
	qr/ERROR:  vector of the row at ctid \(\d+,\d+\) in table "bad" has 99 dimensions, expected 100 dimensions/,
	'a bad row fails the parallel build naming its dimensions');
my ($ctid) = $err =~ /at ctid (\(\d+,\d+\))/;
$ctid //= '(0,0)';
is($node->safe_psql('postgres', "SELECT id FROM bad WHERE ctid = '$ctid'"),
	'2000000', "the ctid in the message, $ctid, is the bad row's");
my ($hint) = $err =~ /HINT:  (SELECT .*) lists the rows of another length\./;
$hint //= 'SELECT NULL AS id';
is($node->safe_psql('postgres', "SELECT string_agg(id::text, ',') FROM ($hint) s"),
	'2000000', "the query of the hint lists the bad row: $hint");
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_class WHERE relname = 'bad_idx'}),
	'0', 'and leaves no index');

$node->stop;
done_testing();

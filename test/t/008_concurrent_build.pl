# CREATE INDEX CONCURRENTLY and REINDEX CONCURRENTLY while a client keeps inserting rows
# (GloVe-100 vectors): rows inserted during the build reach the index through the
# validation pass (which lists the index's TIDs by ambulkdelete and inserts what is
# missing) or through aminsert once the index accepts inserts.  A TID listed wrongly would
# leave a row out of the index or put it in twice; a scan of every list then returns each
# row of the table exactly once.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test';
use ScannTest;

my $node = PostgreSQL::Test::Cluster->new('concurrent_build');
$node->init;
$node->start;
my $set = ScannTest::dataset('glove-100');
$node->safe_psql('postgres', 'CREATE EXTENSION pg_scann');
ScannTest::load_table($node, 'items', $set, 30000);
$node->safe_psql('postgres', 'CREATE SEQUENCE copy_ids START 1000000');

my $script = $node->basedir . '/insert.sql';
append_to_file($script,
	"\\set r random(1, 30000)\n"
	  . "INSERT INTO items SELECT nextval('copy_ids'), embedding FROM items WHERE id = :r;\n");

# Runs `sql` while one client inserts copies of random rows for 5 seconds (started first,
# so inserts overlap every phase of the concurrent build); returns the rows inserted.
sub while_inserting {
	my ($sql) = @_;
	my ($out, $err) = ('', '');
	my $h = IPC::Run::start(
		[
			'pgbench', '--no-vacuum', '--client=1', '--time=5', '-f', $script,
			'-h', $node->host, '-p', $node->port, 'postgres'
		],
		'>', \$out, '2>', \$err);
	sleep 1;
	$node->safe_psql('postgres', $sql);
	$h->finish;
	my ($processed) = $out =~ /number of transactions actually processed: (\d+)/;
	return $processed // 0;
}

sub check_index {
	my ($what) = @_;
	is($node->safe_psql('postgres',
			q{SELECT indisvalid AND indisready FROM pg_index WHERE indexrelid = 'items_idx'::regclass}),
		't', "$what: the index is valid");
	my $rows = $node->safe_psql('postgres', 'SELECT count(*) FROM items');
	is($node->safe_psql('postgres', qq{SET enable_seqscan = off;
SET scann.nprobe = 10000; SET scann.reorder = $rows;
SELECT count(*) || ' ' || count(DISTINCT id) FROM (SELECT id FROM items
  ORDER BY embedding <=> (SELECT embedding FROM items WHERE id = 7) LIMIT $rows) s}),
		"$rows $rows", "$what: a scan of every list returns each of the $rows rows once");
}

my $inserted = while_inserting(
	'CREATE INDEX CONCURRENTLY items_idx ON items USING scann (embedding cosine_ops)');
cmp_ok($inserted, '>', 0, "$inserted rows were inserted during CREATE INDEX CONCURRENTLY");
check_index('CREATE INDEX CONCURRENTLY');

$inserted = while_inserting('REINDEX INDEX CONCURRENTLY items_idx');
cmp_ok($inserted, '>', 0, "$inserted rows were inserted during REINDEX CONCURRENTLY");
check_index('REINDEX CONCURRENTLY');

$node->stop;
done_testing();

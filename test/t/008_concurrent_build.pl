# CREATE INDEX CONCURRENTLY and REINDEX CONCURRENTLY while a client keeps inserting rows
# (GloVe-100 vectors): rows inserted during the build reach the index through the
# validation pass (which lists the index's TIDs by ambulkdelete and inserts what is
# missing) or through aminsert once the index accepts inserts.  A TID listed wrongly would
# leave a row out of the index or put it in twice; a scan of every list then returns each
# row of the table exactly once.
use strict;
use warnings;
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

sub check_index {
	my ($what) = @_;
	is($node->safe_psql('postgres',
			q{SELECT indisvalid AND indisready FROM pg_index WHERE indexrelid = 'items_idx'::regclass}),
		't', "$what: the index is valid");
	ScannTest::every_row_once($node, 'items', $what);
}

sub while_inserting {
	my ($sql) = @_;
	return ScannTest::while_inserting($node, 'items', 30000,
		sub { $node->safe_psql('postgres', $sql) });
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

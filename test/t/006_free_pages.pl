# Pages an insert added to the index but never linked into a list (what a crash between the
# relation extension and the WAL record that links the page leaves behind: all-zero pages,
# since extending a relation is not WAL-logged) are found by VACUUM, reported as reusable,
# and taken by later inserts instead of growing the index, also by concurrent inserts
# racing for them; a streaming standby replays those inserts into the same answers.  The crash's leftovers are made by appending zero
# pages to the index file while the server is stopped.
#
# The node runs with the 1MB of shared_buffers PostgreSQL::Test::Cluster gives a node that
# allows streaming, so the build's own pages evict its reserved metapage: the restart below
# then reads a metapage that went through disk mid-build (once written with a zero header,
# which made every later read fail with "invalid page in block 0").
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test';
use ScannTest;

my $node = PostgreSQL::Test::Cluster->new('free_pages');
$node->init(allows_streaming => 1);
# The standby checks every replayed generic WAL record against the page image it carries.
$node->append_conf('postgresql.conf', "wal_consistency_checking = 'generic'");
$node->start;
my $set = ScannTest::dataset('minilm');
$node->safe_psql('postgres', 'CREATE EXTENSION pg_scann; CREATE EXTENSION pageinspect');
ScannTest::load_table($node, 'items', $set, 2000);
$node->safe_psql('postgres',
	'CREATE INDEX items_idx ON items USING scann (embedding cosine_ops)');

sub index_blocks {
	return $node->safe_psql('postgres', q{SELECT pg_relation_size('items_idx') / 8192});
}

# Block numbers among [first, first + count) that are all-zero pages.
sub zero_pages {
	my ($first, $count) = @_;
	return $node->safe_psql('postgres',
		"SELECT coalesce(string_agg(b::text, ','), '') FROM generate_series($first, "
		  . ($first + $count - 1)
		  . ") b WHERE (page_header(get_raw_page('items_idx', b::int))).upper = 0");
}

my $blocks = index_blocks();
my $path = $node->data_dir . '/'
  . $node->safe_psql('postgres', q{SELECT pg_relation_filepath('items_idx')});
$node->stop;
open(my $fh, '>>:raw', $path) or die "cannot open $path: $!";
print $fh "\0" x (3 * 8192);
close($fh) or die "close: $!";
$node->start;

is($node->safe_psql('postgres', 'SHOW shared_buffers'), '1MB', 'a node with 1MB of shared_buffers');
is($node->safe_psql('postgres',
	q{SELECT lower > 24 AND upper > lower AND special < 8192 FROM page_header(get_raw_page('items_idx', 0))}),
	't', 'the metapage read back from disk is a valid page');
is(index_blocks(), $blocks + 3, 'the index file ends with three unlinked zero pages');
is(zero_pages($blocks, 3), join(',', $blocks .. $blocks + 2), 'which are all zeros');

my $nearest = q{SET enable_seqscan = off;
SELECT string_agg(id::text, ',' ORDER BY id) FROM
  (SELECT id FROM items ORDER BY embedding <=> (SELECT embedding FROM items WHERE id = 7)
   LIMIT 2) s};
like($node->safe_psql('postgres', $nearest), qr/(^|,)7(,|$)/,
	'queries ignore them (a row is among its own nearest)');

my ($ret, $stdout, $stderr) = $node->psql('postgres', 'VACUUM (VERBOSE) items');
is($ret, 0, 'VACUUM succeeds');
like($stderr, qr/index "items_idx": pages: \d+ in total, 0 newly deleted, 0 currently deleted, 3 reusable/,
	'VACUUM reports the three pages as reusable');
is($node->safe_psql('postgres',
	q{SELECT (SELECT reltuples FROM pg_class WHERE relname = 'items_idx') = count(*) FROM items}),
	't', 'and counts the index entries (read page by page) as the table has rows');

# A standby from a backup that holds the zero pages (a standby's copy of a relation can
# also be shorter than the primary's: redo then extends it).
$node->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('free_pages_standby');
$standby->init_from_backup($node, 'backup', has_streaming => 1);
$standby->start;

# Copies of every row: each list's tail fills up and needs new pages.
$node->safe_psql('postgres',
	'INSERT INTO items SELECT id + 100000, embedding FROM items; ANALYZE items');
is(zero_pages($blocks, 3), '', 'inserts took the three pages');
my $grown = index_blocks() - $blocks;
cmp_ok($grown, '>', 3, "the inserts needed more than three new pages ($grown beyond the build)");
is($node->safe_psql('postgres', $nearest), '7,100007',
	'a row and its copy (in a reused or new page) are each other\'s nearest');

# Every row is still reachable through the index: all lists, every candidate re-ranked.
my $rows = $node->safe_psql('postgres', 'SELECT count(*) FROM items');
is(ScannTest::scan_all($node, 'items'), "$rows $rows",
	"a scan of every list returns each of the $rows rows once");

$node->wait_for_catchup($standby, 'replay', $node->lsn('insert'));
is($standby->safe_psql('postgres', $nearest), '7,100007', 'the standby answers the same');
is(ScannTest::scan_all($standby, 'items'), "$rows $rows",
	'and finds every row through the index too');

($ret, $stdout, $stderr) = $node->psql('postgres', 'VACUUM (VERBOSE) items');
like($stderr, qr/index "items_idx": pages: \d+ in total, 0 newly deleted, 0 currently deleted, 0 reusable/,
	'a second VACUUM finds no free pages left');

# Concurrent inserts racing for free pages: two clients insert copies while six recorded
# pages are on offer, and now and then run VACUUM, which records free pages while inserts
# take them.  No page may end up in two lists (rows lost or returned twice).
$blocks = index_blocks();
$node->stop;
open($fh, '>>:raw', $path) or die "cannot open $path: $!";
print $fh "\0" x (6 * 8192);
close($fh) or die "close: $!";
$node->start;
$node->safe_psql('postgres', 'VACUUM items; CREATE SEQUENCE copy_ids START 200000');
$node->pgbench(
	'--no-vacuum --client=2 --jobs=2 --transactions=40',
	0, [qr/processed: 80\/80/], [qr/^$/], 'two clients insert copies and VACUUM concurrently',
	{
		'006_copies@4' => q{INSERT INTO items
  SELECT nextval('copy_ids'), embedding FROM items WHERE id < 100000 ORDER BY random() LIMIT 20;},
		'006_vacuum@1' => 'VACUUM items;'
	});
is(zero_pages($blocks, 6), '', 'the concurrent inserts took the six pages');
$rows = $node->safe_psql('postgres', 'SELECT count(*) FROM items');
is(ScannTest::scan_all($node, 'items'), "$rows $rows",
	"a scan of every list returns each of the $rows rows once");
$node->wait_for_catchup($standby, 'replay', $node->lsn('insert'));
is(ScannTest::scan_all($standby, 'items'), "$rows $rows", 'and so does the standby');
$node->safe_psql('postgres', 'VACUUM items');
is($node->safe_psql('postgres', q{SELECT reltuples FROM pg_class WHERE relname = 'items_idx'}),
	$rows, 'VACUUM counts every entry after the concurrent inserts');

$standby->stop;

$node->stop;
done_testing();

# Pages an insert wrote but never linked into a list are taken back by VACUUM.  A block
# wider than a page (Fashion-MNIST, 784-d, one dimension per subspace: 398 units, two pages;
# re-ranked from the heap here, so that the block's pages are the only ones an insert adds:
# 014_rerank_records does the same for the pages of re-ranking records)
# writes its continuation page in a WAL record of its own before the record that links the
# block; an insert that fails between the two (scann.inject_fault = 'error_before_link')
# or crashes there ('panic_before_link', after flushing the WAL written so far) leaves
# initialized pages that no chain reaches.  VACUUM must report them as reusable, rewrite
# them as free pages, and later inserts must take them instead of growing the index; a
# streaming standby replays all of it into the same pages and answers.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use lib 'test';
use ScannTest;

my $node = PostgreSQL::Test::Cluster->new('orphans');
$node->init(allows_streaming => 1);
# Crash recovery and the standby check every replayed generic WAL record against the page
# image it carries (wal_consistency_checking).
$node->append_conf('postgresql.conf',
	"restart_after_crash = on\nautovacuum = off\nwal_consistency_checking = 'generic'");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_scann; CREATE EXTENSION pageinspect');
my $set = ScannTest::dataset('fashion-mnist');
ScannTest::load_table($node, 'items', $set, 2000);
$node->safe_psql('postgres', q{
CREATE TABLE later AS SELECT * FROM items WHERE id >= 1500;
DELETE FROM items WHERE id >= 1500;
VACUUM items;
CREATE INDEX items_idx ON items USING scann (embedding l2_ops)
  WITH (lists = 4, dims_per_subspace = 1, rerank = 'heap');
});
$node->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('orphans_standby');
$standby->init_from_backup($node, 'backup', has_streaming => 1);
$standby->start;

sub index_blocks {
	my ($n) = @_;
	return ($n // $node)->safe_psql('postgres', q{SELECT pg_relation_size('items_idx') / 8192});
}

# "block:type" of every page after the metapage whose type (the uint16 at byte 8188 of the
# special space; 0 for an all-zero page) is in @types, e.g. 6 = free.
sub pages_of_type {
	my ($n, @types) = @_;
	my $in = join(',', @types);
	return $n->safe_psql('postgres', qq{
SELECT coalesce(string_agg(b || ':' || t, ',' ORDER BY b), '') FROM (
  SELECT b, get_byte(p, 8188) + 256 * get_byte(p, 8189) AS t
  FROM generate_series(1, pg_relation_size('items_idx') / 8192 - 1) b,
       LATERAL get_raw_page('items_idx', b::int) p) s
WHERE t IN ($in)});
}

# Which of the given blocks some page's `next` link (bytes 8184..8187) points to.
sub linked {
	my ($n, @blocks) = @_;
	my $in = join(',', @blocks);
	return $n->safe_psql('postgres', qq{
SELECT coalesce(string_agg(DISTINCT nx::text, ','), '') FROM (
  SELECT get_byte(p, 8184) + 256 * get_byte(p, 8185) + 65536 * get_byte(p, 8186)
         + 16777216 * get_byte(p, 8187)::bigint AS nx
  FROM generate_series(1, pg_relation_size('items_idx') / 8192 - 1) b,
       LATERAL get_raw_page('items_idx', b::int) p) s
WHERE nx IN ($in)});
}

# Every row through the index: all lists, every candidate re-ranked; "rows distinct".
sub vacuum_reusable {
	my ($ret, $stdout, $stderr) = $node->psql('postgres', 'VACUUM (VERBOSE) items');
	return $stderr =~ /index "items_idx": pages: \d+ in total, .* (\d+) reusable/ ? $1 : "none ($stderr)";
}

is(vacuum_reusable(), 0, 'after the build VACUUM finds no reusable page');
my $blocks = index_blocks();

# 1. An ERROR between the continuation page's record and the linking record.
my ($ret, $stdout, $stderr) = $node->psql('postgres', q{
SET scann.inject_fault = 'error_before_link';
INSERT INTO items SELECT * FROM later});
like($stderr, qr/ERROR:  scann.inject_fault: error before linking a new block/,
	'an insert that needs a new block fails before linking it');
is(index_blocks(), $blocks + 2, 'the failed insert left two pages (home and continuation)');
# The home page was initialized in its buffer but never WAL-logged or marked dirty: it
# reads as a list page, or all zeros once evicted.
my $next = $blocks + 1;
like(pages_of_type($node, 0, 4, 5), qr/(^|,)$blocks:[04],$next:5$/,
	'they are a home page (initialized or all-zero) and its continuation page');
is(vacuum_reusable(), 2, 'VACUUM reports the two orphaned pages as reusable');
like(pages_of_type($node, 0, 6), qr/^$blocks:[06],$next:6$/,
	'and has rewritten them as free pages (an all-zero one stays as it is)');
is(ScannTest::scan_all($node, 'items', '<->'), '1500 1500',
	'a scan of every list returns each of the 1500 rows once');

# Inserts take the free pages before extending the index.
$node->safe_psql('postgres', 'INSERT INTO items SELECT * FROM later WHERE id < 1600');
is(pages_of_type($node, 6, 0), '', 'inserts took both free pages');
is(linked($node, $blocks, $next), "$blocks,$next", 'and linked them into a list');
is(ScannTest::scan_all($node, 'items', '<->'), '1600 1600',
	'a scan of every list returns each of the 1600 rows once');
is(vacuum_reusable(), 0, 'VACUUM then finds no reusable page');

# 2. A crash at the same point, with the continuation page's record flushed.
$blocks = index_blocks();
my $log_offset = -s $node->logfile;
($ret, $stdout, $stderr) = $node->psql('postgres', q{
SET scann.inject_fault = 'panic_before_link';
INSERT INTO items SELECT * FROM later WHERE id >= 1600});
like($stderr, qr/server closed the connection unexpectedly|PANIC/, 'the backend crashes');
# A new session may still connect in the moment before the postmaster reacts to the crash:
# wait for the restart to finish before polling (it raced on a loaded machine).
my $restarted;
for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
{
	last if $restarted = $node->log_contains(qr/reinitializing.*ready to accept connections/s, $log_offset);
	usleep(100_000);
}
BAIL_OUT('the server did not restart after the crash') unless $restarted;
$node->poll_query_until('postgres', 'SELECT true')
  or BAIL_OUT('the server did not come back after the crash');
ok(index_blocks() >= $blocks + 2, 'after recovery the index holds the crashed insert\'s pages');
$next = $blocks + 1;
like(pages_of_type($node, 0, 4, 5), qr/(^|,)$blocks:0,$next:5$/,
	'an all-zero home page (its extension is not WAL-logged) and the replayed continuation page');
is(vacuum_reusable(), 2, 'VACUUM reports both as reusable');
is(pages_of_type($node, 0, 6), "$blocks:0,$next:6", 'and has rewritten the continuation page as free');
$node->safe_psql('postgres', 'INSERT INTO items SELECT * FROM later WHERE id >= 1600');
is(pages_of_type($node, 6, 0), '', 'inserts took both pages');
is(linked($node, $blocks, $next), "$blocks,$next", 'and linked them into a list');
is(ScannTest::scan_all($node, 'items', '<->'), '2000 2000',
	'a scan of every list returns each of the 2000 rows once');

# VACUUM racing inserts that add wide blocks: pages a running insert has written but not
# yet linked must not be taken back (that would lose rows or put a page in two lists).
$node->safe_psql('postgres', 'CREATE SEQUENCE copy_ids START 100000');
$node->pgbench(
	'--no-vacuum --client=2 --jobs=2 --transactions=60',
	0, [qr/processed: 120\/120/], [qr/^$/], 'two clients insert copies while VACUUM runs',
	{
		'009_copies@3' => q{INSERT INTO items
  SELECT nextval('copy_ids'), embedding FROM items WHERE id < 2000 ORDER BY random() LIMIT 40;},
		'009_vacuum@1' => 'VACUUM items;'
	});
my $rows = $node->safe_psql('postgres', 'SELECT count(*) FROM items');
cmp_ok($rows, '>', 2000, "the copies were inserted ($rows rows)");
is(ScannTest::scan_all($node, 'items', '<->'), "$rows $rows",
	"a scan of every list returns each of the $rows rows once");
is(vacuum_reusable(), 0, 'and VACUUM finds no page left unlinked');

# The standby replayed the take-back and the inserts into the same answers and pages.
$node->wait_for_catchup($standby, 'replay', $node->lsn('insert'));
is(ScannTest::scan_all($standby, 'items', '<->'), "$rows $rows",
	'the standby returns each row once too');
is(pages_of_type($standby, 4, 5, 6), pages_of_type($node, 4, 5, 6),
	'and its list and free pages are where the primary\'s are');

$standby->stop;
$node->stop;
done_testing();

# Re-ranking records (rerank = 'sq8') under WAL, crashes and VACUUM.  Fashion-MNIST rows
# (784-d, integers: stored exactly by their codes) in one list: a record page holds 10
# records, so a block's run of 32 continues on the last run's page and takes new pages.  An
# insert that appends a block writes those new pages in WAL records of their own before the
# one that links the block: one that fails there (scann.inject_fault) or crashes there leaves
# record pages nothing locates, which VACUUM takes back and later inserts reuse.  A streaming
# standby (wal_consistency_checking) answers as the primary does, and every answer equals an
# exact scan's.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use lib 'test';
use ScannTest;

my $node = PostgreSQL::Test::Cluster->new('records');
$node->init(allows_streaming => 1);
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
CREATE INDEX items_idx ON items USING scann (embedding l2_ops) WITH (lists = 1, rerank = 'sq8');
});
$node->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('records_standby');
$standby->init_from_backup($node, 'backup', has_streaming => 1);
$standby->start;

sub index_blocks {
	my ($n) = @_;
	return ($n // $node)->safe_psql('postgres', q{SELECT pg_relation_size('items_idx') / 8192});
}

# Blocks after the metapage whose page type (the uint16 at byte 8188) is in @types
# (7 = records, 6 = free, 0 = all-zero).
sub pages_of_type {
	my ($n, @types) = @_;
	my $in = join(',', @types);
	return $n->safe_psql('postgres', qq{
SELECT coalesce(string_agg(b::text, ',' ORDER BY b), '') FROM (
  SELECT b, get_byte(p, 8188) + 256 * get_byte(p, 8189) AS t
  FROM generate_series(1, pg_relation_size('items_idx') / 8192 - 1) b,
       LATERAL get_raw_page('items_idx', b::int) p) s
WHERE t IN ($in)});
}

sub vacuum_reusable {
	my ($ret, $stdout, $stderr) = $node->psql('postgres', 'VACUUM (VERBOSE) items');
	return $stderr =~ /index "items_idx": pages: \d+ in total, .* (\d+) reusable/ ? $1 : "none ($stderr)";
}

# The distances of the 30 nearest rows to 8 rows of `later`, through the index (every
# candidate re-ranked) and by a sequential scan, on node $n: "same" when they agree.
sub exact_answers {
	my ($n) = @_;
	my $query = q{SELECT string_agg(ds, ';' ORDER BY id) FROM (SELECT q.id, (SELECT string_agg(d::text, ',')
  FROM (SELECT i.embedding <-> q.embedding AS d FROM items i ORDER BY i.embedding <-> q.embedding
  LIMIT 30) s) AS ds FROM later q WHERE q.id % 61 = 0) t};
	my $by_index = $n->safe_psql('postgres',
		"SET scann.nprobe = 10; SET scann.reorder = 5000; SET enable_seqscan = off; $query");
	my $by_seq = $n->safe_psql('postgres', "SET enable_indexscan = off; $query");
	return $by_index eq $by_seq ? 'same' : "differ:\n$by_index\n$by_seq";
}

is(exact_answers($node), 'same', 'after the build, answers equal an exact scan');
is(vacuum_reusable(), 0, 'after the build VACUUM finds no reusable page');

# Fill the last block's free slots (no new pages), then one insert needs a new block whose run
# of records continues on the last run's page and on new record pages.
my $free = $node->safe_psql('postgres', "SELECT free_slots FROM scann_index_info('items_idx')");
$node->safe_psql('postgres', "INSERT INTO items SELECT * FROM later WHERE id < 1500 + $free");
my $blocks = index_blocks();
my $records_before = pages_of_type($node, 7);
my ($ret, $stdout, $stderr) = $node->psql('postgres',
	"SET scann.inject_fault = 'error_before_link'; INSERT INTO items SELECT * FROM later WHERE id = 1500 + $free");
like($stderr, qr/error before linking a new block/, 'an insert failed between its record pages and the block');
my $grown = index_blocks() - $blocks;
cmp_ok($grown, '>=', 1, "it left $grown new page(s) behind");
is(vacuum_reusable(), $grown, 'VACUUM reports those pages as reusable');
is(pages_of_type($node, 7), $records_before, 'the record pages in use are those of before');
$node->safe_psql('postgres', "INSERT INTO items SELECT * FROM later WHERE id = 1500 + $free");
is(index_blocks(), $blocks + $grown, 'the same insert took the pages back instead of growing the index');
is(vacuum_reusable(), 0, 'and VACUUM finds no reusable page after it');
$node->safe_psql('postgres', "INSERT INTO items SELECT * FROM later WHERE id BETWEEN 1501 + $free AND 1600");
is(exact_answers($node), 'same', 'answers still equal an exact scan');

# A crash at the same point: recovery replays the record pages, which nothing locates.
$node->safe_psql('postgres', 'INSERT INTO items SELECT * FROM later WHERE id BETWEEN 1601 AND 1630');
$blocks = index_blocks();
my $log_offset = -s $node->logfile;
$node->psql('postgres',
	"SET scann.inject_fault = 'panic_before_link'; INSERT INTO items SELECT * FROM later WHERE id BETWEEN 1631 AND 1700");
# Wait for crash recovery before the next query (a connection in between is refused).
$node->wait_for_log(qr/database system is ready to accept connections/, $log_offset);
my $first_failed = $node->safe_psql('postgres', 'SELECT min(id) FROM later WHERE id >= 1631 AND id NOT IN (SELECT id FROM items)');
my $orphans = index_blocks() - $blocks;
cmp_ok($orphans, '>=', 1, "the crash left $orphans page(s) after recovery");
is(vacuum_reusable(), $orphans, 'VACUUM reports them as reusable');
$node->safe_psql('postgres', "INSERT INTO items SELECT * FROM later WHERE id = $first_failed");
is(index_blocks(), $blocks + $orphans, 'the same insert, run again, reuses them');
$node->safe_psql('postgres', "INSERT INTO items SELECT * FROM later WHERE id BETWEEN 1631 AND 1700 AND id <> $first_failed");
is(exact_answers($node), 'same', 'after crash recovery answers equal an exact scan');

# Deletes, VACUUM and reinserts into the freed slots (their records rewritten).
$node->safe_psql('postgres', q{
DELETE FROM items WHERE id % 5 = 0; VACUUM items;
INSERT INTO items SELECT id + 100000, embedding FROM later WHERE id BETWEEN 1701 AND 1900;});
is(exact_answers($node), 'same', 'after deletes, VACUUM and slot reuse answers equal an exact scan');
is($node->safe_psql('postgres', q{SET enable_seqscan = off; SET scann.nprobe = 10; SET scann.reorder = 7;
SELECT count(*) || ' ' || count(DISTINCT id) FROM (SELECT id FROM items
  ORDER BY embedding <-> (SELECT embedding FROM later WHERE id = 1999)) s}),
	$node->safe_psql('postgres', q{SELECT count(*) || ' ' || count(*) FROM items}),
	'small batches return every row once');

# The standby replayed everything (each record checked against its page image).
$node->wait_for_catchup($standby, 'replay');
is(exact_answers($standby), 'same', 'the standby answers equal an exact scan');
is(index_blocks($standby), index_blocks(), 'the standby has the same pages');
is($standby->safe_psql('postgres', q{SET enable_seqscan = off; SET scann.nprobe = 3;
SELECT string_agg(id::text, ',') FROM (SELECT id FROM items
  ORDER BY embedding <-> (SELECT embedding FROM later WHERE id = 1999) LIMIT 10) s}),
	$node->safe_psql('postgres', q{SET enable_seqscan = off; SET scann.nprobe = 3;
SELECT string_agg(id::text, ',') FROM (SELECT id FROM items
  ORDER BY embedding <-> (SELECT embedding FROM later WHERE id = 1999) LIMIT 10) s}),
	'the standby returns the primary\'s rows at ordinary settings');
my $inconsistent = grep { /inconsistent page found/ } split /\n/, slurp_file($standby->logfile);
is($inconsistent, 0, 'no inconsistent page in the standby\'s replay');

$standby->stop;
$node->stop;
done_testing();

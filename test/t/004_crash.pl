# Crash recovery: an immediate shutdown while several clients insert concurrently; after
# recovery the index is usable and holds every committed row (each found as its own
# nearest neighbour), and VACUUM and new inserts still work.  Then an unlogged table's
# index after a crash: reset from its init fork, empty and usable.
use strict;
use warnings;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test';
use ScannTest;

my $node = PostgreSQL::Test::Cluster->new('crash');
$node->init;
# Crash recovery checks every replayed generic WAL record against the page image it
# carries (wal_consistency_checking).
$node->append_conf('postgresql.conf',
	"max_connections = 20\nwal_consistency_checking = 'generic'");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_scann');
my $glove = ScannTest::dataset('glove-100');
ScannTest::load_table($node, 'src', $glove, 20000);
$node->safe_psql('postgres', q{
CREATE TABLE t (id bigserial PRIMARY KEY, src_id bigint, embedding real[]);
INSERT INTO t (src_id, embedding) SELECT id, embedding FROM src WHERE id < 5000;
CREATE INDEX t_idx ON t USING scann (embedding cosine_ops);
CHECKPOINT;
});

# Four clients insert rows from src until the server dies under them.
my $script = $node->basedir . '/insert.sql';
PostgreSQL::Test::Utils::append_to_file($script,
	"\\set id random(5000, 19999)\nINSERT INTO t (src_id, embedding) SELECT id, embedding FROM src WHERE id = :id;\n");
my ($out, $err);
my $pgbench = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '4', '-j', '2', '-T', '60', '-f', $script, '-h', $node->host,
	  '-p', $node->port, 'postgres' ],
	'>', \$out, '2>', \$err);
$node->poll_query_until('postgres', 'SELECT count(*) > 1500 FROM t WHERE src_id >= 5000')
  or die 'inserts did not start';
$node->stop('immediate');
$pgbench->finish;
$node->start;

my $rows = $node->safe_psql('postgres', 'SELECT count(*) FROM t');
cmp_ok($rows, '>', 6500, "rows committed before the crash survived recovery: $rows");
is($node->safe_psql('postgres', q{
SET enable_seqscan = off; SET scann.nprobe = 100000;
SELECT count(*) FROM (SELECT id FROM t ORDER BY embedding <=> (SELECT embedding FROM src LIMIT 1) LIMIT 1000000) s}),
	$rows, 'the recovered index returns every committed row');
is($node->safe_psql('postgres', q{
SET enable_seqscan = off;
SELECT count(*) FROM (SELECT * FROM t WHERE src_id >= 5000 ORDER BY id DESC LIMIT 200) r
 WHERE (SELECT min(x.embedding <=> r.embedding) FROM
         (SELECT embedding FROM t ORDER BY embedding <=> r.embedding LIMIT 1) x) < 1e-6}),
	'200', 'each of the last 200 inserted rows is its own nearest neighbour through the index');

$node->safe_psql('postgres', q{
DELETE FROM t WHERE id % 2 = 0;
VACUUM t;
INSERT INTO t (src_id, embedding) SELECT id, embedding FROM src WHERE id BETWEEN 100 AND 199;
});
is($node->safe_psql('postgres', q{
SET enable_seqscan = off; SET scann.nprobe = 100000;
SELECT count(*) FROM (SELECT id FROM t ORDER BY embedding <=> (SELECT embedding FROM src LIMIT 1) LIMIT 1000000) s}),
	$node->safe_psql('postgres', 'SELECT count(*) FROM t'),
	'after VACUUM and more inserts the index still holds exactly the table');

# An unlogged table's index is rebuilt from its init fork by crash recovery: empty, and
# usable for the rows inserted after.
$node->safe_psql('postgres', q{
CREATE UNLOGGED TABLE u (id bigint, embedding real[]);
INSERT INTO u SELECT id, embedding FROM src WHERE id < 3000;
CREATE INDEX u_idx ON u USING scann (embedding cosine_ops);
});
$node->stop('immediate');
$node->start;
is($node->safe_psql('postgres', 'SELECT count(*) FROM u'), '0',
	'crash recovery empties the unlogged table');
$node->safe_psql('postgres', 'INSERT INTO u SELECT id, embedding FROM src WHERE id BETWEEN 3000 AND 3499');
is($node->safe_psql('postgres', q{
SET enable_seqscan = off; SET scann.nprobe = 100000;
SELECT count(*) || ' ' || count(DISTINCT id) FROM (SELECT id FROM u
  ORDER BY embedding <=> (SELECT embedding FROM src WHERE id = 3100) LIMIT 100000) s}),
	'500 500', 'its index, reset from the init fork, returns each row inserted since once');
is($node->safe_psql('postgres', q{
SET enable_seqscan = off;
SELECT id FROM u ORDER BY embedding <=> (SELECT embedding FROM src WHERE id = 3100) LIMIT 1}),
	'3100', 'and finds a row as its own nearest neighbour');

unlike(slurp_file($node->logfile), qr/inconsistent page found/,
	'every page crash recovery replayed equals the image logged with it');

$node->stop;
done_testing();

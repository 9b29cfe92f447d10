# The on-disk format check: an index whose metapage carries another format version (as one
# written by an older build of pg_scann would) is refused with a clear error and a hint to
# REINDEX, never misread; REINDEX makes it usable again.  The version is patched into the
# index file while the server is stopped.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test';
use ScannTest;

my $node = PostgreSQL::Test::Cluster->new('format');
$node->init;
$node->start;
my $set = ScannTest::dataset('minilm');
$node->safe_psql('postgres', 'CREATE EXTENSION pg_scann');
ScannTest::load_table($node, 'items', $set, 2000);
$node->safe_psql('postgres',
	'CREATE INDEX items_idx ON items USING scann (embedding cosine_ops)');

my $query = q{SET enable_seqscan = off;
SELECT string_agg(id::text, ',') FROM
  (SELECT id FROM items ORDER BY embedding <=> (SELECT embedding FROM items WHERE id = 7)
   LIMIT 5) s};
my $before = $node->safe_psql('postgres', $query);
like($before, qr/^7,/, 'the index answers before the patch (a row is its own nearest)');

my $path = $node->data_dir . '/'
  . $node->safe_psql('postgres', q{SELECT pg_relation_filepath('items_idx')});
$node->stop;

# ScannMetaPage starts right after the 24-byte page header: magic (4 bytes), version (4).
open(my $fh, '+<:raw', $path) or die "cannot open $path: $!";
seek($fh, 24, 0) or die "seek: $!";
read($fh, my $head, 8) == 8 or die "read: $!";
my ($magic, $version) = unpack('L<L<', $head);
is(sprintf('%08X', $magic), '5CA770AB', 'the metapage starts with the scann magic');
seek($fh, 28, 0) or die "seek: $!";
print $fh pack('L<', $version - 1);
close($fh) or die "close: $!";
$node->start;

my ($ret, $stdout, $stderr) = $node->psql('postgres', $query);
isnt($ret, 0, 'a query through an index of another format version fails');
like(
	$stderr,
	qr/scann index "items_idx" has format version @{[$version - 1]}, expected $version/,
	'the error names the index and both versions');
like($stderr, qr/HINT:\s+REINDEX the index/, 'and says how to recover');
($ret, $stdout, $stderr) = $node->psql('postgres',
	q{INSERT INTO items SELECT 100000, embedding FROM items WHERE id = 1});
isnt($ret, 0, 'an insert into it fails the same way instead of writing into it');
like($stderr, qr/has format version/, 'with the same error');

$node->safe_psql('postgres', 'REINDEX INDEX items_idx');
is($node->safe_psql('postgres', $query), $before, 'after REINDEX the index answers as before');

$node->stop;
done_testing();

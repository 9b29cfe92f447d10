# Scaling out with postgres_fdw: a coordinator's hash-partitioned table with one local
# partition and two partitions on shard servers (postgres_fdw foreign tables), each shard
# with its own scann index, queried with the SQL scann_knn_query builds.  The plan pushes
# each shard's ORDER BY and LIMIT to it and brings back distances and ids (no vectors)
# from shards scanned asynchronously; the answers equal exact ones when every list is
# probed; settings given in the foreign servers' options reach each shard; a shard that
# is down fails the query; rows inserted through the coordinator are found in the shards'
# indexes.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test';
use ScannTest;

my $rows = 20000;
my $nq = 100;
my $set = ScannTest::dataset('fashion-mnist');
# Every list probed and 1,000 candidates re-ranked: each partition's scan is exact here.
# On partitions of 6,700 rows such a scan costs more than a sequential scan, so the
# sequential scan is disabled to keep the indexes under test.
my $all_lists = '-c enable_seqscan=off -c scann.nprobe=100000 -c scann.reorder=1000';

# A batched INSERT into foreign partitions keeps the buffer of every row of a batch pinned
# (PostgreSQL 15 copies the source slot by pinning its buffer): the coordinator needs more
# than the suite's 1MB of shared buffers to route the rows.
my $coord_conf = "shared_buffers = 16MB\nmaintenance_work_mem = 64MB";
my @shards;
for my $i (1, 2) {
	my $shard = PostgreSQL::Test::Cluster->new("shard$i");
	$shard->init;
	$shard->start;
	$shard->safe_psql('postgres', q{
CREATE EXTENSION pg_scann;
CREATE TABLE items (id bigint, embedding real[]);
ALTER TABLE items ALTER embedding SET STORAGE PLAIN;});
	push @shards, $shard;
}
my $coord = PostgreSQL::Test::Cluster->new('coordinator');
$coord->init;
$coord->append_conf('postgresql.conf', $coord_conf);
$coord->start;

# The recipe of README.md, "Scaling out".
my $servers = '';
for my $i (1, 2) {
	my ($host, $port) = ($shards[ $i - 1 ]->host, $shards[ $i - 1 ]->port);
	$servers .= qq{
CREATE SERVER shard$i FOREIGN DATA WRAPPER postgres_fdw
  OPTIONS (host '$host', port '$port', dbname 'postgres', extensions 'pg_scann',
           async_capable 'true', use_remote_estimate 'true', fdw_tuple_cost '0.2',
           parallel_commit 'true', batch_size '500');
CREATE USER MAPPING FOR CURRENT_USER SERVER shard$i;
CREATE FOREIGN TABLE items_shard$i PARTITION OF items
  FOR VALUES WITH (MODULUS 3, REMAINDER $i) SERVER shard$i OPTIONS (table_name 'items');};
}
$coord->safe_psql('postgres', qq{
CREATE EXTENSION pg_scann;
CREATE EXTENSION postgres_fdw;
CREATE TABLE items (id bigint, embedding real[]) PARTITION BY HASH (id);
CREATE TABLE items_local PARTITION OF items FOR VALUES WITH (MODULUS 3, REMAINDER 0);
ALTER TABLE items_local ALTER embedding SET STORAGE PLAIN;
$servers
CREATE TABLE all_rows (id bigint PRIMARY KEY, embedding real[], part int);
ALTER TABLE all_rows ALTER embedding SET STORAGE PLAIN;
COPY all_rows (id, embedding) FROM PROGRAM 'head -n $rows $set->{dir}/base.tsv';
CREATE TABLE queries (id bigint PRIMARY KEY, embedding real[]);
ALTER TABLE queries ALTER embedding SET STORAGE PLAIN;
COPY queries FROM PROGRAM 'head -n $nq $set->{dir}/queries.tsv';
UPDATE all_rows SET part = p FROM generate_series(0, 2) p
 WHERE satisfies_hash_partition('items'::regclass, 3, p, id);
INSERT INTO items SELECT id, embedding FROM all_rows;
CREATE INDEX ON items USING scann (embedding);
ANALYZE items_local;});
$_->safe_psql('postgres', 'CREATE INDEX ON items USING scann (embedding); ANALYZE items')
  for @shards;
is( $coord->safe_psql('postgres',
		'SELECT string_agg(tableoid::regclass::text || \' \' || n, \', \' ORDER BY tableoid::regclass::text) '
		  . 'FROM (SELECT tableoid, count(*) AS n FROM items GROUP BY 1) c'),
	$coord->safe_psql('postgres',
		"SELECT string_agg(CASE part WHEN 0 THEN 'items_local' ELSE 'items_shard' || part END "
		  . "|| ' ' || n, ', ' ORDER BY part) FROM (SELECT part, count(*) AS n FROM all_rows GROUP BY 1) c"),
	'the rows are split by hash between the local partition and the two shards');

# The exact 10 nearest distances of every query over all rows (partition -1) and over
# each partition's rows, from one pass over the reference table.
$coord->safe_psql('postgres', q{
SET work_mem = '64MB';
CREATE TABLE exact AS
WITH dist AS MATERIALIZED (
  SELECT q.id AS qid, a.part, a.embedding <-> q.embedding AS d
    FROM all_rows a CROSS JOIN queries q)
SELECT qid, -1 AS part, (array_agg(d ORDER BY d))[1:10] AS d FROM dist GROUP BY qid
UNION ALL
SELECT qid, part, (array_agg(d ORDER BY d))[1:10] FROM dist GROUP BY qid, part;});
my %exact;
for my $line (split /\n/,
	$coord->safe_psql('postgres', "SELECT qid, part, d FROM exact"))
{
	my ($qid, $part, $d) = split /\|/, $line;
	$d =~ tr/{}//d;
	$exact{$part}{$qid} = [ split /,/, $d ];
}

# The answers (id and distance of the 10 nearest rows) of scann_knn_query's SQL for TABLE,
# prepared once and executed for every query in one session after $setup: {qid => [[id,
# distance], ...]}.
sub knn_answers {
	my ($table, $setup) = @_;
	my $script = ($setup // '')
	  . "\nSELECT scann_knn_query('$table', 'embedding', 10) AS knn \\gset\n"
	  . "PREPARE knn(real[]) AS :knn;\n";
	$script .= "\\echo Q$_\nSELECT embedding AS v FROM queries WHERE id = $_ \\gset\n"
	  . "EXECUTE knn(:'v');\n"
	  for 0 .. $nq - 1;
	my (%answers, $qid);
	for my $line (split /\n/, $coord->safe_psql('postgres', $script))
	{
		if ($line =~ /^Q(\d+)$/) { $qid = $1; next; }
		push @{ $answers{$qid} }, [ split /\|/, $line ];
	}
	return \%answers;
}

# Mean recall@10 of the answers against the exact distances of partition $part (-1 = all):
# a row is a hit when its distance is within the exact 10th (Fashion-MNIST has ties).
sub recall_of {
	my ($answers, $part) = @_;
	my $hits = 0;
	for my $qid (0 .. $nq - 1) {
		my $kth = $exact{$part}{$qid}[9];
		$hits += grep { $_->[1] <= $kth * (1 + 1e-9) } @{ $answers->{$qid} || [] };
	}
	return $hits / (10 * $nq);
}

# Queries whose 10 distances differ from the exact ones, rank by rank.
sub inexact_queries {
	my ($answers, $part) = @_;
	my @bad;
	for my $qid (0 .. $nq - 1) {
		my @got = map { $_->[1] } @{ $answers->{$qid} || [] };
		my @want = @{ $exact{$part}{$qid} };
		push @bad, $qid
		  if @got != 10
		  || grep { abs($got[$_] - $want[$_]) > 1e-9 * $want[$_] } 0 .. 9;
	}
	return @bad;
}

# The plan: each shard's remote query carries the ORDER BY and the LIMIT and returns the
# distance and the ids, never the vector; the shards are scanned asynchronously; the
# local partition uses its index.  Checked for a prepared statement's generic plan and for
# a plan made for one vector, after $setup.
my $sql = $coord->safe_psql('postgres', "SELECT scann_knn_query('items', 'embedding', 10)");
my $q0 = ScannTest::query_literal($set, 0);

sub check_plan {
	my ($what, $setup) = @_;
	for my $mode ('force_generic_plan', 'force_custom_plan') {
		my $plan = $coord->safe_psql('postgres', qq{$setup
SET plan_cache_mode = $mode;
PREPARE knn(real[]) AS $sql;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE knn('$q0');});
		$plan =~ s/'\{[^']*\}'/'{...}'/g;
		my $label = "$what, $mode";
		my @remote = $plan =~ /Remote SQL: (.*)/g;
		is(scalar(() = $plan =~ /Async Foreign Scan/g), 2, "$label: both shards are scanned asynchronously");
		unlike($plan, qr/(?<!Async )Foreign Scan/, "$label: no shard is scanned synchronously");
		like($plan, qr/Index Scan using items_local_embedding_idx/,
			"$label: the local partition is searched through its index");
		is(scalar(@remote), 2, "$label: one remote query per shard");
		my $param = $mode =~ /generic/ ? '$1::real[]' : "'{...}'";
		for my $r (@remote) {
			my ($select_list) = $r =~ /^SELECT (.*?) FROM public\.items /;
			is_deeply([ split /, (?![^()]*\))/, $select_list // '' ],
				[ "(embedding OPERATOR(public.<->) $param)", 'array_agg(id)' ],
				"$label: a shard returns the distance and the ids, not the vector");
			like($r, qr/ GROUP BY 1 ORDER BY \(embedding OPERATOR\(public\.<->\) .*\) ASC NULLS LAST LIMIT 10::bigint$/,
				"$label: a shard's query carries its ORDER BY and LIMIT");
		}
		note $plan;
	}
}
check_plan('default settings', '');

# What the plain query does instead (README): no LIMIT reaches the shards and every row
# they return carries its vector.
my $plain = $coord->safe_psql('postgres', qq{SET plan_cache_mode = force_generic_plan;
PREPARE plain(real[]) AS SELECT id FROM items ORDER BY embedding <-> \$1 LIMIT 10;
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE plain('$q0');});
my @plain_remote = $plain =~ /Remote SQL: (.*)/g;
is(scalar(grep { /^SELECT id, embedding FROM/ && !/LIMIT/ } @plain_remote), 2,
	'the plain ORDER BY ... LIMIT fetches vectors from the shards without a LIMIT');

# A filter that can be shipped goes to the shards' WHERE and keeps the plan; one that
# cannot (a volatile function) is applied on the coordinator, and that shard's rows come
# back with their vectors.
my $filtered = $coord->safe_psql('postgres', qq{
PREPARE f(real[]) AS @{[ $coord->safe_psql('postgres',
	"SELECT scann_knn_query('items', 'embedding', 10, filter => 'id % 2 = 0')") ]};
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE f('$q0');});
is(scalar(grep { /WHERE \(\(\(id % 2::bigint\) = 0\)\) GROUP BY 1 .* LIMIT 10::bigint$/ }
	  $filtered =~ /Remote SQL: (.*)/g),
	2, 'a shippable filter runs on the shards, under the same plan');
my $unshippable = $coord->safe_psql('postgres', qq{
PREPARE f(real[]) AS @{[ $coord->safe_psql('postgres',
	"SELECT scann_knn_query('items', 'embedding', 10, filter => 'random() >= 0')") ]};
EXPLAIN (VERBOSE, COSTS OFF) EXECUTE f('$q0');});
is(scalar(grep { /^SELECT id, embedding FROM/ } $unshippable =~ /Remote SQL: (.*)/g),
	2, 'a filter that cannot be shipped makes the shards return their vectors');

# Exact answers when every partition probes every list: the coordinator's own partition
# by its session setting, the shards by their servers' options.
$coord->safe_psql('postgres', "ALTER SERVER shard$_ OPTIONS (ADD options '$all_lists')")
  for 1, 2;
my $coord_all_lists = "SET enable_seqscan = off;\nSET scann.nprobe = 100000;\nSET scann.reorder = 1000;";
check_plan('every list', $coord_all_lists);
my $answers = knn_answers('items', $coord_all_lists);
is(join(',', inexact_queries($answers, -1)), '',
	"every list probed: the top 10 of all $nq queries equal the exact top 10 over all $rows rows");
my $ids = join(',', map { $_->[0] } map { @$_ } values %$answers);
is( $coord->safe_psql('postgres',
		"SELECT count(*) FROM (SELECT DISTINCT id FROM unnest('{$ids}'::bigint[]) id) i JOIN all_rows USING (id)"),
	$coord->safe_psql('postgres',
		"SELECT count(DISTINCT id) FROM unnest('{$ids}'::bigint[]) id"),
	'every id returned is a row of the table');
my $wrong = $coord->safe_psql('postgres', 'CREATE TABLE answers (qid int, id bigint, d float8);'
	  . 'INSERT INTO answers VALUES '
	  . join(',', map { my $q = $_; map { "($q, $_->[0], $_->[1])" } @{ $answers->{$q} } } keys %$answers)
	  . ';SELECT count(*) FROM answers r JOIN queries q ON q.id = r.qid JOIN all_rows a ON a.id = r.id '
	  . 'WHERE abs((a.embedding <-> q.embedding) - r.d) > 1e-9 * r.d');
is($wrong, 0, 'the distance returned with every id is that row\'s distance to the query');

# Recall at the default settings (nprobe 10, reorder 100 everywhere).
$coord->safe_psql('postgres', "ALTER SERVER shard$_ OPTIONS (DROP options)") for 1, 2;
my $recall = recall_of(knn_answers('items'), -1);
cmp_ok($recall, '>=', 0.95, "default settings: recall\@10 $recall over the sharded table");

# Settings in a server's options reach that shard, from the next transaction of a session
# that already holds a connection to it: shard 1 probes one list, shard 2 all of them,
# then the other way round, in one coordinator session.
sub per_shard_recall {
	my ($setup) = @_;
	my $script = $setup;
	for my $i (1, 2) {
		$script .= "\nSELECT scann_knn_query('items_shard$i', 'embedding', 10) AS knn \\gset\n"
		  . "PREPARE knn$i(real[]) AS :knn;\n";
		$script .= "\\echo Q$_ $i\nSELECT embedding AS v FROM queries WHERE id = $_ \\gset\n"
		  . "EXECUTE knn$i(:'v');\n"
		  for 0 .. $nq - 1;
	}
	return $script;
}
my $one_list = '-c scann.nprobe=1 -c scann.reorder=10';
my $out = $coord->safe_psql('postgres', join("\n",
	"ALTER SERVER shard1 OPTIONS (ADD options '$one_list');",
	"ALTER SERVER shard2 OPTIONS (ADD options '$all_lists');",
	per_shard_recall(''),
	"\\echo SWAP",
	"ALTER SERVER shard1 OPTIONS (SET options '$all_lists');",
	"ALTER SERVER shard2 OPTIONS (SET options '$one_list');",
	per_shard_recall('DEALLOCATE ALL;')));
my ($before, $after) = split /^SWAP$/m, $out;
for my $phase ([ 'before', $before, 1 ], [ 'after', $after, 2 ]) {
	my ($name, $text, $narrow) = @$phase;
	my %by_shard;
	my ($qid, $shard);
	for my $line (split /\n/, $text) {
		next if $line eq '';
		if ($line =~ /^Q(\d+) (\d)$/) { ($qid, $shard) = ($1, $2); next; }
		push @{ $by_shard{$shard}{$qid} }, [ split /\|/, $line ];
	}
	my $wide = 3 - $narrow;
	my $narrow_recall = recall_of($by_shard{$narrow}, $narrow);
	note "$name: recall\@10 of shard 1 " . recall_of($by_shard{1}, 1) . ', of shard 2 ' . recall_of($by_shard{2}, 2);
	cmp_ok($narrow_recall, '<', 0.9,
		"$name: shard $narrow, told to probe one list, answers with recall\@10 $narrow_recall");
	is(join(',', inexact_queries($by_shard{$wide}, $wide)), '',
		"$name: shard $wide, told to probe every list, answers every query exactly");
}

# The coordinator's SET reaches its own partitions only: with the shards probing every
# list, a session probing one list loses recall on the local partition alone.
my $local_only = knn_answers('items_local', "SET scann.nprobe = 1;\nSET scann.reorder = 10;");
my $shard_rows = knn_answers('items_shard1', "SET scann.nprobe = 1;\nSET scann.reorder = 10;");
$coord->safe_psql('postgres', "ALTER SERVER shard$_ OPTIONS (DROP options)") for 1, 2;
cmp_ok(recall_of($local_only, 0), '<', 0.9, 'SET scann.nprobe = 1 on the coordinator narrows its local partition');
is(join(',', inexact_queries($shard_rows, 1)), '',
	'... and leaves the shards at their servers\' settings (every list)');

# Rows inserted through the coordinator go to the partition their id hashes to and are
# found there by that server's index, and by the sharded query.
my %new_id;
for my $remainder (0, 1, 2) {
	$new_id{$remainder} = $coord->safe_psql('postgres',
		"SELECT min(i) FROM generate_series(1000000, 1000100) i "
		  . "WHERE satisfies_hash_partition('items'::regclass, 3, $remainder, i::bigint)");
}
my %node_of = (0 => $coord, 1 => $shards[0], 2 => $shards[1]);
my %table_of = (0 => 'items_local', 1 => 'items', 2 => 'items');
$coord->safe_psql('postgres', 'INSERT INTO items SELECT ' . $new_id{$_}
	  . ", array(SELECT x + 0.25 FROM unnest(embedding) WITH ORDINALITY u(x, i) ORDER BY i) FROM queries WHERE id = $_")
  for 0, 1, 2;
for my $remainder (0, 1, 2) {
	my $id = $new_id{$remainder};
	my $node = $node_of{$remainder};
	my $where = $remainder == 0 ? 'the coordinator' : "shard $remainder";
	is( $coord->safe_psql('postgres', "SELECT tableoid::regclass FROM items WHERE id = $id"),
		$remainder == 0 ? 'items_local' : "items_shard$remainder",
		"row $id is routed to $where");
	my $vector = $coord->safe_psql('postgres', "SELECT embedding FROM items WHERE id = $id");
	my $search = "SELECT id FROM $table_of{$remainder} ORDER BY embedding <-> '$vector' LIMIT 1";
	like($node->safe_psql('postgres', "SET enable_seqscan = off; EXPLAIN (COSTS OFF) $search"),
		qr/Index Scan using/, "$where searches its rows through its index");
	is($node->safe_psql('postgres', "SET enable_seqscan = off; $search"),
		$id, "$where\'s index finds row $id");
	is( $coord->safe_psql('postgres', qq{
SELECT scann_knn_query('items', 'embedding', 1) AS knn \\gset
PREPARE knn(real[]) AS :knn;
EXECUTE knn('$vector');}),
		"$id|0", "the sharded query finds row $id at distance 0");
}

# A shard that is down fails the query with an error naming its server; no partial
# answer.  A session whose connection to it broke recovers once it is back.
my $session = $coord->background_psql('postgres', on_error_stop => 0);
my $prepare = "SELECT scann_knn_query('items', 'embedding', 10) AS knn \\gset\n"
  . "PREPARE knn(real[]) AS :knn;\nSELECT embedding AS v FROM queries WHERE id = 3 \\gset";
$session->query_safe($prepare);
my $healthy = $session->query_safe("EXECUTE knn(:'v')");
is(scalar(split /\n/, $healthy), 10, 'a session answers with 10 rows while both shards are up');
$shards[1]->stop;
my ($broken, $failed) = $session->query("EXECUTE knn(:'v')");
is($broken, '', 'the shard went down under an open session: no rows come back');
like($session->{stderr}, qr/ERROR: .*(server closed the connection|could not connect|terminat)/i,
	'... but an error');
$session->{stderr} = '';
my ($ret, $stdout, $stderr) = $coord->psql('postgres', "$prepare\nEXECUTE knn(:'v')");
isnt($ret, 0, 'a new session fails the query while shard 2 is down');
is($stdout, '', '... returns no rows');
like($stderr, qr/could not connect to server "shard2"/, '... and names the server it could not reach');
($ret, $stdout, $stderr) = $coord->psql('postgres', 'SELECT count(*) FROM items');
like($stderr, qr/could not connect to server "shard2"/, 'so does any query of the partitioned table');
$shards[1]->start;
is($session->query_safe("EXECUTE knn(:'v')"), $healthy,
	'once shard 2 is back, the same session gets the same answer again');
$session->quit;

# The builder's errors and warnings.
($ret, $stdout, $stderr) = $coord->psql('postgres', q{
SELECT scann_knn_query('items', 'nope', 10);
SELECT scann_knn_query('items', 'embedding', 0);
SELECT scann_knn_query('items', 'embedding', 10, '<<>>');
SELECT scann_knn_query('items', 'embedding', 10, id_column => 'nope');
SELECT scann_check_foreign_partition('items_local');}, on_error_stop => 0);
like($stderr, qr/column "nope" of "public.items" does not exist.*k must be at least 1, got 0.*operator <<>> does not exist for real\[\].*column "nope" of "public.items" does not exist.*"public.items_local" is not a foreign table/s,
	'scann_knn_query rejects unknown columns and operators and k < 1; the check, a local table');
($ret, $stdout, $stderr) = $coord->psql('postgres', qq{
CREATE SERVER bare FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '@{[ $shards[0]->host ]}', port '@{[ $shards[0]->port ]}', dbname 'postgres');
CREATE FOREIGN TABLE bare_items (id bigint, embedding real[]) SERVER bare OPTIONS (table_name 'items');
SELECT scann_knn_query('bare_items', 'embedding', 10) IS NOT NULL;});
like($stderr, qr/cannot ship the distance operator to server bare.*does not use remote estimates.*less than 0.2 per row.*is not async_capable/s,
	'scann_knn_query warns about a foreign table whose options keep its work on the coordinator');

$coord->stop;
$_->stop for @shards;
done_testing();

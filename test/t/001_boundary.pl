# The C++/PostgreSQL boundary seen from outside: errors raised inside guarded C++ code
# leave the same backend process working (no crash, no postmaster restart), and the
# operators work over a real data set (MiniLM embeddings) exactly as a client computes.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib 'test';
use ScannTest;

my $node = PostgreSQL::Test::Cluster->new('boundary');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_scann');
my $start_time = $node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()');

# One session: pid, every kind of guarded error, pid again, then a query.
my ($stdout, $stderr);
$node->psql(
	'postgres', q{
SELECT 'pid=' || pg_backend_pid();
SELECT scann_guard_selftest('cpp_exception');
SELECT scann_guard_selftest('bad_alloc');
SELECT scann_guard_selftest('pg_error');
SELECT scann_guard_selftest('sql_error');
SELECT '{1,2}'::real[] <-> '{1}'::real[];
SELECT 'pid=' || pg_backend_pid();
SELECT 'after=' || ('{3,0}'::real[] <-> '{0,4}'::real[]);
},
	stdout => \$stdout,
	stderr => \$stderr,
	on_error_stop => 0);
my @pids = $stdout =~ /pid=(\d+)/g;
is(scalar(@pids), 2, 'the session answered before and after the errors');
is($pids[0], $pids[1], 'the same backend process survived every guarded error');
like($stdout, qr/after=5$/m, 'the next query in the same session succeeds');
my @errors = $stderr =~ /ERROR:/g;
is(scalar(@errors), 5, 'each guarded failure came back as one SQL error');
like($stderr, qr/pg_scann internal error: test exception from C\+\+/, 'C++ exception message');
like($stderr, qr/test PostgreSQL error raised inside C\+\+/, 'PostgreSQL error message kept');
is($node->safe_psql('postgres', 'SELECT pg_postmaster_start_time()'),
	$start_time, 'the postmaster did not restart');
unlike(slurp_file($node->logfile), qr/terminated by signal|server process .* was terminated/,
	'no backend crashed');

# Real data: MiniLM embeddings, distances against a client-side computation.
my $set = ScannTest::dataset('minilm');
ScannTest::load_table($node, 'docs', $set, $set->{rows});
is($node->safe_psql('postgres', 'SELECT count(*) FROM docs'), $set->{rows}, 'MiniLM rows loaded');
my $q = ScannTest::query_literal($set, 0);
for my $case (['<->', 'l2'], ['<#>', 'ip'], ['<=>', 'cosine']) {
	my ($op, $metric) = @$case;
	my $sql = $node->safe_psql('postgres',
		"SELECT string_agg(id::text, ',' ORDER BY d, id) FROM (SELECT id, embedding $op '$q' AS d FROM docs ORDER BY d, id LIMIT 10) s");
	my $expected = join(',', ScannTest::exact_top_k($set, $metric, ScannTest::query_vector($set, 0), 10));
	is($sql, $expected, "exact top-10 by $op matches the client's computation");
}

$node->stop;
done_testing();

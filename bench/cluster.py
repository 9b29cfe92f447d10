"""The server a benchmark talks to: a scratch cluster it starts, or an existing one (--dsn).

A scratch cluster lives in its own directory under /var/tmp: initdb (trust auth, user
`postgres`), Unix socket in that directory only (listen_addresses = '', so its port never
collides with another server), settings sized for the data set, `pg_ctl -w` start and a
fast stop. As root, every server command runs as the OS user `postgres`.
"""
import os
import shutil
import subprocess
import tempfile

import psycopg2

from progress import Step

SERVER_USER = "postgres"
PORT = 5432


def pg_bindir():
    """$PG_BIN, else the bindir of the first pg_config on PATH (so a private PostgreSQL copy
    put first on PATH, with its own installed extensions, is the one used), else PostgreSQL
    15's Debian location."""
    if os.environ.get("PG_BIN"):
        return os.environ["PG_BIN"]
    if shutil.which("pg_config"):
        return subprocess.run(["pg_config", "--bindir"], check=True, capture_output=True,
                              text=True).stdout.strip()
    return "/usr/lib/postgresql/15/bin"


def _as_server_user(cmd):
    """The command, run as `postgres` when we are root (the server refuses root)."""
    return ["runuser", "-u", SERVER_USER, "--"] + cmd if os.geteuid() == 0 else cmd


def install_extension(repo):
    """`make -s install` of the repository (needs write access to PostgreSQL's directories)."""
    with Step("make -s install"):
        subprocess.run(["make", "-s", "-C", repo, "-j2", "install",
                        f"PG_CONFIG={os.path.join(pg_bindir(), 'pg_config')}"], check=True)


def scratch_settings(data_bytes):
    """postgresql.conf lines for a benchmark of a table of about `data_bytes`."""
    # room for the table, a pgvector-typed copy of it and their indexes (an HNSW graph
    # holds every vector again): a benchmark must not measure buffer-pool misses
    shared_mb = min(8192, max(128, int(6 * data_bytes / 2**20) + 128))
    return {
        "shared_buffers": f"{shared_mb}MB",
        "maintenance_work_mem": "1GB",
        "max_wal_size": "8GB",          # no checkpoint storms while loading and building
        "checkpoint_timeout": "30min",
        "jit": "off",                   # compiling every short query would dominate it
        "listen_addresses": "''",
        "port": str(PORT),
        "log_min_messages": "warning",
    }


class Server:
    """An already running server (--dsn), or the base of a scratch cluster."""

    def __init__(self, dsn):
        self.dsn = dsn

    def connect(self):
        conn = psycopg2.connect(self.dsn)
        conn.autocommit = True
        return conn

    def tool(self, name):
        """Path of a PostgreSQL client program (pgbench) of the installation in use."""
        return os.path.join(pg_bindir(), name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class ScratchCluster(Server):
    """initdb + start on enter, stop (and remove, unless kept) on exit."""

    def __init__(self, settings, directory=None, keep=False):
        self.keep = keep or directory is not None
        self.directory = directory or tempfile.mkdtemp(prefix="pg_scann-bench-", dir="/var/tmp")
        self.settings = settings
        self.bindir = pg_bindir()
        self.pgdata = os.path.join(self.directory, "data")
        super().__init__(f"host={self.directory} port={PORT} user={SERVER_USER} "
                         f"dbname=postgres")

    def _run(self, tool, *args):
        subprocess.run(_as_server_user([os.path.join(self.bindir, tool), *args]), check=True,
                       stdout=subprocess.DEVNULL)

    def _initdb(self):
        os.makedirs(self.directory, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.directory, SERVER_USER, SERVER_USER)
        with Step(f"initdb {self.pgdata}"):
            self._run("initdb", "-D", self.pgdata, "-A", "trust", "-U", SERVER_USER,
                      "--no-sync", "-E", "UTF8", "--locale=C")

    def _configure(self):
        lines = [f"{k} = {v}" for k, v in self.settings.items()]
        lines.append(f"unix_socket_directories = '{self.directory}'")
        conf = os.path.join(self.pgdata, "postgresql.auto.conf")
        subprocess.run(_as_server_user(["tee", conf]), input="\n".join(lines) + "\n",
                       text=True, check=True, stdout=subprocess.DEVNULL)

    def __enter__(self):
        if not os.path.exists(os.path.join(self.pgdata, "PG_VERSION")):
            self._initdb()
        self._configure()
        log = os.path.join(self.directory, "server.log")
        with Step(f"starting scratch cluster in {self.directory}"):
            try:
                self._run("pg_ctl", "-D", self.pgdata, "-l", log, "-w", "-t", "120", "start")
            except subprocess.CalledProcessError:
                with open(log) as f:
                    print(f.read()[-4000:])
                raise
        return self

    def __exit__(self, *exc):
        self._run("pg_ctl", "-D", self.pgdata, "-m", "fast", "-w", "stop")
        if not self.keep:
            shutil.rmtree(self.directory, ignore_errors=True)
        return False

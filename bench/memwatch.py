"""Peak private memory of a backend (and its parallel workers) while a statement runs.

A sampling thread reads RssAnon from /proc/<pid>/status of the building backend and of
every parallel worker it leads (pg_stat_activity.leader_pid, refreshed over a second
connection) every 10 ms, and keeps the peak of their sum. The figure reported is that peak
minus the leader's RssAnon just before the statement: the private memory the statement
added. RssAnon is used rather than VmHWM/VmRSS because those count the shared_buffers
pages the backend touches (RssShmem), which would charge the table scan's buffer pool
to the index build. Shared memory a parallel build allocates (DSM) is not counted.
Works only when the server runs on this host (its /proc entries are readable here);
otherwise the figure is None. Without a monitor connection it watches one process (the
in-process references watch this Python process itself).
"""
import threading
import time

SAMPLE_S = 0.010
WORKER_REFRESH_S = 0.100


def rss_anon_kb(pid):
    """RssAnon of a process in kB, or None if it is gone or not readable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def is_local_postgres(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"postgres" in f.read()
    except OSError:
        return False


class PeakMemory:
    """`with PeakMemory(pid, monitor_conn) as m: ...`, then m.peak_mb (None if not
    measurable) and m.max_workers; monitor_conn None: no parallel workers to look for."""

    def __init__(self, pid, monitor_conn):
        self.pid, self.monitor = pid, monitor_conn
        self.enabled = monitor_conn is None or is_local_postgres(pid)
        self.peak_kb = 0
        self.workers = []
        self.max_workers = 0  # parallel workers seen at once
        self._stop = threading.Event()

    def _refresh_workers(self):
        if self.monitor is None:
            return
        with self.monitor.cursor() as cur:
            cur.execute("SELECT pid FROM pg_stat_activity WHERE leader_pid = %s AND pid <> %s",
                        (self.pid, self.pid))
            self.workers = [r[0] for r in cur.fetchall()]
        self.max_workers = max(self.max_workers, len(self.workers))

    def _sample(self):
        last_refresh = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now - last_refresh >= WORKER_REFRESH_S:
                self._refresh_workers()
                last_refresh = now
            total = sum(rss_anon_kb(p) or 0 for p in [self.pid, *self.workers])
            self.peak_kb = max(self.peak_kb, total)
            self._stop.wait(SAMPLE_S)

    def __enter__(self):
        if self.enabled:
            self.baseline_kb = rss_anon_kb(self.pid)
            self.peak_kb = self.baseline_kb
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._stop.set()
            self.thread.join()
        return False

    @property
    def workers_seen(self):
        return self.max_workers if self.enabled else None

    @property
    def peak_mb(self):
        if not self.enabled:
            return None
        return (self.peak_kb - self.baseline_kb) / 1024.0

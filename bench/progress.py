"""Progress lines on stderr for long steps (download, parse, write, load, ground truth, sweeps)."""
import sys
import time


class Progress:
    """`label: done/total (pct), rate, ETA` at most every `every` seconds, then a final line."""

    def __init__(self, label, total, unit="rows", every=5.0):
        self.label, self.total, self.unit, self.every = label, total, unit, every
        self.start = self.last = time.monotonic()
        self.done = 0

    def advance(self, n=1):
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every and self.done != self.total:
            self.last = now
            self._print(now)

    def finish(self):
        self._print(time.monotonic(), final=True)

    def _print(self, now, final=False):
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        if final:
            tail = f"done in {elapsed:.1f}s"
        else:
            tail = f"ETA {(self.total - self.done) / max(rate, 1e-9):.0f}s"
        note(f"{self.label}: {self.done:,}/{self.total:,} {self.unit} "
             f"({100.0 * self.done / max(self.total, 1):.0f}%), {rate:,.0f} {self.unit}/s, {tail}")


def note(msg):
    """A one-off status line on stderr."""
    print(msg, file=sys.stderr, flush=True)


class Step:
    """Context manager that reports how long a step took: `with Step("parsing JSON"): ...`."""

    def __init__(self, label):
        self.label = label

    def __enter__(self):
        note(f"{self.label} ...")
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc):
        self.seconds = time.monotonic() - self.start
        if exc[0] is None:
            note(f"{self.label}: done in {self.seconds:.1f}s")
        return False

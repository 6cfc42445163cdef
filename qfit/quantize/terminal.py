"""What a quantize run shows in the terminal, and where the libraries' own output goes instead.

GPTQModel, transformers and the JIT compiler print thousands of lines (a banner, per-module tables, progress bars,
compiler output), on file descriptors 1 and 2 and from C++ as well as Python. During the heavy work `capture_output`
points both descriptors (and sys.stdout/sys.stderr) at a log file inside the temp folder that becomes OUT, so the log
is published with the checkpoint (OUT/qfit-quantize.log) or removed with it. qfit's own short view keeps writing to
`terminal_stream()`, a duplicate of the terminal's stderr taken before the redirection: a rich per-layer bar on a
TTY, otherwise `PlainProgress`'s plain lines (one per layer at most every 30 s).
"""

from __future__ import annotations

import time

from qfit.stdio import capture_output, log_tail, terminal_stream  # noqa: F401  (shared with qfit profile)

LOG_NAME = "qfit-quantize.log"
PLAIN_INTERVAL_S = 30.0   # non-TTY: at most one progress line per this many seconds (plus the first and the last)


def duration(seconds: float) -> str:
    """'45 s', '3 min 20 s', '1 h 05 min'."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class PlainProgress:
    """Per-layer progress as plain lines for a non-TTY stderr: the first layer, then at most one line every
    `interval` seconds, and the last layer; each with elapsed time and a remaining-time guess from the pace so far."""

    def __init__(self, write, total: int, interval: float = PLAIN_INTERVAL_S, clock=time.monotonic):
        self.write, self.total, self.interval, self.clock = write, total, interval, clock
        self.start = clock()
        self.done = 0
        self.last: float | None = None

    def __call__(self, _layer: int) -> None:
        self.done += 1
        now = self.clock()
        if self.last is not None and now - self.last < self.interval and self.done < self.total:
            return
        self.last = now
        elapsed = now - self.start
        left = elapsed / self.done * (self.total - self.done)
        tail = f", about {duration(left)} left" if self.done < self.total else ""
        self.write(f"quantize: layer {self.done}/{self.total} done, {duration(elapsed)} elapsed{tail}")

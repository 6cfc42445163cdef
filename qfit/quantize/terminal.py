"""What a quantize run shows in the terminal, and where the libraries' own output goes instead.

GPTQModel, transformers and the JIT compiler print thousands of lines (a banner, per-module tables, progress bars,
compiler output), on file descriptors 1 and 2 and from C++ as well as Python. During the heavy work `capture_output`
points both descriptors (and sys.stdout/sys.stderr) at a log file inside the temp folder that becomes OUT, so the log
is published with the checkpoint (OUT/qfit-quantize.log) or removed with it. qfit's own short view keeps writing to
`terminal_stream()`, a duplicate of the terminal's stderr taken before the redirection: a rich per-layer bar on a
TTY, otherwise `PlainProgress`'s plain lines (one per layer at most every 30 s).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

LOG_NAME = "qfit-quantize.log"
PLAIN_INTERVAL_S = 30.0   # non-TTY: at most one progress line per this many seconds (plus the first and the last)


def terminal_stream():
    """A text stream to the terminal's stderr that survives `capture_output` (a dup of fd 2), or sys.stderr itself
    when it has no descriptor (a test runner's capture object: then nothing at fd level is redirected away from it)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return sys.stderr
    sys.stderr.flush()
    return os.fdopen(os.dup(fd), "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                     errors="replace")


@contextlib.contextmanager
def capture_output(log_path: Path):
    """Send everything written to fd 1/2 and sys.stdout/sys.stderr into log_path while the block runs."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    log = open(log_path, "a", buffering=1, encoding="utf-8", errors="replace")
    saved = []
    try:
        for fd in (1, 2):
            with contextlib.suppress(OSError):
                saved.append((fd, os.dup(fd)))
                os.dup2(log.fileno(), fd)
        old = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = log
        try:
            yield log
        finally:
            sys.stdout, sys.stderr = old
            log.flush()
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
    finally:
        log.close()


def log_tail(log_path: Path, lines: int = 20) -> str:
    """The last lines of the log (for an unexpected failure, whose context would otherwise vanish with the temp)."""
    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


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

"""Progress of `qfit profile`'s stages on stderr, never stdout: rich bars on a terminal; plain lines when stderr is
not one (a log file, CI, a pipe), so a long run is never silent: a line when a stage starts, one at most every
`every_s` seconds while it runs (done/total, elapsed, ETA from the mean step so far) and one when it ends. A step
that outlasts `every_s` (GPTQModel's CPU kernel dequantizes every weight at every decoded token; a loaded machine)
still gets a line every `every_s` from a heartbeat thread, saying which step is running.

A progress factory is `progress(description, total)` -> context manager yielding `tick()`, one call per step.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable


def duration(seconds: float) -> str:
    """Pure: 75 -> '1m15s', 3725 -> '1h02m05s', 4.2 -> '4.2s'."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    s = round(seconds)
    h, m = divmod(s // 60, 60)
    return (f"{h}h{m:02d}m" if h else f"{m}m") + f"{s % 60:02d}s"


def progress_line(description: str, done: int, total: int, elapsed_s: float) -> str:
    """Pure: one status line; the ETA assumes the remaining steps take the mean time of those done."""
    pct = f" ({100 * done / total:.0f} %)" if total else ""
    eta = f", ETA {duration(elapsed_s / done * (total - done))}" if 0 < done < total else ""
    return f"qfit profile: {description}: {done}/{total}{pct}, elapsed {duration(elapsed_s)}{eta}"


def line_progress(write: Callable[[str], None], clock: Callable[[], float] = time.monotonic, every_s: float = 30.0):
    """A progress factory writing plain lines through `write` (clock injected so the pacing is testable)."""
    @contextlib.contextmanager
    def progress(description: str, total: int):
        start = clock()
        state = {"done": 0, "last": start, "seen": 0}   # seen: steps done at the last line written
        lock, stop = threading.Lock(), threading.Event()
        write(f"qfit profile: {description}: started ({total} step{'s' if total != 1 else ''})")

        def line(now: float, heartbeat: bool) -> None:
            stuck = heartbeat and state["done"] == state["seen"]   # no step ended since the last line
            state["last"], state["seen"] = now, state["done"]
            text = progress_line(description, state["done"], total, now - start)
            write(text + (f"; step {state['done'] + 1} still running" if stuck else ""))

        def tick() -> None:
            with lock:
                state["done"] += 1
                now = clock()
                if now - state["last"] >= every_s and state["done"] < total:
                    line(now, False)

        def heartbeat() -> None:
            while not stop.wait(every_s):
                with lock:
                    now = clock()
                    if now - state["last"] >= every_s:
                        line(now, True)

        beat = threading.Thread(target=heartbeat, name="qfit-progress", daemon=True)
        beat.start()
        try:
            yield tick
        finally:
            stop.set()
            beat.join()
        write(f"qfit profile: {description}: done {state['done']}/{total} in {duration(clock() - start)}")
    return progress


def rich_progress(stream=None):
    """A progress factory drawing rich bars on `stream` (default: stderr)."""
    @contextlib.contextmanager
    def progress(description: str, total: int):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=Console(file=stream, stderr=stream is None), transient=False) as bar:
            task = bar.add_task(description, total=total)
            yield lambda: bar.advance(task)
    return progress


def stderr_progress(stream=None):
    """Bars when the stream (default: stderr, looked up at each write since tests swap it) is a terminal, lines
    otherwise. qfit profile passes `qfit.stdio.terminal_stream()`, which outlives the capture of library output."""
    if (stream or sys.stderr).isatty():
        return rich_progress(stream)

    def write(text: str) -> None:
        print(text, file=stream or sys.stderr, flush=True)
    return line_progress(write)

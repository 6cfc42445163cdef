"""stdout carries a command's result and nothing else; the libraries' own chatter goes to a log file.

GPTQModel prints its banner and INFO lines, transformers and torch print warnings, tables and progress bars, and some
of them write to file descriptors 1 and 2 directly (C extensions, loggers holding the real streams) rather than
through `sys.stdout`. `stdout_to_stderr()` points fd 1 at stderr, so `--json` output stays parseable whatever a
library prints; `capture_output(log)` sends both descriptors into a log file while the heavy work runs (qfit quantize
publishes it as OUT/qfit-quantize.log, qfit profile as OUT/qfit-profile.log), and `terminal_stream()` is a copy of the
terminal's stderr taken before, on which qfit's own progress keeps writing.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path


@contextlib.contextmanager
def stdout_to_stderr():
    """Inside the block, fd 1 is a copy of fd 2 and `sys.stdout` is `sys.stderr`; both are restored on exit."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no real fd 1 (a closed stdout): only the Python-level stream can be redirected
        saved = None
    if saved is not None:
        os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


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

"""stdout carries a command's result and nothing else: library chatter is routed to stderr while heavy libraries run.

GPTQModel prints its banner and INFO lines, transformers and torch print warnings and tables, and some of them write
to file descriptor 1 directly (C extensions, loggers holding the real stdout) rather than through `sys.stdout`.
`stdout_to_stderr()` points both at stderr for the duration of the block, so `--json` output stays parseable
whatever a library prints. Used by every command that runs them: `qfit quantize`, `qfit profile`.
"""

from __future__ import annotations

import contextlib
import os
import sys


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

"""The `qfit` command line: a thin click group whose subcommands are imported only when invoked.

Lazy loading keeps `qfit plan` free of torch/transformers imports and fast to start: each command lives in
qfit/commands/<name>.py and imports its heavy dependencies inside the function body.
"""

from __future__ import annotations

import importlib
import importlib.util  # find_spec: not guaranteed to be loaded by `import importlib` alone
import os
import signal
import sys

import click

from qfit import __version__
from qfit.errors import QfitError

# name -> (module, attribute, one-line help shown in `qfit --help` without importing the module)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "plan": ("qfit.commands.plan", "plan", "Will it fit, and how fast: memory, fit verdict and speed per accelerator."),
    "gpus": ("qfit.commands.catalog", "gpus", "List the accelerator catalog."),
    "models": ("qfit.commands.catalog", "models", "List the built-in model catalog."),
    "size": ("qfit.commands.size", "size", "Procurement: the cheapest hardware that serves a workload."),
    "quantize": ("qfit.commands.quantize", "quantize", "Make it fit: write a standard GPTQ checkpoint."),
    "inspect": ("qfit.commands.inspect", "inspect", "Check a GPTQ checkpoint's layout and kernel compatibility (headers only)."),
    "profile": ("qfit.commands.profile", "profile", "What did it cost: accuracy and speed of a checkpoint vs its baseline and the plan."),
    "calibrate": ("qfit.commands.calibrate", "calibrate", "Fold profile results into the engine efficiency profiles."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name, (mod, _, _) in COMMANDS.items() if importlib.util.find_spec(mod) is not None)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr, _ = COMMANDS[name]
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                return None
            raise

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text comes from COMMANDS so `qfit --help` does not import every command module.
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except QfitError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except OSError as exc:
            # the file system refused a path the user gave (name too long, permission, not a directory ...): that is
            # bad input, reported in one line like the rest, whichever command first touched the path
            name = str(exc.filename or "")
            name = name if len(name) <= 80 else name[:77] + "..."
            click.echo(f"error: cannot use {name}: {exc.strerror or exc}", err=True)
            ctx.exit(QfitError.exit_code)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="qfit")
def cli() -> None:
    """qfit: will it fit, how fast will it run, make it fit, and what did it cost."""


def main() -> None:
    # A shell starts background jobs with SIGINT ignored and children inherit it: qfit must still stop (and clean up)
    # on Ctrl-C or `kill -INT`, so the default handler is restored.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = cli.main(prog_name="qfit", standalone_mode=False)
    except (KeyboardInterrupt, click.exceptions.Abort):
        click.echo("interrupted", err=True)
        sys.stdout.flush()
        sys.stderr.flush()
        # os._exit: library threads still running (GPTQModel's C++ workers) must not be torn down by interpreter
        # shutdown, which aborts with "terminate called without an active exception"; the cleanup has already run.
        os._exit(130)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)

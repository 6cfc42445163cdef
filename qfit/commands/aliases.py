"""Old option spellings kept for one release: one vocabulary across commands (`--input-len`, `--output-len`, `-b` is
`--batch`), with the names earlier releases used still accepted, hidden from --help, and a one-line note on stderr."""

from __future__ import annotations

import click


def renamed(mapping: dict[str, str]) -> type[click.Command]:
    """A click.Command class that rewrites `old` flags (and `old=value`) to their new names before parsing."""

    class Renamed(click.Command):
        def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
            out = []
            for arg in args:
                flag, eq, value = arg.partition("=")
                if flag in mapping:
                    click.echo(f"qfit {self.name}: {flag} is now {mapping[flag]} (the old name goes in the next "
                               "release)", err=True)
                    arg = mapping[flag] + eq + value
                out.append(arg)
            return super().parse_args(ctx, out)

    return Renamed

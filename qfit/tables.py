"""Terminal tables that fit: one width rule for every command.

A table is as wide as the terminal on a TTY and 100 columns otherwise (logs, pipes, CI, a README). When its columns do
not fit, headers are abbreviated first, then columns are left out in a stated order — never the identifying ones
(model, precision, accelerator), whose cells are never squeezed, so "gptq-int4" cannot shrink into "gptq-i…" and look
like int8. A line under the table says what was left out; `--wide` shows every column.
"""

from __future__ import annotations

from dataclasses import dataclass

WIDTH = 100          # columns when stdout is not a terminal
_GAP = 2             # rich's cell padding between columns (box=None, pad_edge=False)


@dataclass(frozen=True)
class Col:
    header: str
    justify: str = "right"
    drop: int = 0             # 0: identifying, always shown; otherwise dropped highest first when space runs out
    short: str | None = None  # abbreviated header, tried before any column is dropped


def console(*, wide: bool = False, stderr: bool = False):
    """A rich Console at the width rule above (`wide`: no limit, the tables decide)."""
    from rich.console import Console

    c = Console(stderr=stderr)
    if wide:
        return Console(stderr=stderr, width=max(c.width, 400) if not c.is_terminal else c.width, soft_wrap=True)
    return c if c.is_terminal else Console(stderr=stderr, width=WIDTH)


def _cell_len(text: str) -> int:
    from rich.text import Text

    return max((Text.from_markup(line).cell_len for line in text.split("\n")), default=0)


def _widths(cols: list[Col], rows: list[list[str]], headers: list[str]) -> list[int]:
    return [max([_cell_len(h)] + [_cell_len(r[i]) for r in rows]) for i, h in enumerate(headers)]


def layout(cols: list[Col], rows: list[list[str]], width: int | None) -> tuple[list[int], list[str], list[str]]:
    """(indices of the columns shown, their headers, headers left out) for a table `width` columns wide (None: all)."""
    headers = [c.header for c in cols]
    keep = list(range(len(cols)))

    def total() -> int:
        w = _widths(cols, rows, headers)
        return sum(w[i] for i in keep) + _GAP * (len(keep) - 1)

    if width is None or total() <= width:
        return keep, [headers[i] for i in keep], []
    headers = [c.short or c.header for c in cols]
    dropped = []
    for i in sorted((i for i, c in enumerate(cols) if c.drop), key=lambda i: (-cols[i].drop, -i)):
        if total() <= width:
            break
        keep.remove(i)
        dropped.append(cols[i].header)
    return keep, [headers[i] for i in keep], dropped


def table(cols: list[Col], rows: list[list[str]], width: int | None):
    """A borderless rich Table of `rows` fitted to `width`, the note to print under it (None when complete) and the
    width it needs (more than `width` only when the identifying columns alone are wider: they are never cut)."""
    from rich.table import Table

    keep, headers, dropped = layout(cols, rows, width)
    shown = [[r[i] for i in keep] for r in rows]
    widths = _widths([cols[i] for i in keep], shown, headers)
    t = Table(header_style="bold", box=None, pad_edge=False)
    for i, h, w in zip(keep, headers, widths):
        c = cols[i]   # identifying columns keep their full width: a name is never cut
        t.add_column(h, justify=c.justify, no_wrap=True, min_width=None if c.drop else w)
    for r in shown:
        t.add_row(*r)
    note = (f"[dim]left out to fit {width} columns: {', '.join(dropped)} (--wide shows them)[/]"
            if dropped else None)
    return t, note, sum(widths) + _GAP * (len(widths) - 1)


def print_table(con, cols: list[Col], rows: list[list[str]], *, wide: bool = False, title: str | None = None) -> None:
    """The title as its own line (a rich Table title would widen the table to its length), the table, the note."""
    t, note, need = table(cols, rows, None if wide else con.width)
    if title:
        con.print(f"[bold]{title}[/]")
    con.print(t, width=max(con.width, need), crop=False)
    if note:
        con.print(note)

"""An engine's argument list built concept by concept from its flag table: a value equal to the engine's default is
left out (and remembered, so the launch plan can say so) unless the plan's figures depend on it being exactly that."""

from __future__ import annotations

from qfit.launch.tables import FlagTable


def _same(value, default) -> bool:
    if isinstance(value, bool) or isinstance(default, bool):
        return bool(value) == bool(default) and default is not None
    if isinstance(value, (int, float)) and isinstance(default, (int, float)):
        return float(value) == float(default)
    return default is not None and str(value) == str(default)


class Args:
    def __init__(self, table: FlagTable):
        self.table = table
        self.argv: list[str] = []
        self.defaults: list[str] = []    # "--flag value" left out because the engine defaults to it

    def add(self, concept: str, value, *, always: bool = False) -> None:
        """`always`: emit even when equal to today's default (the plan's memory figures assume this value; an engine
        release with another default must not silently change them)."""
        if value is None or value is False:
            return
        flag, default = self.table.flag(concept), self.table.default(concept)
        if not always and _same(value, default):
            self.defaults.append(flag if value is True else f"{flag} {default}")
            return
        self.argv += [flag] if value is True else [flag, _text(value)]

    def extend(self, *tokens: str) -> None:
        self.argv += list(tokens)


def _text(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)

"""Names become objects here, at the edge: what the user typed (a catalog name, hub id, folder, .gguf, an accelerator
name or `cpu`, an engine name, a precision, the user's calibration overlays) is resolved into the objects the pure
planner takes (LoadedModel, Accelerator, EngineRegistry / EngineProfile, Recipe). Everything that reads files, the
network or the host machine for the planner happens in these functions and nowhere below them.
"""

from __future__ import annotations

from qfit.engines import EngineRegistry, load_engines
from qfit.errors import QfitError
from qfit.hardware import HOST_NAMES, Accelerator, get_accelerator, load_accelerators
from qfit.model.sources import LoadedModel, load_model
from qfit.precision import GROUP_SIZES, Recipe, parse_recipe


def model(ref: str | LoadedModel, *, revision: str | None = None) -> LoadedModel:
    """Model facts from a catalog name or alias, a local folder / config.json / .gguf, or a hub id (metadata only)."""
    return ref if isinstance(ref, LoadedModel) else load_model(ref, revision=revision)


def accelerator(name: str | Accelerator) -> Accelerator:
    """A catalogued device (fuzzy: "A6000", "M3 Max 96GB"), or this machine's CPU for `cpu` (its memory bandwidth is
    measured once and cached when no figure is known: see qfit/host.py)."""
    if isinstance(name, Accelerator):
        return name
    if str(name or "").strip().lower() in HOST_NAMES:
        from qfit.host import host_accelerator

        return host_accelerator(measure=True)
    return get_accelerator(name)


def accelerators(names: list[str] | None, flag: str = "--gpus-allowed") -> list[Accelerator]:
    """Several names (duplicates folded), or the whole catalog when none are given."""
    if not names:
        return sorted(load_accelerators().values(), key=lambda a: a.key)
    out: dict[str, Accelerator] = {}
    for name in names:
        try:
            acc = accelerator(name)
        except QfitError as exc:
            raise QfitError(f"{flag}: {exc}") from None
        out.setdefault(acc.key, acc)
    return list(out.values())


def engines() -> EngineRegistry:
    """Every engine profile with the user's `qfit calibrate` overlays, read now (once per request)."""
    return load_engines()


def recipe(name: str | None, loaded: LoadedModel | None = None, group_size: int | None = None,
           strict: bool = True) -> Recipe:
    """A precision name (`--precision`), or what the checkpoint ships in when none is given. A `group_size` for a
    format without groups is an error, unless `strict` is off (a matrix passes it to every row: GPTQ/AWQ take it)."""
    if name is None:
        if loaded is None:
            raise QfitError("no precision given and no model to take it from")
        native = loaded.native_recipe()
        return native if group_size is None else parse_recipe(native.name, group_size)
    if not strict and parse_recipe(name).family not in GROUP_SIZES:
        group_size = None
    return parse_recipe(name, group_size)

"""Which GPTQ widths and group sizes a serving engine loads from a per-module (`dynamic`) checkpoint: the facts of
profiles/quantize/engine_widths.yaml, applied to a mixed-precision run's candidate widths. Pure: no torch."""

from __future__ import annotations

from dataclasses import dataclass

from qfit.errors import QfitError
from qfit.precision import GPTQ_BITS

KEEP = 16


@dataclass(frozen=True)
class EngineLimits:
    engine: str
    bits: tuple[int, ...]
    group_sizes: tuple[int, ...]
    sym_only: bool
    desc_act: bool
    version: str

    def widths(self) -> tuple[int, ...]:
        """Candidate widths of an allocation: the engine's GPTQ widths and 16-bit."""
        return tuple(b for b in GPTQ_BITS if b in self.bits) + (KEEP,)

    def check(self, group_size: int, sym: bool, desc_act: bool) -> None:
        where = f"{self.engine} ({self.version}) loads GPTQ"
        if group_size not in self.group_sizes:
            raise QfitError(f"--group-size {group_size}: {where} with group sizes "
                            f"{', '.join(map(str, self.group_sizes))} only (profiles/quantize/engine_widths.yaml)")
        if self.sym_only and not sym:
            raise QfitError(f"--asym: {where} with a symmetric grid only (profiles/quantize/engine_widths.yaml)")
        if desc_act and not self.desc_act and group_size != -1:
            raise QfitError(f"--desc-act: {where} without activation order unless --group-size is -1 "
                            "(profiles/quantize/engine_widths.yaml)")


def engine_limits(engine: str | None) -> EngineLimits | None:
    """The limits of `engine` (a name or alias `qfit plan` knows); None for no engine or one without limits."""
    if engine is None:
        return None
    from qfit import resolve
    from qfit.paths import profiles_dir
    from qfit.yamlcache import load_records

    name = resolve.engines().get(engine).name
    facts = load_records(profiles_dir() / "quantize")["engine_widths"].get(name)
    if facts is None:
        return None
    return EngineLimits(name, tuple(facts["bits"]), tuple(facts["group_sizes"]), bool(facts["sym_only"]),
                        bool(facts["desc_act"]), str(facts["version"]))

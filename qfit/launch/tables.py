"""The launch flag tables (profiles/engines/launch/<engine>.yaml): planner concept -> the flag the engine defines,
with its default and choices, as scripts/read_engine_flags.py read them from the engine's package."""

from __future__ import annotations

from dataclasses import dataclass

from qfit.errors import QfitError
from qfit.paths import profiles_dir
from qfit.yamlcache import load_records

# planner engine name -> launch table stem
TABLES = {"vllm": "vllm", "sglang": "sglang", "llama.cpp": "llama.cpp"}


@dataclass(frozen=True)
class FlagTable:
    engine: str
    version: str
    package: str
    command: str
    flags: dict
    absent: dict
    kv_cache_dtypes: tuple[str, ...]
    quantization_methods: tuple[str, ...]
    multi_node: dict

    def flag(self, concept: str) -> str:
        """The spelling the engine defines for a planner concept; asking for one it lacks is a bug in the caller."""
        entry = self.flags.get(concept)
        if entry is None:
            raise QfitError(f"{self.engine} {self.version} has no flag for {concept}: "
                            f"{self.absent.get(concept, 'not in profiles/engines/launch/' + self.engine + '.yaml')}")
        return entry["flag"]

    def default(self, concept: str):
        return self.flags[concept].get("default")

    def has(self, concept: str) -> bool:
        return concept in self.flags


def flag_table(engine: str) -> FlagTable:
    stem = TABLES.get(engine)
    if stem is None:
        raise QfitError(f"no launch commands for engine {engine!r}: qfit emits them for {', '.join(TABLES)}")
    d = load_records(profiles_dir() / "engines" / "launch")[stem]
    return FlagTable(d["engine"], str(d["version"]), d["source"]["package"], d["command"], d["flags"],
                     d.get("absent") or {}, tuple(d.get("kv_cache_dtypes") or ()),
                     tuple(d.get("quantization_methods") or ()), d.get("multi_node") or {})

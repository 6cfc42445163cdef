"""The engine registry: one name normaliser and one rule for which engine runs which weights where, used by `qfit
plan`, `qfit size` and `qfit profile` alike. Pure over loaded profiles (qfit/engines/load.py builds it)."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from qfit.engines.profile import EngineProfile, Policy
from qfit.errors import QfitError

FAMILY_LABELS = {"float": "float (bf16/fp16/fp32)", "fp8": "FP8", "int8": "INT8", "gptq": "GPTQ", "awq": "AWQ",
                 "bnb": "bitsandbytes", "mxfp": "MXFP4", "gguf": "GGUF (gguf-*)"}


@dataclass(frozen=True)
class EngineRegistry:
    engines: dict[str, EngineProfile]     # canonical name -> profile
    policy: Policy

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.engines)

    def get(self, name: str) -> EngineProfile:
        """A canonical name or an alias; an alias that stands for another engine carries its note."""
        key = (name or "").strip().lower()
        if key in self.engines:
            return self.engines[key]
        for engine in self.engines.values():
            if key in engine.aliases:
                return engine.with_note(engine.aliases[key])
        known = list(self.engines) + [a for e in self.engines.values() for a in e.aliases]
        close = difflib.get_close_matches(key, known, n=3, cutoff=0.4)
        hint = f"; did you mean: {', '.join(close)}?" if close else ""
        raise QfitError(f"unknown engine {name!r} (known: {', '.join(self.engines)}){hint}")

    def runners(self, family: str, acc) -> list[str]:
        """Engines that load this weight family on this device (its backend, and not a family they refuse)."""
        return [e.name for e in self.engines.values()
                if family in e.runs.get(acc.backend, ()) and acc.family not in e.unsupported_families]

    def check_kv(self, engine: EngineProfile, kv_dtype: str | None) -> None:
        """QfitError unless `engine` can store its KV cache as `kv_dtype` (None: the recipe's default)."""
        from qfit.memory import parse_kv_dtype

        if kv_dtype is None or parse_kv_dtype(kv_dtype) in engine.kv_dtypes:
            return
        others = [e.name for e in self.engines.values() if parse_kv_dtype(kv_dtype) in e.kv_dtypes]
        raise QfitError(f"{engine.name} stores KV cache as {', '.join(engine.kv_dtypes)}, not {kv_dtype}"
                        + (f"; {kv_dtype} is {', '.join(others)}'s" if others else ""))

    def check(self, engine: EngineProfile, recipe, acc) -> None:
        """QfitError unless `engine` loads `recipe`'s weights on `acc`, naming what would."""
        backend = acc.backend
        if not engine.runs_on(backend):
            where = [e.name for e in self.engines.values() if e.runs_on(backend)]
            raise QfitError(f"engine {engine.name} does not run on {acc.short_name} ({backend}); "
                            f"engines that do: {', '.join(where)}")
        if acc.family in engine.unsupported_families:
            where = [e.name for e in self.engines.values()
                     if e.runs_on(backend) and acc.family not in e.unsupported_families]
            raise QfitError(f"{engine.name} does not run on {acc.short_name}: {engine.unsupported_families[acc.family]}"
                            + (f"; engines that do: {', '.join(where)}" if where else ""))
        need = self.policy.device_need(recipe.name, acc)
        if need is not None:
            raise QfitError(f"{acc.short_name} ({acc.family}) cannot run {recipe.name}: {need.why}"
                            + (f"; use {need.instead}" if need.instead else ""))
        families = engine.runs[backend]
        if recipe.family in families:
            return
        can = ", ".join(FAMILY_LABELS[f] for f in sorted(families))
        others = self.runners(recipe.family, acc)
        alt = (f"; {recipe.name} runs there on {', '.join(others)} (--engine)" if others
               else f"; nothing qfit knows runs {recipe.name} on {backend}")
        raise QfitError(f"{engine.name} runs {can} weights on {acc.short_name} ({backend}), not {recipe.name}{alt}")

    def choose(self, name: str | None, recipe, acc, kv_dtype: str | None = None) -> EngineProfile:
        """The named engine, or the default for these weights on this device (each profile's `default_on`); with
        `kv_dtype`, one that can store the KV cache so."""
        if name:
            engine = self.get(name)
        else:
            able = self.runners(recipe.family, acc)
            # the device's default engine for these weights; where it refuses the device (vLLM on Pascal), another
            # engine that runs them there
            picks = [self.engines[n] for n in able if acc.backend in self.engines[n].default_on] or [
                self.engines[n] for n in able]
            if not picks:
                runs = [f"{FAMILY_LABELS[f]} ({', '.join(self.runners(f, acc))})" for f in FAMILY_LABELS
                        if self.runners(f, acc)]
                raise QfitError(f"no engine runs {recipe.name} weights on {acc.short_name} ({acc.backend}); "
                                f"there: {'; '.join(runs) or 'nothing'}")
            engine = picks[0]
        self.check(engine, recipe, acc)
        self.check_kv(engine, kv_dtype)
        return engine

    def measurable(self, name: str) -> EngineProfile:
        """The engine `qfit profile` runs for a --backend name: only engines it drives itself, never a stand-in."""
        try:
            engine = self.get(name)
        except QfitError:
            engine = None
        if engine is None or engine.note or engine.measure is None:
            runs = [e.name for e in self.engines.values() if e.measure]
            why = f" ({engine.note})" if engine is not None and engine.note else ""
            raise QfitError(f"unknown backend {name!r}: qfit profile runs {', '.join(runs)}{why}")
        return engine

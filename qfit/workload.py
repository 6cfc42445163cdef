"""Workload: what a deployment is asked to serve, shared by `qfit plan` (one configuration) and `qfit size` (the
cheapest hardware for it). Validated when built: every figure finite and positive."""

from __future__ import annotations

import math
from dataclasses import dataclass

from qfit.errors import QfitError
from qfit.units import MAX_TOKENS


def _positive(what: str, value, integer: bool = True) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok or (integer and int(value) != value):
        raise QfitError(f"{what} must be a positive {'whole number' if integer else 'number'}, got {value!r}")


@dataclass(frozen=True)
class Workload:
    context: int                            # tokens of KV each sequence holds (memory is checked at this length)
    batch: int = 1                          # sequences decoding at once (`qfit size --concurrency`)
    input_tokens: int | None = None         # prompt length: prefill / TTFT (default: the context)
    output_tokens: int | None = None        # generated tokens per request (end-to-end time, request capacity)
    rps: float | None = None                # requests per second to sustain (size)
    min_tokens_per_s: float | None = None   # per-sequence decode speed floor (size)
    max_ttft_s: float | None = None         # time-to-first-token ceiling (size)

    def __post_init__(self) -> None:
        for what in ("context", "batch", "input_tokens", "output_tokens"):
            value = getattr(self, what)
            if value is not None:
                _positive(what, value)
                if value > MAX_TOKENS:
                    raise QfitError(f"{what} {value:,} is absurd (more than {MAX_TOKENS:,})")
        for what in ("rps", "min_tokens_per_s", "max_ttft_s"):
            if getattr(self, what) is not None:
                _positive(what, getattr(self, what), integer=False)

    @property
    def concurrency(self) -> int:
        return self.batch

    @property
    def prompt(self) -> int:
        return self.input_tokens or self.context

    @property
    def decode_context(self) -> int:
        """KV length decode is timed at: the end of a request (worst case), else the full context."""
        if self.input_tokens and self.output_tokens:
            return min(self.context, self.input_tokens + self.output_tokens)
        return self.context

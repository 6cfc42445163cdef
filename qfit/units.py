"""Parsing and formatting of human sizes: "72B" parameters, "48GB" memory, "32k" tokens.

GiB = 2**30 bytes (what the JSON contract reports); GB = 10**9 bytes (what vendors and model cards print).
"""

from __future__ import annotations

import re
from fractions import Fraction

from qfit.errors import QfitError

GIB = 2**30
GB = 10**9

_TOKEN_SUFFIX = {"": 1, "k": 1024, "m": 1024**2}
_COUNT_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "t": 10**12}
_BYTE_SUFFIX = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_TIME_SUFFIX = {"": 1, "s": 1, "ms": Fraction(1, 1000)}
# At most 18 integer and 12 decimal digits: a number with hundreds of digits is refused as text, before any float or
# int conversion can overflow (and no real figure here needs more).
_NUMBER = re.compile(r"(-?)(\d{1,18})(?:\.(\d{1,12}))?\s*([A-Za-z]*)")

# Contexts beyond this are not a real deployment: refuse rather than compute a meaningless plan.
MAX_TOKENS = 2**26


def _scaled(text, what: str, suffixes: dict, example: str) -> Fraction:
    """'1.5k' -> Fraction(1536) with the suffix table given; exact (no float), bounded in length."""
    m = _NUMBER.fullmatch(str(text).strip())
    if not m or m.group(4).lower() not in suffixes:
        raise QfitError(f"cannot read {what} {text!r}: expected {example}")
    value = Fraction(f"{m.group(2)}.{m.group(3) or '0'}") * suffixes[m.group(4).lower()]
    return -value if m.group(1) else value


def _bounded_int(value: Fraction, text, what: str, maximum: int, unit: str) -> int:
    if value.denominator != 1:
        raise QfitError(f"{what} {text} is not a whole number of {unit}")
    if value <= 0:
        raise QfitError(f"{what} must be positive, got {text}")
    if value > maximum:
        raise QfitError(f"{what} {text} is absurd (more than {maximum:,})")
    return int(value)


def parse_tokens(text: str | int, what: str = "context") -> int:
    """'32k' -> 32768 (token counts use binary k, as engines do), '8192' -> 8192; '1.5' is refused, not rounded."""
    value = Fraction(text) if isinstance(text, int) else _scaled(text, what, _TOKEN_SUFFIX,
                                                                 "a number such as 8192 or 32k")
    return _bounded_int(value, text, what, MAX_TOKENS, "tokens")


def parse_positive_int(text: str | int, what: str, maximum: int = 1_000_000) -> int:
    value = Fraction(text) if isinstance(text, int) else _scaled(text, what, {"": 1}, "a whole number")
    return _bounded_int(value, text, what, maximum, "units")


def parse_int_list(text: str, what: str, maximum: int = 1_000_000) -> list[int]:
    """'1,8,32' -> [1, 8, 32]."""
    parts = [p for p in str(text).split(",") if p.strip()]
    if not parts:
        raise QfitError(f"{what} is empty")
    if len(parts) > 64:
        raise QfitError(f"{what} lists {len(parts)} values: at most 64")
    return [parse_positive_int(p, what, maximum) for p in parts]


def parse_count(text: str) -> float:
    """'72B' -> 72e9, '135M' -> 135e6 (decimal, as model names use)."""
    value = _scaled(text, "count", _COUNT_SUFFIX, "e.g. 7B or 135M")
    if value <= 0:
        raise QfitError(f"count must be positive, got {text}")
    return float(value)


def parse_bytes(text: str) -> float:
    """'48GB' -> 48e9, '80GiB' -> 80 * 2**30."""
    value = _scaled(text, "size", {k: v for k, v in _BYTE_SUFFIX.items()}, "e.g. 48GB or 80GiB")
    if value <= 0:
        raise QfitError(f"size must be positive, got {text}")
    return float(value)


def parse_float(text: str, what: str, allow_zero: bool = False, maximum: float = 1e15) -> float:
    """A plain decimal number ('2.5'), finite and bounded; negative or zero refused unless allowed."""
    value = _scaled(text, what, {"": 1}, "a number")
    if value < 0 or (value == 0 and not allow_zero):
        raise QfitError(f"{what} must be {'non-negative' if allow_zero else 'positive'}, got {text}")
    if value > maximum:
        raise QfitError(f"{what} {text} is absurd (more than {maximum:g})")
    return float(value)


def parse_seconds(text: str, what: str = "--max-ttft") -> float:
    """'2s' / '500ms' / '1.5' (seconds) -> seconds."""
    value = _scaled(str(text).lower(), what, _TIME_SUFFIX, "e.g. 2s, 500ms or 1.5")
    if value <= 0:
        raise QfitError(f"{what} must be positive, got {text}")
    if value > 86400:
        raise QfitError(f"{what} {text} is absurd (more than a day)")
    return float(value)


def gib(nbytes: float) -> float:
    return nbytes / GIB


def fmt_gib(nbytes: float, digits: int = 1) -> str:
    return f"{nbytes / GIB:.{digits}f} GiB"


def fmt_gb(nbytes: float, digits: int = 1) -> str:
    return f"{nbytes / GB:.{digits}f} GB"


def fmt_count(n: float) -> str:
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}"
    return f"{n:.0f}"


def fmt_tokens(n: int) -> str:
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024}k"
    return f"{n:,}"

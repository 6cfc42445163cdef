"""Parsing and formatting of human sizes: "72B" parameters, "48GB" memory, "32k" tokens.

GiB = 2**30 bytes (what the JSON contract reports); GB = 10**9 bytes (what vendors and model cards print).
"""

from __future__ import annotations

import re

from qfit.errors import QfitError

GIB = 2**30
GB = 10**9

_TOKEN_SUFFIX = {"": 1, "k": 1024, "m": 1024**2}
_COUNT_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "t": 10**12}
_BYTE_SUFFIX = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_NUM = r"(\d+(?:\.\d+)?)"

# Contexts beyond this are not a real deployment: refuse rather than compute a meaningless plan.
MAX_TOKENS = 2**26


def parse_tokens(text: str | int, what: str = "context") -> int:
    """'32k' -> 32768 (token counts use binary k, as engines do), '8192' -> 8192."""
    if isinstance(text, int):
        value = text
    else:
        m = re.fullmatch(_NUM + r"\s*([kKmM]?)", str(text).strip())
        if not m:
            raise QfitError(f"cannot read {what} {text!r}: expected a number such as 8192 or 32k")
        value = int(float(m.group(1)) * _TOKEN_SUFFIX[m.group(2).lower()])
    if value <= 0:
        raise QfitError(f"{what} must be positive, got {text}")
    if value > MAX_TOKENS:
        raise QfitError(f"{what} {text} is absurd (more than {MAX_TOKENS:,} tokens)")
    return value


def parse_positive_int(text: str | int, what: str, maximum: int = 1_000_000) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise QfitError(f"cannot read {what} {text!r}: expected a whole number") from None
    if value <= 0:
        raise QfitError(f"{what} must be positive, got {text}")
    if value > maximum:
        raise QfitError(f"{what} {text} is absurd (more than {maximum:,})")
    return value


def parse_int_list(text: str, what: str, maximum: int = 1_000_000) -> list[int]:
    """'1,8,32' -> [1, 8, 32]."""
    parts = [p for p in str(text).split(",") if p.strip()]
    if not parts:
        raise QfitError(f"{what} is empty")
    return [parse_positive_int(p, what, maximum) for p in parts]


def parse_count(text: str) -> float:
    """'72B' -> 72e9, '135M' -> 135e6 (decimal, as model names use)."""
    m = re.fullmatch(_NUM + r"\s*([kKmMbBtT]?)", str(text).strip())
    if not m:
        raise QfitError(f"cannot read count {text!r}: expected e.g. 7B or 135M")
    return float(m.group(1)) * _COUNT_SUFFIX[m.group(2).lower()]


def parse_bytes(text: str) -> float:
    """'48GB' -> 48e9, '80GiB' -> 80 * 2**30."""
    m = re.fullmatch(_NUM + r"\s*([kKmMgGtT]?i?[bB])", str(text).strip())
    if not m:
        raise QfitError(f"cannot read size {text!r}: expected e.g. 48GB or 80GiB")
    return float(m.group(1)) * _BYTE_SUFFIX[m.group(2).lower()]


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

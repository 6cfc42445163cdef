"""Speed results measured with the standard tools, read for `qfit calibrate`: `vllm bench serve --save-result`,
GuideLLM's report JSON and `llama-bench -o json`. The format is told from the content, never the file name; each
reader validates the fields it uses into `Measurement`s (finite, positive, consistent) and refuses anything else in
one line. Pure parsing: the only I/O is reading the file; mapping.py turns measurements into planner comparisons.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from qfit.errors import QfitError
from qfit.jsonfile import read_json


@dataclass(frozen=True)
class Measurement:
    """One measured point: the setup it ran (what the file says; None where it does not) and its speeds."""
    tool: str                     # "vllm bench serve", "guidellm 0.8.1", "llama-bench <commit>"
    label: str                    # which row / benchmark of the file
    model: str | None             # model id or GGUF path as the tool recorded it
    engine: str | None            # None: the file does not say which server answered
    device: str | None            # None: the file does not record the device
    precision: str | None         # None: the served checkpoint's own dtype (tools record none)
    batch: int                    # concurrent sequences
    input_len: int
    output_len: int
    decode_tokens_per_s_per_seq: float | None = None
    prefill_tokens_per_s: float | None = None
    cv: float | None = None       # spread across the tool's own trials, where it repeats them


def number(path: str, where: str, value, *, integer: bool = False, zero: bool = False) -> float:
    """A finite positive number from the file (0 allowed with `zero`), or one line naming the field."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if zero else value > 0) and value < 1e15 and (not integer or float(value).is_integer())
    if not ok:
        kind = "a non-negative" if zero else "a positive"
        raise QfitError(f"{path}: {where} is {value!r:.40}, not {kind} finite {'integer' if integer else 'number'}")
    return int(value) if integer else float(value)


def text(path: str, where: str, value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise QfitError(f"{path}: {where} is {value!r:.40}, not a non-empty string")
    return value.strip()


def field(path: str, data: dict, key: str):
    if not isinstance(data, dict) or key not in data:
        raise QfitError(f"{path}: missing field {key!r}")
    return data[key]


def detect(data) -> str | None:
    """Which tool wrote this JSON: "vllm", "guidellm", "llama-bench", "endpoint" (qfit profile --endpoint), or None."""
    from qfit.calibrate_import import endpoint

    if endpoint.detect(data):
        return "endpoint"
    if isinstance(data, dict) and isinstance(data.get("benchmarks"), list) and isinstance(data.get("metadata"), dict) \
            and "guidellm_version" in data["metadata"]:
        return "guidellm"
    if isinstance(data, dict) and {"model_id", "request_rate", "max_concurrency", "total_output_tokens"} <= set(data):
        return "vllm"
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data) \
            and all("avg_ts" in r and "n_prompt" in r and "n_gen" in r for r in data):
        return "llama-bench"
    return None


def is_profile(data) -> bool:
    return isinstance(data, dict) and str(data.get("schema", "")).startswith("qfit.profile/")


def read_external(path: str, data) -> list[Measurement]:
    """Measurements of an already parsed file whose tool `detect` recognised; QfitError otherwise. A list of vllm
    results is a file `vllm bench serve --append-result` grew, one run per line (see `_appended`)."""
    from qfit.calibrate_import import endpoint, guidellm, llama_bench, vllm_bench

    if isinstance(data, list) and len(data) > 1 and all(detect(d) == "vllm" for d in data):
        return [m for d in data for m in vllm_bench.parse(path, d)]
    kind = detect(data)
    parsers = {"vllm": vllm_bench.parse, "guidellm": guidellm.parse, "llama-bench": llama_bench.parse,
               "endpoint": endpoint.parse}
    if kind is None:
        raise QfitError(f"{path} is not a qfit profile result nor a result of vllm bench serve "
                        "(--save-result), guidellm (--output-path *.json) or llama-bench (-o json)")
    return parsers[kind](path, data)


def read_any(path: str):
    """("profile", dict) for a qfit profile result (a folder means its profile.json, or the endpoint.json of
    `qfit profile --endpoint --out DIR`), else ("external", [Measurement])."""
    p = Path(path)
    if p.is_dir():
        p = p / "profile.json" if (p / "profile.json").is_file() or not (p / "endpoint.json").is_file() \
            else p / "endpoint.json"
    if not p.is_file():
        raise QfitError(f"no profile result or benchmark file at {path}")
    try:
        data = read_json(p, "result file")
    except QfitError as exc:
        if "Extra data" not in str(exc):
            raise
        data = _appended(p)
    if is_profile(data):
        return "profile", str(p), data
    return "external", str(p), read_external(str(p), data)


def _appended(path: Path) -> list:
    """The JSON documents of a file holding one per line (vllm bench serve --append-result writes "\n" + json.dump
    per run); read_json has already bounded its size and checked it is UTF-8."""
    docs = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if line.strip():
            try:
                docs.append(json.loads(line, parse_constant=_not_json))
            except ValueError as exc:
                raise QfitError(f"cannot read result file {path}: line {i + 1} is not valid JSON ({exc})") from None
    return docs


def _not_json(name: str):
    raise ValueError(f"{name} is not a JSON number")

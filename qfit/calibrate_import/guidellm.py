"""GuideLLM report JSON (guidellm/benchmark/schemas/report.py GenerativeBenchmarksReport.save_file: model_dump of
metadata, config, benchmarks). Accepted: report schema version 2 (metadata.version; guidellm 0.8.x writes it);
other versions are refused, their layout differs. Per benchmark, fields read: config.strategy (type_, streams),
config.backend.model, metrics.{prompt_token_count, output_token_count, inter_token_latency_ms,
time_to_first_token_ms}.successful.median.

Only fixed-concurrency strategies have a known batch: `concurrent` (streams) and `synchronous` (1); throughput and
rate-driven ones (constant, poisson, async, sweep's) are skipped. Decode per sequence = 1000 / median ITL (GuideLLM's
ITL excludes the first token; its TPOT includes it). Prefill = median prompt / median TTFT at concurrency 1 only.
"""

from __future__ import annotations

from qfit.calibrate_import import Measurement, field, number, text
from qfit.errors import QfitError

VERSIONS = (2,)


def _median(path: str, metrics: dict, name: str, where: str) -> float:
    dist = field(path, field(path, metrics, name), "successful")
    return number(path, f"{where} metrics.{name}.successful.median", field(path, dist, "median"))


def _batch(path: str, strategy: dict, where: str) -> int | None:
    kind = strategy.get("type_")
    if kind == "synchronous":
        return 1
    if kind == "concurrent":
        return number(path, f"{where} config.strategy.streams", field(path, strategy, "streams"), integer=True)
    return None


def _one(path: str, bench: dict, i: int, tool: str) -> Measurement | None:
    where = f"benchmarks[{i}]"
    config = field(path, bench, "config")
    strategy = field(path, config, "strategy")
    batch = _batch(path, strategy if isinstance(strategy, dict) else {}, where)
    if batch is None:
        return None
    metrics = field(path, bench, "metrics")
    input_len = round(_median(path, metrics, "prompt_token_count", where))
    output_len = round(_median(path, metrics, "output_token_count", where))
    itl = _median(path, metrics, "inter_token_latency_ms", where)
    ttft = _median(path, metrics, "time_to_first_token_ms", where)
    model = text(path, f"{where} config.backend.model", field(path, field(path, config, "backend"), "model"))
    return Measurement(tool=tool, label=f"{strategy['type_']}@{batch}", model=model, engine=None, device=None,
                       precision=None, batch=batch, input_len=input_len, output_len=output_len,
                       decode_tokens_per_s_per_seq=1000.0 / itl,
                       prefill_tokens_per_s=input_len / (ttft / 1000.0) if batch == 1 else None)


def parse(path: str, data: dict) -> list[Measurement]:
    meta = data["metadata"]
    if meta.get("version") not in VERSIONS:
        raise QfitError(f"{path}: GuideLLM report schema version {meta.get('version')!r:.20} (guidellm "
                        f"{meta.get('guidellm_version')!r:.20}); qfit reads version 2 (guidellm 0.8.x)")
    tool = f"guidellm {str(meta.get('guidellm_version'))[:20]}"
    out = [m for i, b in enumerate(data["benchmarks"]) if (m := _one(path, b, i, tool)) is not None]
    if not out:
        raise QfitError(f"{path}: no benchmark ran at a fixed concurrency (profile concurrent or synchronous): "
                        "the batch of rate-driven runs is unknown")
    return out

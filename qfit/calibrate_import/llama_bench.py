"""`llama-bench -o json` (tools/llama-bench/llama-bench.cpp, json_printer::print_test: test::get_fields() values
plus samples_ns / samples_ts). Fields read: build_commit, cpu_info, gpu_info, backends, model_filename, model_type,
n_gpu_layers, n_prompt, n_gen, n_depth, avg_ts, stddev_ts.

A pp row (n_gen 0) times prefill of n_prompt tokens; a tg row (n_prompt 0) decode of n_gen tokens after n_depth
tokens of context, one sequence. Mixed rows (-pg) time both at once and are skipped. The precision is the file type
at the end of model_type ("llama 8B Q4_K - Medium" -> q4_k_m); the device is gpu_info when layers were offloaded to a
GPU backend, else cpu_info. CV = stddev_ts / avg_ts across the tool's repetitions.
"""

from __future__ import annotations

import re

from qfit.calibrate_import import Measurement, field, number, text
from qfit.errors import QfitError

# llama_model_ftype_name (src/llama-model-loader.cpp) -> qfit precision
_FTYPES = {"all F32": "fp32", "F16": "fp16", "BF16": "bf16", "Q8_0": "q8_0", "Q4_0": "q4_0", "Q4_1": "q4_1",
           "Q5_0": "q5_0", "Q5_1": "q5_1", "Q6_K": "q6_k", "Q2_K - Medium": "q2_k", "Q3_K - Small": "q3_k_s",
           "Q3_K - Medium": "q3_k_m", "Q3_K - Large": "q3_k_l", "Q4_K - Small": "q4_k_s", "Q4_K - Medium": "q4_k_m",
           "Q5_K - Small": "q5_k_s", "Q5_K - Medium": "q5_k_m"}


def precision_of(path: str, model_type: str) -> str:
    """The qfit precision of llama.cpp's model description "<arch> <size> <ftype>"."""
    for name, qfit_name in sorted(_FTYPES.items(), key=lambda kv: -len(kv[0])):
        if re.search(rf"(^|\s){re.escape(name)}( \(guessed\))?$", model_type):
            return qfit_name
    raise QfitError(f"{path}: model_type {model_type!r:.60} ends in no file type qfit plans (e.g. Q4_K - Medium, "
                    "Q8_0, F16): pass --precision")


def device_of(row: dict) -> str | None:
    on_gpu = row.get("backends") not in (None, "CPU") and row.get("n_gpu_layers") != 0    # -1 (default): all
    name = row.get("gpu_info") if on_gpu else row.get("cpu_info")
    return name.split(",")[0].strip() or None if isinstance(name, str) else None


def _row(path: str, row: dict, i: int) -> Measurement | None:
    where = f"row {i + 1}"
    n_prompt = number(path, f"{where} n_prompt", field(path, row, "n_prompt"), integer=True, zero=True)
    n_gen = number(path, f"{where} n_gen", field(path, row, "n_gen"), integer=True, zero=True)
    depth = number(path, f"{where} n_depth", row.get("n_depth", 0), integer=True, zero=True)
    if (n_prompt > 0) == (n_gen > 0):
        return None
    ts = number(path, f"{where} avg_ts", field(path, row, "avg_ts"))
    sd = number(path, f"{where} stddev_ts", field(path, row, "stddev_ts"), zero=True)
    model_type = text(path, f"{where} model_type", field(path, row, "model_type"))
    common = dict(tool=f"llama-bench {str(row.get('build_commit', '?'))[:12]}",
                  model=text(path, f"{where} model_filename", field(path, row, "model_filename")),
                  engine="llama.cpp", device=device_of(row), precision=precision_of(path, model_type), batch=1,
                  cv=sd / ts)
    if n_gen == 0:
        return Measurement(label=f"pp{n_prompt}", input_len=n_prompt, output_len=1, prefill_tokens_per_s=ts,
                           **common)
    return Measurement(label=f"tg{n_gen}" + (f" @ d{depth}" if depth else ""), input_len=max(depth, 1),
                       output_len=n_gen, decode_tokens_per_s_per_seq=ts, **common)


def parse(path: str, data: list) -> list[Measurement]:
    out = [m for i, r in enumerate(data) if (m := _row(path, r, i)) is not None]
    if not out:
        raise QfitError(f"{path}: no pp or tg row (only mixed -pg rows, which time prefill and decode together)")
    return out

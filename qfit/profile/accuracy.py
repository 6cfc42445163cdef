"""Quality measurements on a backend: perplexity, KL / top-1 agreement against a baseline, multiple-choice accuracy.

MODEL and BASE go through exactly the same protocol (same tokens, windows, prompts); the protocol is returned with the
numbers so the report can print it. Torch is imported inside functions only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Sequence

from qfit.errors import QfitError
from qfit.profile import metrics
from qfit.profile.metrics import ChoiceScores


@dataclass(frozen=True)
class TextProtocol:
    source: str
    max_tokens: int
    window: int
    stride: int
    bos: str  # "auto" (follow the tokenizer), "yes" or "no"

    def to_dict(self) -> dict:
        return asdict(self)


def plan_windows(n_tokens: int, window: int, stride: int, bos: bool) -> list[tuple[int, int, int]]:
    """Pure: (start, end, score_from) per window over token indices [0, n_tokens).

    Each window feeds ids[start:end] (after BOS when `bos`); tokens with index >= score_from are scored, so every token
    is scored exactly once, with up to window - stride tokens of extra context when stride < window (the usual sliding
    window). Token 0 can be scored only when a BOS precedes it.
    """
    if window < 2:
        raise QfitError(f"perplexity window must be at least 2 tokens, got {window}")
    if not 0 < stride <= window:
        raise QfitError(f"perplexity stride must be in 1..window ({window}), got {stride}")
    if n_tokens < window:
        raise QfitError(f"text too short for the window: {n_tokens} tokens < window {window}; "
                        f"use a longer --text or a smaller --ppl-window")
    out, prev_end, start = [], 0, 0
    while prev_end < n_tokens:
        end = min(start + window, n_tokens)
        first = 0 if bos else 1
        score_from = max(prev_end, start + first)
        if score_from < end:
            out.append((start, end, score_from))
        prev_end = end
        start += stride
    return out


def _bos_choice(backend, bos: str) -> bool:
    if bos == "yes":
        if backend.bos_id is None:
            raise QfitError("--bos yes: this tokenizer has no BOS token")
        return True
    return bos == "auto" and backend.adds_bos()


def text_tokens(backend, text: str, max_tokens: int) -> list[int]:
    ids = backend.encode(text, add_special_tokens=False)
    return ids[:max_tokens]


def _window_scores(backend, inp: list[int], lo: int, hi: int):
    """Log-probs [hi-lo, V] (or None) and per-token log-likelihood of the targets inp[lo+1 .. hi]."""
    full = backend.full_logprobs(inp) if backend.supports_full_logprobs else None
    if full is not None:
        import torch
        tgt = torch.tensor(inp[lo + 1:hi + 1], dtype=torch.long)
        rows = full[lo:hi]
        return rows, rows.gather(1, tgt[:, None])[:, 0].tolist()
    return None, backend.token_logprobs(inp)[lo:hi]


def evaluate_text(model, base, text: str, proto: TextProtocol, tick: Callable[[], None] = lambda: None) -> dict:
    """Perplexity of MODEL (and BASE), KL(BASE || MODEL) and top-1 agreement on the same tokens."""
    ids = text_tokens(model, text, proto.max_tokens)
    bos = _bos_choice(model, proto.bos)
    if base is not None:
        if text_tokens(base, text, proto.max_tokens) != ids:
            raise QfitError("MODEL and BASE tokenize the text differently: KL and paired perplexity need one vocabulary")
        if bos != _bos_choice(base, proto.bos):
            raise QfitError("MODEL and BASE disagree on BOS: pass --bos yes or --bos no")
    plan = plan_windows(len(ids), proto.window, proto.stride, bos)
    nll_m, nll_b, kls, agree = [], [], [], []
    full_pair = base is not None and model.supports_full_logprobs and base.supports_full_logprobs
    for start, end, score_from in plan:
        head = [model.bos_id] if bos else []
        inp = head + ids[start:end]
        # position p of inp predicts inp[p+1]; token index i sits at position i - start + len(head)
        lo, hi = score_from - start + len(head) - 1, end - start + len(head) - 1
        rows_m, ll_m = _window_scores(model, inp, lo, hi)
        nll_m += [-x for x in ll_m]
        if base is not None:
            rows_b, ll_b = _window_scores(base, inp, lo, hi)
            nll_b += [-x for x in ll_b]
            if full_pair:
                kls += (rows_b.exp() * (rows_b - rows_m)).sum(-1).tolist()
                agree += (rows_b.argmax(-1) == rows_m.argmax(-1)).tolist()
        tick()
    out = {"protocol": proto.to_dict() | {"bos_used": bos, "tokens_scored": len(nll_m), "windows": len(plan),
                                          "tokens_available": len(ids)},
           "model": {"ppl": metrics.perplexity(nll_m).to_dict(), "mean_nll": metrics.mean(nll_m)}}
    if base is not None:
        out["base"] = {"ppl": metrics.perplexity(nll_b).to_dict(), "mean_nll": metrics.mean(nll_b)}
        ratio = metrics.ppl_ratio(nll_m, nll_b)
        out["ppl_ratio"] = ratio.to_dict()
        # retained % in perplexity terms: 100 * PPL(base) / PPL(model), interval from the paired ratio's bounds
        out["retained_pct"] = {"value": 100 / ratio.value, "low": 100 / ratio.high, "high": 100 / ratio.low,
                               "n": ratio.n, "how": "100 * PPL(base) / PPL(model)"}
        if full_pair:
            out["kl"] = metrics.mean_estimate(kls).to_dict() | {"max": max(kls), "p99": metrics.percentile(kls, 99)}
            out["top1_agreement"] = metrics.proportion(agree).to_dict()
        else:
            reason = "the backend exposes no full next-token distribution"
            out["kl"] = {"available": False, "reason": reason}
            out["top1_agreement"] = {"available": False, "reason": reason}
    return out


def text_windows_count(n_tokens: int, proto: TextProtocol) -> int:
    return len(plan_windows(n_tokens, proto.window, proto.stride, True))


# ---------------------------------------------------------------- multiple choice

def split_context(context: str, continuation: str) -> tuple[str, str]:
    """Trailing whitespace of the context moves to the continuation (lm-evaluation-harness does the same)."""
    n = len(context) - len(context.rstrip())
    if n:
        return context[:-n], context[-n:] + continuation
    return context, continuation


def encode_choice(backend, context: str, continuation: str, bos: bool) -> tuple[list[int], list[int]]:
    """Context ids and continuation ids such that context + continuation == tokens of the whole string."""
    context, continuation = split_context(context, continuation)
    whole = backend.encode(context + continuation, add_special_tokens=False)
    ctx = backend.encode(context, add_special_tokens=False)
    cont = whole[len(ctx):] if whole[:len(ctx)] == ctx else backend.encode(continuation, add_special_tokens=False)
    head = [backend.bos_id] if bos else []
    if not head and not ctx:
        raise QfitError("a multiple-choice item has an empty context and no BOS to condition on")
    return head + ctx, cont


def score_items(backend, items, bos: bool, tick: Callable[[], None]) -> list[ChoiceScores]:
    out = []
    for item in items:
        encoded = [encode_choice(backend, item.context, c, bos) for c in item.choices]
        ctx = encoded[0][0]
        if all(e[0] == ctx for e in encoded):
            lls = backend.continuation_logliks(ctx, [e[1] for e in encoded])
        else:  # rare: the context tokenizes differently per choice, score each separately
            lls = [backend.continuation_logliks(c, [k])[0] for c, k in encoded]
        nbytes = tuple(len(c.encode("utf-8")) for c in item.choices)
        out.append(ChoiceScores(tuple(lls), nbytes, item.gold))
        tick()
    return out


def evaluate_task(model, base, spec, items: Sequence, bos: str, tick: Callable[[], None] = lambda: None) -> dict:
    res = {"task": spec.name, "source": spec.source, "template": spec.template, "n": len(items),
           "scoring": "log-likelihood of each choice; acc_norm divides by the choice's UTF-8 byte length"}
    scored = {}
    for role, backend in (("model", model), ("base", base)):
        if backend is None:
            continue
        acc = metrics.mc_accuracy(score_items(backend, items, _bos_choice(backend, bos), tick))
        scored[role] = acc
        res[role] = {"acc": acc["acc"].to_dict(), "acc_norm": acc["acc_norm"].to_dict()}
    if base is not None:
        res["retained_pct"] = {
            key: metrics.retained_ratio([float(x) for x in scored["model"][col]],
                                        [float(x) for x in scored["base"][col]]).to_dict()
            for key, col in (("acc", "correct"), ("acc_norm", "correct_norm"))}
    return res

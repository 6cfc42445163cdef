"""Sensitivity of each quantizable module to each width, from one float forward+backward pass over the calibration
windows.

For a linear y = W x, replacing W by Q changes output channel j by (E x)_j, E = W - Q; summed over the n calibration
tokens that is (E H E^T)_jj with H = sum of x x^T (the proxy GPTQ minimises, Frantar et al. 2022, arXiv:2210.17323,
eq. 1). To compare modules of different kinds, each channel's error is weighted by how much the loss responds to it:
F_j = mean over tokens of (d loss / d y_j)^2, the diagonal empirical Fisher of the module's output, so
0.5 sum_j F_j (E H E^T)_jj / n is a second-order estimate of the loss increase in nats per token (the Fisher/Hessian
sensitivity of HAWQ, arXiv:1905.03696, and SqueezeLLM, arXiv:2306.07629; llama.cpp's importance matrix keeps diag(H)).
Hooks collect H and F for every linear in the one pass; Q is the round-to-nearest grid at the checkpoint's group size
(the grid GPTQ starts from: an upper bound on GPTQ's error that ranks widths and modules alike). Costs are kept per
layer key ("layers.3.mlp.down_proj": a layer's experts summed), the allocation's granularity.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from qfit.precision import GPTQ_BITS


@dataclass
class Sensitivity:
    costs: dict[str, dict[int, float]]                 # layer key -> width -> error (per token)
    per_module: dict[str, dict[int, float]]            # full module name -> width -> error (per token)
    tokens: int
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"method": "0.5 sum_j F_j ((W-Q) H (W-Q)^T)_jj / tokens (nats per token): Q = round-to-nearest at "
                          "the group size, H = X^T X, F = mean squared loss gradient per output channel, from one "
                          "float forward+backward pass over the calibration windows",
                "tokens": self.tokens, "seconds": self.seconds,
                "by_key": {k: {str(b): v for b, v in c.items()} for k, c in self.by_key().items()},
                "by_layer": {k: {str(b): v for b, v in c.items()} for k, c in self.costs.items()}}

    def by_key(self) -> dict[str, dict[int, float]]:
        """Costs summed over layers per module key (a summary: which module types matter)."""
        from qfit.model.tensors import module_key

        out: dict[str, dict[int, float]] = {}
        for k, errs in self.costs.items():
            row = out.setdefault(module_key(k), {})
            for b, e in errs.items():
                row[b] = row.get(b, 0.0) + e
        return out


def hessian_error(weight, hessian, bits: int, group_size: int, fisher=None) -> float:
    """tr((W - Q) H (W - Q)^T) with Q the symmetric RTN grid of qfit.quantize.pack (what an RTN checkpoint stores);
    with `fisher` (mean squared loss gradient per output channel), sum_j F_j (E H E^T)_jj: each output channel's
    squared error weighted by how much the loss responds to it."""
    from qfit.quantize.pack import rtn_quantize

    q, scales, zeros, _ = rtn_quantize(weight, bits, group_size, sym=True)
    out_f, in_f = weight.shape
    gs = in_f if group_size == -1 else group_size
    deq = (q.t().float() - zeros.t().float().repeat_interleave(gs, dim=1)) * \
        scales.t().float().repeat_interleave(gs, dim=1)
    e = weight.float() - deq
    rows = ((e @ hessian.float()) * e).sum(dim=1)
    return float(rows.sum() if fisher is None else (rows * fisher.float()).sum())


def collect_statistics(model, names: Sequence[str], windows: Sequence[Sequence[int]]) -> tuple[dict, dict, int]:
    """({name: X^T X [in, in]}, {name: mean squared gradient of the summed token loss w.r.t. each output channel
    [out]}, tokens): one forward and one backward pass per window (the model's own next-token loss)."""
    import torch

    modules = dict(model.named_modules())
    hess = {n: torch.zeros(modules[n].in_features, modules[n].in_features, dtype=torch.float64) for n in names}
    fisher = {n: torch.zeros(modules[n].out_features, dtype=torch.float64) for n in names}
    seen: dict = {}        # q/k/v (and gate/up) see the same input tensor: one product per tensor per window

    def hook(name):
        def fn(_mod, inputs, out):
            x = inputs[0].detach()
            key = (x.data_ptr(), tuple(x.shape))
            if key not in seen:
                flat = x.reshape(-1, x.shape[-1]).float()
                seen[key] = (flat.t() @ flat).double()     # fp32 product per window, fp64 running sum
            hess[name].add_(seen[key])
            if out.requires_grad:
                out.register_hook(grad_hook(name))
        return fn

    def grad_hook(name):
        def fn(g):      # returns None: the gradient flows on unchanged
            fisher[name].add_(g.detach().reshape(-1, g.shape[-1]).double().pow(2).sum(0))
        return fn

    handles = [modules[n].register_forward_hook(hook(n)) for n in names]
    for p in model.parameters():
        p.requires_grad_(False)
    model.get_input_embeddings().weight.requires_grad_(True)   # so activations carry gradients
    try:
        for w in windows:
            seen.clear()
            ids = torch.tensor([list(w)], dtype=torch.long)
            logits = model(ids).logits[0, :-1].float()
            torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum").backward()
            model.zero_grad(set_to_none=True)
        seen.clear()
    finally:
        for h in handles:
            h.remove()
    tokens = sum(len(w) for w in windows)
    return {n: h.float() for n, h in hess.items()}, {n: (f / tokens).float() for n, f in fisher.items()}, tokens


def measure(model_dir: Path, names: Sequence[str], windows, group_size: int, widths: Sequence[int] = GPTQ_BITS,
            trust_remote_code: bool = False) -> Sensitivity:
    """Errors of every named linear at every width (names as in the checkpoint, without '.weight')."""
    import torch

    from qfit.loading import load_causal_lm
    from qfit.model.tensors import layer_key, module_key

    t0 = time.perf_counter()
    model = load_causal_lm(model_dir, dtype="float32", trust_remote_code=trust_remote_code)
    t1 = time.perf_counter()
    hess, fisher, tokens = collect_statistics(model, names, windows)
    t2 = time.perf_counter()
    modules = dict(model.named_modules())
    per_module: dict[str, dict[int, float]] = {}
    with torch.no_grad():
        for n in names:
            w = modules[n].weight.detach().float()
            # half the Fisher-weighted error: the second-order estimate of the loss increase, nats per token
            per_module[n] = {b: 0.5 * hessian_error(w, hess[n], b, group_size, fisher[n]) / tokens for b in widths}
    costs: dict[str, dict[int, float]] = {}
    for n, errs in per_module.items():
        key = costs.setdefault(layer_key(n) or module_key(n), {})
        for b, e in errs.items():
            key[b] = key.get(b, 0.0) + e
    seconds = {"load": round(t1 - t0, 2), "forward": round(t2 - t1, 2), "errors": round(time.perf_counter() - t2, 2)}
    return Sensitivity(costs, per_module, tokens, seconds)

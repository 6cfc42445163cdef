"""Speculative decoding with a model's own multi-token-prediction layers (`qfit plan --spec mtp[:n]
--spec-acceptance A`): what the draft layers cost in memory and what the scheme does to decode speed.

Per verify step, n drafted tokens are each accepted with probability A (given the previous ones): the step emits
E = (1 - A^(n+1)) / (1 - A) tokens. It costs one target pass over n + 1 tokens per sequence (weights read once, the
routed experts those tokens hit, KV read once per sequence, n + 1 times the FLOPs) plus n passes of the MTP layer with
the output head. Time per output token = (verify + n x draft) / E. profiles/planner/speculative.yaml holds the sources.

`speculation` is the edge (parses and reads the YAML facts); the rest is pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from qfit.errors import QfitError
from qfit.paths import profiles_dir
from qfit.perf.efficiency import Efficiency
from qfit.precision.weights import weight_bytes
from qfit.yamlcache import load_records

_SPEC = re.compile(r"^\s*mtp(?::(\d{1,3}))?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Speculation:
    draft_tokens: int          # n: tokens the MTP layer drafts per step
    acceptance: float          # A: probability a draft token is accepted given the ones before it
    facts: dict = field(default_factory=dict, repr=False, compare=False)   # profiles/planner/speculative.yaml

    @property
    def expected_tokens(self) -> float:
        """Tokens one verify step emits on average: 1 + A + ... + A^n."""
        a, n = self.acceptance, self.draft_tokens
        return float(n + 1) if a >= 1.0 else (1.0 - a ** (n + 1)) / (1.0 - a)

    def support(self, engine: str) -> dict | None:
        return (self.facts.get("engines") or {}).get(engine)

    def unsupported_note(self, engine: str) -> str:
        return (self.facts.get("unsupported") or {}).get(engine, f"{engine}: no MTP speculative decoding modelled")


def speculation(spec: str, acceptance: str | None) -> Speculation:
    """Parse --spec / --spec-acceptance once, at the boundary."""
    from qfit.units import parse_float

    facts = load_records(profiles_dir() / "planner")["speculative"]
    m = _SPEC.match(str(spec))
    if not m:
        raise QfitError(f"--spec {spec!r}: only mtp[:n] is modelled (the model's own multi-token-prediction layer "
                        "drafting n tokens per step, default 1)")
    n, most = int(m.group(1) or 1), int(facts["max_draft_tokens"])
    if not 1 <= n <= most:
        raise QfitError(f"--spec mtp:{n}: draft tokens must be 1..{most}")
    if acceptance is None:
        raise QfitError("--spec needs --spec-acceptance A (0-1): the share of draft tokens the model accepts depends "
                        "on the text and sampler; read it from your server's speculative-decoding metrics")
    return Speculation(n, parse_float(acceptance, "--spec-acceptance", allow_zero=True, maximum=1.0), facts)


@dataclass(frozen=True)
class Draft:
    """What the MTP layers add: weights, KV, and one draft pass's bytes at the plan's batch."""

    weight_bytes: float        # stored
    kv_bytes: float            # KV of the MTP attention layers, all sequences at the context
    pass_bytes: float          # read by one draft pass (MTP layer, its KV at the depth, the output head)


def draft_of(dep, batch: int, context: int, depth: int) -> Draft:
    """The MTP layers of `dep`'s model in its recipe (they take the last layer's block type; the output head is the
    model's unless the checkpoint stores its own copy)."""
    from qfit.model.params import tensor_groups
    from qfit.perf.workload import expert_coverage

    spec, recipe = dep.model.spec, dep.recipe
    base = tuple(tensor_groups(spec))
    mtp = tuple(g for g in tensor_groups(spec, include_mtp=True) if g.module.startswith("mtp."))
    wb = weight_bytes(mtp, recipe)
    kv = dep.kv_one(context)
    per_full_layer = (kv.total_bytes - kv.state_bytes) / max(spec.count("full"), 1)
    kv_total = per_full_layer * spec.mtp_layers * batch
    roles = dict(wb.by_role)
    expert = sum(v for r, v in roles.items() if r.startswith("expert_"))
    dense = wb.total - expert - roles.get("embed", 0) - roles.get("lm_head", 0)
    cover = expert_coverage(spec.moe.num_experts, spec.moe.top_k, batch) if spec.moe and expert else 1.0
    head = roles.get("lm_head") or dict(weight_bytes(base, recipe).by_role).get("lm_head") or \
        dict(weight_bytes(base, recipe).by_role).get("embed", 0)
    pass_bytes = dense + expert * cover + head + kv_total * min(1.0, depth / context)
    return Draft(float(wb.total), kv_total, float(pass_bytes))


def apply_speed(est, verify, draft: Draft, s: Speculation, eff: Efficiency, bandwidth_gbps: float, batch: int,
                output_len: int | None = None):
    """The plan's PerfEstimate with speculation: `verify` is the estimate of one target pass over batch x (n + 1)
    tokens (its KV read n + 1 times over: corrected here to once per sequence)."""
    b = verify.breakdown
    bw = bandwidth_gbps * 1e9
    n = s.draft_tokens
    extra_kv = b["decode_kv_bytes_per_gpu"] * n / (n + 1)
    memory_s = b["decode_memory_s"] - extra_kv / (bw * eff.decode_bandwidth_efficiency)
    verify_s = max(memory_s, b["decode_compute_s"]) + b["decode_overhead_s"] + b["decode_comm_s"]
    # drafts run inside the verify step: the engine's fixed per-step cost (scheduler, sampler) counted once per step,
    # each draft pass pays its one layer's per-layer overhead (optimistic where every draft launches its own graph)
    draft_s = draft.pass_bytes / (bw * eff.decode_bw) + eff.overhead_s(1) - eff.overhead_per_step_us * 1e-6
    tpot = (verify_s + n * draft_s) / s.expected_tokens / eff.decode_speed_factor
    band = {k: (round(v * 2, 1) if k.startswith("decode") and k.endswith("_pct") and isinstance(v, (int, float))
                else v) for k, v in est.error_band.items()}
    band["basis"] = f"{est.error_band.get('basis', '')}; decode x2 for speculative decoding (no such rows)"
    breakdown = dict(est.breakdown, spec_verify_s=verify_s, spec_draft_s=draft_s,
                     spec_expected_tokens=s.expected_tokens)
    out = replace(est, decode_tokens_per_s=1.0 / tpot, tpot_s=tpot, aggregate_tokens_per_s=batch / tpot,
                  error_band=band, breakdown=breakdown)
    if output_len:
        out.e2e_s = est.ttft_s + output_len * tpot
        out.e2e_tokens_per_s = output_len / out.e2e_s
    return out


def summary(s: Speculation, draft: Draft, flag: str) -> dict:
    return {"method": "mtp", "draft_tokens": s.draft_tokens, "acceptance": s.acceptance,
            "expected_tokens_per_step": round(s.expected_tokens, 4), "draft_weights_gib": draft.weight_bytes / 2**30,
            "draft_kv_gib": draft.kv_bytes / 2**30, "flag": flag.replace("N+1", str(s.draft_tokens + 1))
            .replace("N", str(s.draft_tokens))}

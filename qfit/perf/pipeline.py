"""Pipeline parallel across nodes: what a plan's speed loses when its layers are split into stages on several
machines, and the inter-node links (profiles/planner/internode.yaml) the estimate uses.

A sequence's token runs through the stages one after another, so a step takes the tensor-parallel group's time over
the whole model (what estimate_performance gives for `gpus // pp` GPUs) plus one hop per stage boundary. Each hop sends
the step's activations (batch x hidden values, in the activation dtype) to the next node: link latency + bytes /
bandwidth. No overlap is credited: with enough sequences in flight an engine keeps up to `pp` micro-batches moving
(vLLM's virtual engines), so the aggregate tokens/s here is a floor; at batch 1 the other stages idle (the bubble).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from qfit.errors import QfitError
from qfit.model.spec import ModelSpec
from qfit.paths import profiles_dir
from qfit.perf.efficiency import widen
from qfit.perf.estimate import PerfEstimate
from qfit.yamlcache import load_records


@dataclass(frozen=True)
class Internode:
    key: str
    name: str
    bandwidth_gbps: float     # GB/s per direction
    latency_us: float         # one small message, an assumption (see the profile)
    source: str
    band_multiplier: float = 1.5   # speed error band widening across nodes (uncalibrated)

    def hop_s(self, nbytes: float) -> float:
        return self.latency_us * 1e-6 + nbytes / (self.bandwidth_gbps * 1e9)


def internode_links() -> dict[str, Internode]:
    data = load_records(profiles_dir() / "planner")["internode"]
    return {k: Internode(k, str(v["name"]), float(v["bandwidth_gbps"]), float(v["latency_us"]), str(v["source"]),
                         float(data["band_multiplier"]))
            for k, v in data["links"].items()}


def internode(name: str | None = None) -> Internode:
    """The named link (profiles/planner/internode.yaml), or the profile's default."""
    links = internode_links()
    key = (name or load_records(profiles_dir() / "planner")["internode"]["default"]).strip().lower()
    if key not in links:
        raise QfitError(f"unknown --internode {name!r}; known: {', '.join(links)}")
    return links[key]


def pipeline_adjust(est: PerfEstimate, spec: ModelSpec, pp: int, link: Internode, *, batch: int, input_len: int,
                    act_bytes: float, output_len: int | None = None) -> PerfEstimate:
    """`est` (the TP group's speed over all layers) with the (pp - 1) hops between stages added."""
    if pp < 1:
        raise QfitError(f"pipeline stages must be >= 1, got {pp}")
    if pp == 1:
        return est
    hops = pp - 1
    decode_hop = link.hop_s(batch * spec.hidden * act_bytes)
    prefill_hop = link.hop_s(batch * max(input_len, 1) * spec.hidden * act_bytes)
    step = est.tpot_s + hops * decode_hop
    ttft = est.ttft_s + hops * prefill_hop if est.ttft_s else 0.0
    pre_s = batch * max(input_len, 1) / est.prefill_tokens_per_s + hops * prefill_hop
    notes = [f"pipeline parallel: {pp} stages on {pp} nodes, {hops} hop(s) over {link.name} per step "
             f"({link.bandwidth_gbps:g} GB/s, {link.latency_us:g} us assumed per message; {link.source}): "
             f"+{hops * decode_hop * 1e3:.3f} ms per decode step, +{hops * prefill_hop * 1e3:.2f} ms per prefill",
             "pipeline bubble: a token passes the stages in turn, so a sequence decodes at the speed of one node's "
             "tensor-parallel group over all layers; no overlap of stages credited (with many sequences in flight "
             f"engines keep up to {pp} micro-batches moving, so aggregate tokens/s is a floor)"]
    out = replace(est, tpot_s=step, decode_tokens_per_s=1.0 / step, aggregate_tokens_per_s=batch / step,
                  ttft_s=ttft, prefill_tokens_per_s=batch * max(input_len, 1) / pre_s,
                  assumptions=list(est.assumptions) + notes,
                  error_band=widen(est.error_band, link.band_multiplier,
                                   "pipeline parallel across nodes (no multi-node rows in the calibration; hop latency "
                                   "assumed)"),
                  breakdown={**est.breakdown, "pipeline_stages": pp, "decode_hop_s": decode_hop,
                             "prefill_hop_s": prefill_hop})
    if output_len:
        out.e2e_s = out.ttft_s + output_len * step
        out.e2e_tokens_per_s = output_len / out.e2e_s
    return out

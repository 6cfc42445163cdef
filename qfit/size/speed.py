"""The one place `qfit size` times a replica: qfit.perf's speed model with its inputs precomputed.

`estimate_performance` (qfit/perf/estimate.py) rebuilds the model's shape and weight traffic and formats assumption
strings on every call (~150 us); the search needs thousands of timings. So the search calls the same roofline
functions estimate_performance calls (decode_step, prefill) with shape, traffic, efficiency and device built once, and
the rows `qfit size` shows are re-estimated with `estimate_performance` itself (`estimate`), which gives their error
band and assumptions. tests/test_size.py pins fast == real on several configurations.

A replica over several nodes (pipeline parallel, `pp` stages joined by an inter-node link) adds the (pp - 1) hops of
qfit.perf.pipeline.pipeline_adjust, by the same formula; tests/test_size_nodes.py pins size == `qfit plan --nodes`.
"""

from __future__ import annotations

from dataclasses import dataclass

from qfit.engines import EngineProfile
from qfit.hardware import Accelerator
from qfit.model.spec import ModelSpec
from qfit.model.tensors import TensorGroup
from qfit.perf import estimate_performance
from qfit.perf.estimate import PerfEstimate, device_view
from qfit.perf.pipeline import Internode, pipeline_adjust
from qfit.perf.roofline import decode_step, prefill
from qfit.perf.workload import (
    Shape,
    WeightTraffic,
    kv_dtype_bytes,
    shape_of,
    weight_traffic,
)
from qfit.precision import WeightBytes


@dataclass(frozen=True)
class SpeedInputs:
    """What the speed model needs from the model and a recipe, independent of the accelerator."""

    spec: ModelSpec
    groups: tuple[TensorGroup, ...]
    weights: WeightBytes
    shape: Shape
    traffic: WeightTraffic

    @classmethod
    def build(cls, spec: ModelSpec, groups: list[TensorGroup], weights: WeightBytes) -> SpeedInputs:
        shape = shape_of(spec)
        return cls(spec, tuple(groups), weights, shape, weight_traffic(groups, weights, shape))


class ReplicaSpeed:
    """Decode step and prefill time of one replica (tp GPUs of one accelerator, or `pp` nodes of tp GPUs each joined
    by `link`) for one precision and engine."""

    def __init__(self, inputs: SpeedInputs, acc: Accelerator, precision: str, engine: EngineProfile, tp: int,
                 kv_dtype: str, *, pp: int = 1, link: Internode | None = None, act_bytes: float = 2.0):
        self.inputs, self.acc, self.precision, self.engine, self.tp, self.kv_dtype = (
            inputs, acc, precision, engine, tp, kv_dtype)
        self.pp, self.link, self.act_bytes = pp, link, act_bytes
        self.eff = engine.efficiency(acc.backend, precision)    # memoised on the profile
        self.dev, _ = device_view(acc, precision, tp, self.eff)
        self.kv_bytes = kv_dtype_bytes(kv_dtype)
        self._tpot: dict = {}

    def tpot(self, batch: int, context: int) -> float:
        """Seconds per decode step with `batch` sequences at `context` tokens of KV (= estimate_performance.tpot_s)."""
        key = (batch, context)
        if key not in self._tpot:
            i = self.inputs
            step = decode_step(i.shape, i.traffic, self.dev, self.eff, batch=batch, context=max(context, 1),
                               kv_bytes=self.kv_bytes).seconds / self.eff.decode_speed_factor
            self._tpot[key] = step + self._hops(batch)
        return self._tpot[key]

    def _hops(self, values: float) -> float:
        """The (pp - 1) stage boundaries a step crosses, each sending `values` activations of `hidden` width to the
        next node (pipeline_adjust's decode_hop / prefill_hop)."""
        if self.pp == 1:
            return 0.0
        return (self.pp - 1) * self.link.hop_s(values * self.inputs.spec.hidden * self.act_bytes)

    def prefill_s(self, batch: int, tokens: int) -> float:
        """Seconds to prefill `batch` prompts of `tokens` tokens (= estimate_performance.ttft_s at that batch)."""
        i = self.inputs
        return (prefill(i.shape, i.traffic, self.dev, self.eff, batch=batch, tokens=max(tokens, 1)).seconds
                / self.eff.prefill_speed_factor) + self._hops(batch * max(tokens, 1))

    def estimate(self, *, batch: int, input_len: int, context: int, output_len: int | None = None) -> PerfEstimate:
        """The real qfit.perf call, for the rows that are shown (error band, assumptions)."""
        i = self.inputs
        est = estimate_performance(i.spec, list(i.groups), i.weights, self.precision, self.acc, efficiency=self.eff,
                                   gpus=self.tp, batch=batch, input_len=input_len, context=context,
                                   kv_dtype=self.kv_dtype, output_len=output_len)
        if self.pp == 1:
            return est
        return pipeline_adjust(est, i.spec, self.pp, self.link, batch=batch, input_len=input_len,
                               act_bytes=self.act_bytes, output_len=output_len)

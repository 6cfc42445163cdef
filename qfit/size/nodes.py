"""Replica layouts over several nodes for `qfit size`: which (nodes x GPUs per node) shapes a search tries.

A replica over `nodes` machines runs tensor parallel within each node and one pipeline stage per node, as `qfit plan
--nodes N --gpus-per-node G` plans it (Deployment(pp=) memory, qfit.perf.pipeline hops). Only engines with multi-node
ranks run it (vLLM, SGLang: qfit.launch.layout.check_layout refuses the others for plan too).

Which shapes: those one node cannot form, i.e. more GPUs per replica than the node's largest tensor-parallel group.
A layout of the same GPUs on fewer nodes has a larger TP group and fewer hops, so for each replica size only the
fewest nodes is tried. The search tries them in order of size and stops at the size of the cheapest configuration
already found on that accelerator (rent and TCO are both proportional to GPUs, so a replica of at least that many GPUs
cannot rank above it).
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_NODES = 4      # a replica over more nodes is rare in practice and its hops are assumed, not calibrated
MAX_NODES = 64             # qfit.launch.layout.MAX_NODES: the most `qfit plan --nodes` takes


@dataclass(frozen=True)
class Layout:
    """One replica: `nodes` x `tp` GPUs (tensor parallel `tp` within a node, pipeline parallel `nodes` across)."""

    nodes: int
    tp: int

    @property
    def gpus(self) -> int:
        return self.nodes * self.tp

    @property
    def short(self) -> str:
        """'8' on one node; '(2x8)' = 2 nodes of 8 GPUs."""
        return str(self.tp) if self.nodes == 1 else f"({self.nodes}x{self.tp})"

    @property
    def text(self) -> str:
        if self.nodes == 1:
            return f"{self.tp} GPU(s)"
        return f"{self.nodes} nodes x {self.tp} GPUs, TP{self.tp}xPP{self.nodes}"

    @property
    def long(self) -> str:
        """'2 nodes x 8 GPUs (TP8 x PP2)', '1 node x 1 GPU (TP1)'."""
        nodes = f"{self.nodes} node{'s' if self.nodes > 1 else ''}"
        gpus = f"{self.tp} GPU{'s' if self.tp > 1 else ''}"
        return f"{nodes} x {gpus} (TP{self.tp}" + (f" x PP{self.nodes})" if self.nodes > 1 else ")")

    def to_dict(self) -> dict:
        return {"nodes_per_replica": self.nodes, "gpus_per_node": self.tp, "tensor_parallel": self.tp,
                "pipeline_parallel": self.nodes, "layout": self.long}


def node_layouts(tp_counts: list[int], max_nodes: int, max_gpus: int, layers: int) -> list[Layout]:
    """Multi-node replica layouts, smallest first: 2..max_nodes nodes (at most one per layer) of a valid per-node
    tensor-parallel size, more GPUs than one node's largest TP group and at most `max_gpus`; per size, fewest nodes."""
    if not tp_counts:
        return []
    one_node = max(tp_counts)
    best: dict[int, Layout] = {}
    for nodes in range(2, min(max_nodes, layers) + 1):
        for tp in tp_counts:
            gpus = nodes * tp
            if one_node < gpus <= max_gpus and gpus not in best:
                best[gpus] = Layout(nodes, tp)
    return [best[g] for g in sorted(best)]

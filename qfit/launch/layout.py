"""Node layouts: `--nodes N --gpus-per-node G` (and --gpus) -> (GPUs, pipeline stages), and the checks that a layout
can run: an engine with multi-node ranks, a per-node GPU count within one node's limit that splits the heads."""

from __future__ import annotations

from qfit.deployment import tp_problem
from qfit.engines import EngineProfile
from qfit.errors import QfitError
from qfit.hardware import Accelerator
from qfit.model.spec import ModelSpec

MAX_NODES = 64


def node_layout(gpus: int | None, nodes: int | None, gpus_per_node: int | None) -> tuple[int, int]:
    """(all GPUs, pipeline stages = nodes) from what the user gave; one node when neither node option is."""
    if nodes is None and gpus_per_node is None:
        return gpus or 1, 1
    nodes = nodes or 1
    if not 1 <= nodes <= MAX_NODES:
        raise QfitError(f"--nodes must be between 1 and {MAX_NODES}, got {nodes}")
    if gpus_per_node is None:
        if gpus is None or gpus % nodes:
            raise QfitError(f"--nodes {nodes} needs --gpus-per-node (or --gpus a multiple of {nodes})")
        gpus_per_node = gpus // nodes
    if gpus is not None and gpus != nodes * gpus_per_node:
        raise QfitError(f"--gpus {gpus} is not --nodes {nodes} x --gpus-per-node {gpus_per_node}; give "
                        f"--gpus {nodes * gpus_per_node} or leave --gpus out")
    return nodes * gpus_per_node, nodes


def tp_sizes(spec: ModelSpec, engine: EngineProfile, limit: int) -> list[int]:
    """The tensor-parallel sizes up to `limit` that split this model's heads."""
    return [t for t in range(1, limit + 1) if tp_problem(spec, engine, t) is None]


def check_layout(spec: ModelSpec, acc: Accelerator, engine: EngineProfile, gpus: int, pp: int) -> None:
    """Refuse, naming what would work, a multi-node layout the engine or the model cannot run."""
    if pp == 1:
        return
    if engine.multi_gpu != "tensor_parallel":
        raise QfitError(_no_ranks(engine))
    tp, limit = gpus // pp, acc.tp_limit(engine.policy.gpus_per_node)
    if tp > limit:
        raise QfitError(f"--gpus-per-node {tp}: one node holds at most {limit} x {acc.short_name} in one "
                        f"tensor-parallel group; use --gpus-per-node {limit} and more --nodes")
    problem = tp_problem(spec, engine, tp)
    if problem:
        ok = tp_sizes(spec, engine, limit)
        raise QfitError(f"{problem}: --gpus-per-node {' | '.join(map(str, ok))} split them")


def _no_ranks(engine: EngineProfile) -> str:
    if engine.name == "llama.cpp":
        from qfit.launch.tables import flag_table

        steps = flag_table("llama.cpp").multi_node["rpc"]["steps"]
        recipe = "; ".join(f"{s['where']}: {s['run']}" for s in steps)
        recipe = recipe.format(bind_ip="BIND_IP", host1="HOST1", host2="HOST2")
        return ("llama.cpp has no multi-node ranks to plan (--nodes): it reaches other machines' GPUs through its RPC "
                f"backend ({recipe}), whose layer split over the network qfit does not model; plan one node, or "
                "--engine vllm | sglang for --nodes > 1")
    return f"{engine.name} runs on one machine: --nodes > 1 needs --engine vllm | sglang"

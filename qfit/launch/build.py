"""LaunchPlan: the commands (one per node), environment and predicted KV figures that start an engine on a plan's
deployment, from the plan and the engine's launch flag table. The KV figures are the plan's own KVPool, not a copy
recomputed here, so the JSON's launch and kv_cache sections cannot disagree."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from qfit.deployment import tp_problem
from qfit.errors import QfitError
from qfit.launch.layout import tp_sizes
from qfit.launch.tables import TABLES, FlagTable, flag_table
from qfit.plan import Plan

PLACEHOLDER_NODE0 = "NODE0_IP"


@dataclass(frozen=True)
class NodeCommand:
    node: int
    where: str
    argv: tuple[str, ...]

    @property
    def shell(self) -> str:
        return shlex.join(self.argv)

    def to_dict(self) -> dict:
        return {"node": self.node, "where": self.where, "argv": list(self.argv), "shell": self.shell}


@dataclass(frozen=True)
class LaunchPlan:
    plan: Plan
    table: FlagTable
    commands: tuple[NodeCommand, ...]
    max_model_len: int
    max_sequences: int | None       # None: left at the engine's own limit (no --batch given)
    environment: dict = field(default_factory=dict)
    placeholders: dict = field(default_factory=dict)       # NAME -> what the user puts there
    defaults_left_out: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def engine(self) -> str:
        return self.table.engine

    @property
    def recipe(self) -> str | None:
        """The flag table's multi-node recipe the commands follow (vLLM: its own `mp` executor; SGLang: `nnodes`)."""
        if self.plan.pipeline == 1:
            return None
        return "mp" if self.engine == "vllm" else "nnodes"

    def to_dict(self) -> dict:
        kv = self.plan.kv_pool.to_dict()     # the very figures `kv_cache` shows
        return {"engine": self.engine, "engine_version": self.table.version, "flags_from": self.table.package,
                "nodes": self.plan.pipeline, "recipe": self.recipe, "max_model_len": self.max_model_len,
                "max_sequences": self.max_sequences, "kv_capacity_tokens": kv["capacity_tokens"],
                "max_concurrency": kv["max_concurrency"], "commands": [c.to_dict() for c in self.commands],
                "environment": dict(self.environment), "placeholders": dict(self.placeholders),
                "defaults_left_out": list(self.defaults_left_out), "notes": list(self.notes)}


@dataclass(frozen=True)
class ModelRef:
    ref: str                     # what the engine is given: hub id, path, or a placeholder
    quantization: str | None     # --quantization value when the engine quantizes at load
    placeholder: tuple[str, str] | None = None
    note: str | None = None


def model_ref(plan: Plan, gguf: bool = False) -> ModelRef:
    """The checkpoint the engine loads: the planned model when it ships in the planned precision; fp8 from a float
    checkpoint is quantized at load; any other precision needs its own checkpoint, which the user names."""
    m, want = plan.model, plan.precision.name
    name = m.location if m.kind in ("gguf", "local") else (m.spec.hub_id or m.location)
    native = m.native_precision
    if native == want and (gguf == (m.kind == "gguf")):
        return ModelRef(name, None)
    if not gguf and plan.precision.family == "fp8" and plan.precision.name == "fp8" and native in ("bf16", "fp16",
                                                                                                    "fp32"):
        return ModelRef(name, "fp8", note=f"{name} ships {native}: the engine quantizes it to fp8 at load")
    token = "MODEL_" + re.sub(r"[^A-Z0-9]+", "_", want.upper()).strip("_") + (".gguf" if gguf else "")
    how = "llama.cpp's llama-quantize writes one" if gguf else "`qfit quantize` writes GPTQ ones"
    return ModelRef(token, None, (token, f"a {want} checkpoint of {m.spec.hub_id or name} ({how})"))


def check_launchable(plan: Plan, engine: str) -> None:
    if plan.engine.name != engine:
        raise QfitError(f"the plan is for {plan.engine.name}; --launch {engine} needs a plan for {engine} "
                        f"(--engine {engine})")
    if plan.engine.note:
        raise QfitError(f"{plan.engine.note}: qfit emits launch commands for {', '.join(TABLES)} only")
    if plan.kv_pool is None:
        raise QfitError("the plan has no KV pool figures to launch with")
    problem = tp_problem(plan.model.spec, plan.engine, plan.tensor_parallel)
    if problem:
        ok = tp_sizes(plan.model.spec, plan.engine, plan.accelerator.tp_limit(plan.engine.policy.gpus_per_node))
        flag = "--gpus-per-node" if plan.pipeline > 1 else "--gpus"
        raise QfitError(f"nothing to launch: {problem}; {flag} {' | '.join(map(str, ok))} split them")
    if not plan.fits:
        hint = (f"it fits {plan.max_context:,} tokens at --batch {plan.batch} (--context {plan.max_context})"
                if plan.max_context else plan.suggestion or "see the plan's suggestion")
        raise QfitError(f"nothing to launch: the plan does not fit ({plan.reason}); {hint}")


def build_launch(plan: Plan, engine: str | None = None, *, n_gpu_layers: int | None = None,
                 n_cpu_moe: int | None = None, expert_parallel: bool | None = None, cap: bool = True) -> LaunchPlan:
    """The launch plan for `plan` under `engine` (default: the plan's). `n_gpu_layers` / `n_cpu_moe`: llama.cpp only
    (layers on the GPU, MoE layers whose experts stay in CPU memory). `expert_parallel` None: on for MoE models split
    over several GPUs when the experts divide evenly among them. `cap`: the plan's batch caps the engine's concurrency
    (vLLM/SGLang; False leaves their own limit, for a plan whose batch the user did not choose)."""
    from qfit.launch import engines

    name = engine or plan.engine.name
    check_launchable(plan, name)
    table = flag_table(name)
    if name != "llama.cpp" and (n_gpu_layers is not None or n_cpu_moe is not None):
        raise QfitError(f"layer and expert offload (-ngl, --n-cpu-moe) are llama.cpp flags; {name} has none "
                        f"({table.absent.get('n_cpu_moe', 'no per-layer offload')})")
    if name == "llama.cpp":
        off = plan.offload   # the plan's own GPU/host split (--ram), unless the caller chose one
        if off is not None and n_gpu_layers is None and n_cpu_moe is None:
            n_cpu_moe = off.cpu_expert_layers if off.kind == "moe_experts" else None
            n_gpu_layers = off.gpu_layers if off.kind == "layers" else None
        return engines.llama_cpp(plan, table, n_gpu_layers=n_gpu_layers, n_cpu_moe=n_cpu_moe)
    return engines.tensor_parallel(plan, table, expert_parallel, cap)

"""Per-engine argument lists: vLLM and SGLang (tensor parallel within a node, a pipeline stage per node) and
llama.cpp's llama-server (one machine, layers placed on its GPUs)."""

from __future__ import annotations

import shlex

from qfit.errors import QfitError
from qfit.launch.args import Args
from qfit.launch.build import PLACEHOLDER_NODE0, LaunchPlan, NodeCommand, model_ref
from qfit.launch.tables import FlagTable
from qfit.plan import Plan

# the planner's KV dtype -> each engine's --kv-cache-dtype value (None: the engine's "auto", the model's own dtype)
KV_VALUES = {
    "vllm": {"fp16": "float16", "bf16": "bfloat16", "fp8": "fp8", "fp8_e4m3": "fp8_e4m3", "fp8_e5m2": "fp8_e5m2"},
    "sglang": {"bf16": "bf16", "fp8": "fp8_e4m3", "fp8_e4m3": "fp8_e4m3", "fp8_e5m2": "fp8_e5m2"},
    "llama.cpp": {"fp32": "f32", "fp16": "f16", "bf16": "bf16", "q8_0": "q8_0", "q4_0": "q4_0"},
}


# A context past the model's config limit: the engines refuse it unless told otherwise by an environment variable
# (vLLM 0.33.0 vllm/config/model.py:2677 and vllm/envs.py:109; SGLang 0.5.23 sglang/srt/configs/model_config.py:1303).
LONG_CONTEXT_ENV = {"vllm": "VLLM_ALLOW_LONG_MAX_MODEL_LEN", "sglang": "SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN"}


def long_context(plan: Plan, engine: str) -> tuple[dict, list[str]]:
    limit = plan.model.spec.max_position_embeddings
    if not limit or plan.context <= limit:
        return {}, []
    var = LONG_CONTEXT_ENV[engine]
    return {var: "1"}, [f"{var}=1: the context {plan.context:,} exceeds max_position_embeddings {limit:,} in the "
                        f"model's config, which {engine} refuses otherwise (with rope scaling its own limit may be "
                        "higher and the variable unneeded); the model was not trained past its limit"]


def kv_value(plan: Plan, table: FlagTable) -> str | None:
    """None when the plan's KV dtype is what the engine picks by itself for these weights."""
    if plan.kv_dtype == plan.precision.kv_default and table.engine != "llama.cpp":
        return None
    value = KV_VALUES[table.engine].get(plan.kv_dtype)
    if value is None or value not in table.kv_cache_dtypes:
        able = sorted(k for k, v in KV_VALUES[table.engine].items() if v in table.kv_cache_dtypes)
        raise QfitError(f"{table.engine} {table.version} cannot store the KV cache as {plan.kv_dtype}; "
                        f"--kv-dtype {' | '.join(able)} (or leave it out)")
    return value


def _expert_parallel(plan: Plan, wanted: bool | None) -> tuple[bool, str | None]:
    moe, tp = plan.model.spec.moe, plan.tensor_parallel
    if not moe or tp == 1:
        if wanted:
            raise QfitError("expert parallel needs an MoE model on more than one GPU per node")
        return False, None
    if moe.num_experts % tp:
        if wanted:
            raise QfitError(f"{moe.num_experts} experts do not split evenly over {tp} GPUs; leave expert parallel off")
        return False, f"expert parallel off: {moe.num_experts} experts do not split evenly over {tp} GPUs"
    if wanted is False:
        return False, None
    return True, (f"expert parallel: each of the {tp} GPUs of a node holds {moe.num_experts // tp} whole experts "
                  "instead of a 1/{tp} slice of every expert (the same bytes per GPU, so the same memory plan)"
                  .replace("{tp}", str(tp)))


def tensor_parallel(plan: Plan, table: FlagTable, expert_parallel: bool | None, cap: bool = True) -> LaunchPlan:
    """vLLM / SGLang: the plan's TP, PP, context, memory fraction, KV dtype and concurrency as flags. `cap` False (the
    user gave no --batch): concurrency stays at the engine's own limit, since a plan at its default batch 1 is not a
    request to serve one sequence at a time; the engine then admits what its KV blocks hold."""
    ref = model_ref(plan)
    a = Args(table)
    ep, ep_note = _expert_parallel(plan, expert_parallel)
    a.add("tensor_parallel", plan.tensor_parallel)
    a.add("pipeline_parallel", plan.pipeline)
    if ep:
        a.add("expert_parallel", True if table.engine == "vllm" else plan.tensor_parallel)
    a.add("max_model_len", plan.context, always=True)
    a.add("memory_fraction", plan.engine.memory_fraction, always=True)
    a.add("kv_cache_dtype", kv_value(plan, table))
    a.add("quantization", ref.quantization)
    env, notes = long_context(plan, table.engine)
    if cap:
        a.add("max_sequences", plan.batch, always=True)
    else:
        kv = plan.kv_pool.to_dict()
        notes.append(f"{table.flag('max_sequences')} left at {table.engine}'s own limit (no --batch given): its KV cache "
                     f"holds {kv['max_concurrency']:g} requests of {plan.context:,} tokens at once, more when shorter; "
                     "pass --batch N to cap it")
    notes = [n for n in (ref.note, ep_note) if n] + notes
    if plan.model.spec.linear and table.has("state_cache_max_size"):
        if cap:
            a.add("state_cache_max_size", plan.batch, always=True)     # SGLang: state slots, one per running request
        notes.append(f"recurrent-state slots ({table.flag('state_cache_max_size')}) "
                     + ("capped at the planned concurrency" if cap else f"left at {table.engine}'s default"))
    elif plan.model.spec.linear:
        notes.append(f"{table.engine} keeps each sequence's recurrent state in its KV blocks; no cap to set")
    head = table.command.split()[:-1] + [ref.ref]     # "vllm serve MODEL" / "sglang serve --model-path MODEL"
    commands, placeholders, more = _nodes(plan, table, head + a.argv)
    if ref.placeholder:
        placeholders = {ref.placeholder[0]: ref.placeholder[1], **placeholders}
    return LaunchPlan(plan, table, commands, plan.context, plan.batch if cap else None, env, placeholders,
                      tuple(a.defaults), tuple(notes + more))


def _nodes(plan: Plan, table: FlagTable, base: list[str]):
    n = plan.pipeline
    if n == 1:
        return (NodeCommand(0, "this machine", tuple(base)),), {}, []
    if table.engine == "vllm":
        return _vllm_nodes(table, base, n)
    addr = f"{PLACEHOLDER_NODE0}:PORT"
    cmds = tuple(NodeCommand(i, "node 0 (serves the API)" if i == 0 else f"node {i}",
                             tuple(base + [table.flag("nnodes"), str(n), table.flag("node_rank"), str(i),
                                           table.flag("dist_init_addr"), addr])) for i in range(n))
    return cmds, {PLACEHOLDER_NODE0: "node 0's address, reachable from every node",
                  "PORT": "a free TCP port on node 0, the same in every command"}, [
        "the same command on every node, only --node-rank differs; node 0 serves the API"]


def _vllm_nodes(table: FlagTable, base: list[str], n: int):
    """vLLM's own multiprocessing executor across nodes (no Ray): node 0 serves, the others run headless workers."""
    common = [table.flag("nnodes"), str(n), table.flag("master_addr"), PLACEHOLDER_NODE0]
    cmds = tuple(NodeCommand(i, "node 0 (serves the API)" if i == 0 else f"node {i} (headless worker)",
                             tuple(base + common + [table.flag("node_rank"), str(i)]
                                   + ([table.flag("headless")] if i else []))) for i in range(n))
    ray = table.multi_node["ray"]["steps"]
    alt = "; ".join(f"{s['where']}: {s['run']}" for s in ray[:2])
    serve = shlex.join(base + [table.flag("executor_backend"), "ray"])
    return cmds, {PLACEHOLDER_NODE0: "node 0's address, reachable from every node"}, [
        f"--master-port left at {table.default('master_port')} (vLLM's default); open it on node 0",
        f"or with Ray instead of vLLM's own executor: {alt.replace('{head_ip}', PLACEHOLDER_NODE0)}; "
        f"then on the head node: {serve}"]


def llama_cpp(plan: Plan, table: FlagTable, *, n_gpu_layers: int | None, n_cpu_moe: int | None) -> LaunchPlan:
    """llama-server: -c is the KV context all -np slots share, so the plan's context x its concurrency."""
    spec = plan.model.spec
    for value, what in ((n_gpu_layers, "n_gpu_layers"), (n_cpu_moe, "n_cpu_moe")):
        if value is not None and not 0 <= value <= spec.layers:
            raise QfitError(f"{what} must be between 0 and the model's {spec.layers} layers, got {value}")
    if n_cpu_moe and not spec.moe:
        raise QfitError(f"{spec.name} is dense: --n-cpu-moe keeps MoE experts on the CPU; use n_gpu_layers instead")
    ref = model_ref(plan, gguf=True)
    a = Args(table)
    a.add("max_model_len", plan.context * plan.batch, always=True)
    a.add("parallel_slots", plan.batch, always=True)
    a.add("gpu_layers", "all" if n_gpu_layers is None else n_gpu_layers, always=True)
    kv = kv_value(plan, table)
    a.add("kv_cache_dtype", kv)
    a.add("kv_cache_dtype_v", kv)
    a.add("n_cpu_moe", n_cpu_moe or None)
    notes = [f"-c {plan.context * plan.batch} = {plan.context:,} tokens x {plan.batch} slot(s): llama-server splits "
             "its context evenly over the -np slots"]
    off = plan.offload
    if off is not None and (n_cpu_moe or 0) == off.cpu_expert_layers and n_gpu_layers in (None, off.gpu_layers):
        notes.append(f"{off.flag}: the plan's own GPU/host split (--ram); the KV figures are for that split")
    elif n_gpu_layers is not None or n_cpu_moe:
        notes.append("layer/expert offload given: the KV figures are the plan's, which keeps every layer on the GPUs")
    head = table.command.split()[:-1] + [ref.ref]
    placeholders = {ref.placeholder[0]: ref.placeholder[1]} if ref.placeholder else {}
    return LaunchPlan(plan, table, (NodeCommand(0, "this machine", tuple(head + a.argv)),), plan.context,
                      plan.batch, {}, placeholders, tuple(a.defaults), tuple(notes))

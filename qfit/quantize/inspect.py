"""`qfit inspect`: check a GPTQ checkpoint from its config and safetensors headers only (no tensor data is read).

Per quantized module the four v1 tensors must agree with the config (see pack.py for the layout):
qweight int32 [in*bits/32, out], qzeros int32 [G, out*bits/32], scales fp16 [G, out], g_idx int32 [in], where
G = in/group_size (1 for group_size -1). vLLM kernel rules are those of vLLM's gptq_marlin
(vllm/model_executor/layers/quantization/utils/marlin_utils.py, checked against v0.11): quant types uint4b8/uint8b128
(symmetric 4- or 8-bit), group size in {-1, 32, 64, 128}, out_features % 64 == 0, in_features % 128 == 0, and
in_features % group_size == 0. Modules failing them make vLLM fall back to its slower plain GPTQ kernel.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from qfit.errors import QfitError
from qfit.jsonfile import read_json_object
from qfit.model.checkpoint_bytes import tied_embeddings, weight_bytes
from qfit.model.headers import read_header, shard_files

MARLIN_BITS = (4, 8)
MARLIN_GROUPS = (-1, 32, 64, 128)
MARLIN_MIN_N = 64    # GPTQ_MARLIN_MIN_THREAD_N
MARLIN_MIN_K = 128   # GPTQ_MARLIN_MIN_THREAD_K


@dataclass
class ModuleCheck:
    name: str
    in_features: int | None
    out_features: int | None
    problems: list[str] = field(default_factory=list)
    marlin_failures: list[str] = field(default_factory=list)


@dataclass
class InspectResult:
    path: str
    quant_method: str | None
    format: str | None
    bits: int | None
    group_size: int | None
    desc_act: bool | None
    sym: bool | None
    config_problems: list[str]
    modules: list[ModuleCheck]
    tensor_bytes: int
    file_bytes: int
    quantized_params: int
    bits_per_weight: float | None
    marlin_compatible: bool
    marlin_reasons: list[str]
    loaders: str = "transformers (optimum/GPTQModel backend), GPTQModel and vLLM read this layout"

    @property
    def ok(self) -> bool:
        return not self.config_problems and not any(m.problems for m in self.modules)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ok"] = self.ok
        d["modules_checked"] = len(self.modules)
        # only modules with layout problems are listed; Marlin shape failures are summarised in marlin_reasons
        d["modules"] = [asdict(m) for m in self.modules if m.problems]
        return d


def _shape_dtype(header: dict, name: str) -> tuple[list[int], str] | None:
    entry = header.get(name)
    return (entry["shape"], entry["dtype"]) if entry else None


def check_module(header: dict, prefix: str, bits: int, group_size: int) -> ModuleCheck:
    """Pure: layout checks for one module's qweight/qzeros/scales/g_idx against bits and group size."""
    got = {k: _shape_dtype(header, f"{prefix}.{k}") for k in ("qweight", "qzeros", "scales", "g_idx")}
    missing = [k for k, v in got.items() if v is None]
    if missing:
        return ModuleCheck(prefix, None, None, [f"missing {', '.join(missing)}"])
    in_f = got["g_idx"][0][0] if got["g_idx"][0] else None
    out_f = got["scales"][0][-1] if got["scales"][0] else None
    check = ModuleCheck(prefix, in_f, out_f)
    p = check.problems
    if not in_f or not out_f:
        p.append("cannot infer features from g_idx/scales")
        return check
    groups = 1 if group_size == -1 else -(-in_f // group_size)
    expect = {"qweight": ([in_f * bits // 32, out_f], ("I32",)), "qzeros": ([groups, out_f * bits // 32], ("I32",)),
              "scales": ([groups, out_f], ("F16", "BF16")), "g_idx": ([in_f], ("I32",))}
    for k, (shape, dtypes) in expect.items():
        shp, dt = got[k]
        if dt not in dtypes:
            p.append(f"{k} dtype {dt}, expected {'/'.join(dtypes)}")
        if list(shp) != shape:
            p.append(f"{k} shape {list(shp)}, expected {shape} for {bits}-bit g{group_size}")
    if in_f * bits % 32:
        p.append(f"in_features {in_f} x {bits} bits is not a whole number of int32 words")
    check.marlin_failures = marlin_shape_failures(in_f, out_f, group_size)
    return check


def marlin_shape_failures(in_f: int, out_f: int, group_size: int) -> list[str]:
    fails = []
    if out_f % MARLIN_MIN_N:
        fails.append(f"out_features {out_f} not divisible by {MARLIN_MIN_N}")
    if in_f % MARLIN_MIN_K:
        fails.append(f"in_features {in_f} not divisible by {MARLIN_MIN_K}")
    if group_size != -1 and in_f % group_size:
        fails.append(f"in_features {in_f} not divisible by group size {group_size}")
    return fails


def marlin_config_failures(bits, group_size, sym) -> list[str]:
    fails = []
    if bits not in MARLIN_BITS:
        fails.append(f"Marlin needs 4 or 8 bits, checkpoint has {bits}")
    if group_size not in MARLIN_GROUPS:
        fails.append(f"Marlin needs group size in {{-1, 32, 64, 128}}, checkpoint has {group_size}")
    if sym is not True:
        fails.append("Marlin needs sym=true (symmetric quantization); checkpoint is asymmetric")
    return fails


def config_problems(q: dict) -> list[str]:
    from qfit.precision import GPTQ_BITS, GROUP_SIZES

    probs = []
    if q.get("quant_method") != "gptq":
        probs.append(f"quant_method is {q.get('quant_method')!r}, expected 'gptq'")
    fmt = q.get("checkpoint_format", q.get("format"))
    if fmt != "gptq":
        probs.append(f"checkpoint_format is {fmt!r}: only v1 'gptq' is the format transformers and vLLM read unchanged")
    if q.get("format") not in (None, fmt):
        probs.append(f"format {q.get('format')!r} disagrees with checkpoint_format {fmt!r}")
    if q.get("bits") not in GPTQ_BITS:
        probs.append(f"bits {q.get('bits')!r} not in {'/'.join(map(str, GPTQ_BITS))}")
    if q.get("group_size") not in GROUP_SIZES["gptq"]:
        probs.append(f"group_size {q.get('group_size')!r} is not one of {', '.join(map(str, GROUP_SIZES['gptq']))}")
    for key in ("desc_act", "sym"):
        if not isinstance(q.get(key), bool):
            probs.append(f"{key} missing or not a boolean")
    return probs


def _load_config(ckpt: Path) -> dict:
    if not ckpt.exists():
        raise QfitError(f"checkpoint {ckpt} does not exist")
    if not ckpt.is_dir():
        raise QfitError(f"checkpoint {ckpt} is not a folder")
    cfg_path = ckpt / "config.json"
    if not cfg_path.exists():
        raise QfitError(f"{ckpt} has no config.json")
    return read_json_object(cfg_path, "config")


def inspect_checkpoint(ckpt: Path) -> InspectResult:
    ckpt = Path(ckpt)
    config = _load_config(ckpt)
    q = config.get("quantization_config")
    if not isinstance(q, dict):
        qc_file = ckpt / "quantize_config.json"
        q = read_json_object(qc_file, "quantize config") if qc_file.is_file() else None
    if not isinstance(q, dict):
        raise QfitError(f"{ckpt} is not a quantized checkpoint: config.json has no quantization_config")
    files = shard_files(ckpt)
    if not files:
        raise QfitError(f"{ckpt} has no .safetensors files")
    header: dict = {}
    file_problems: list[str] = []
    for f in files:
        header.update(read_header(f, file_problems))
    bits, group = q.get("bits"), q.get("group_size")
    probs = config_problems(q)
    modules: list[ModuleCheck] = []
    if not probs:        # a config that reads: check each module against it (file-level problems do not stop that)
        prefixes = sorted({k[: -len(".qweight")] for k in header if k.endswith(".qweight")})
        if not prefixes:
            probs.append("no .qweight tensors found")
        stored = _per_module(q, header)
        modules = [check_module(header, p, *stored(p)) for p in prefixes]
    tensor_bytes = weight_bytes(header, tied_embeddings(config))   # counted as `qfit profile` counts them
    qparams = sum(m.in_features * m.out_features for m in modules if m.in_features and m.out_features)
    qbytes = sum(_nbytes(header[f"{m.name}.{k}"]) for m in modules if not m.problems
                 for k in ("qweight", "qzeros", "scales", "g_idx"))
    probs += file_problems
    reasons = marlin_config_failures(bits, group, q.get("sym"))
    shape_fails = [m for m in modules if m.marlin_failures]
    if shape_fails:
        first = shape_fails[0]
        reasons.append(f"{len(shape_fails)} of {len(modules)} modules fail Marlin shape rules, e.g. {first.name}: "
                       f"{first.marlin_failures[0]}")
    return InspectResult(
        path=str(ckpt), quant_method=q.get("quant_method"), format=q.get("checkpoint_format", q.get("format")),
        bits=bits, group_size=group, desc_act=q.get("desc_act"), sym=q.get("sym"), config_problems=probs,
        modules=modules, tensor_bytes=tensor_bytes, file_bytes=sum(f.stat().st_size for f in files),
        quantized_params=qparams, bits_per_weight=(8 * qbytes / qparams) if qparams else None,
        marlin_compatible=not reasons and not probs, marlin_reasons=reasons, loaders=_loaders(q))


def _loaders(q: dict) -> str:
    """Which loaders read the checkpoint as written: per-module bits (GPTQModel `dynamic`) are read by GPTQModel and
    vLLM; transformers' GPTQ loader ignores them and re-initialises the modules whose shapes differ."""
    if q.get("dynamic"):
        # vLLM 0.33 and SGLang 0.5 (CUDA) run GPTQ on Marlin only: 4/8-bit, sym (profiles/quantize/engine_widths.yaml)
        widths = {q.get("bits")} | {r.get("bits", q.get("bits")) for k, r in q["dynamic"].items()
                                     if k.startswith("+:") and isinstance(r, dict)}
        engines = ("vLLM and SGLang read them too" if widths <= {4, 8} and q.get("sym", True) else
                   f"vLLM 0.33 and SGLang 0.5 (CUDA) do not: they load 4/8-bit symmetric GPTQ only, this has "
                   f"{'/'.join(str(b) for b in sorted(w for w in widths if w))}-bit modules")
        return (f"per-module bits (GPTQModel `dynamic`): GPTQModel reads them, {engines}; transformers' GPTQ loader "
                "does not (it re-initialises those modules with random weights): qfit profile loads it with GPTQModel")
    return "transformers (optimum/GPTQModel backend), GPTQModel and vLLM read this layout"


def _per_module(q: dict, header: dict):
    """module prefix -> (bits, group size) it should be stored at: the recipe's, module by module (keep/overrides
    written by qfit). A foreign `dynamic` rule set is not interpreted: each module's width is read off its qweight rows
    (in_features x bits / 32) and its group size off its scales."""
    from qfit.precision import recipe_from_config

    recipe = recipe_from_config(q)
    if not q.get("dynamic") or recipe.overrides or recipe.keep:
        return lambda prefix: recipe.for_module(prefix) or (int(recipe.bits), recipe.group_size)

    def read_off(prefix: str) -> tuple[int, int]:
        rows, in_f = header[f"{prefix}.qweight"]["shape"][0], header[f"{prefix}.g_idx"]["shape"][0]
        groups = header[f"{prefix}.scales"]["shape"][0]
        return rows * 32 // max(in_f, 1), -1 if groups == 1 else -(-in_f // max(groups, 1))
    return read_off


def _nbytes(entry: dict) -> int:
    start, end = entry.get("data_offsets", (0, 0))
    return int(end) - int(start)

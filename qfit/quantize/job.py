"""What a `qfit quantize` run is asked to do, checked against the model before anything heavy is loaded.

QuantizeJob = the Recipe to write (qfit.precision: format, bits, group size, sym, act order, keep, overrides) plus how
the codes are chosen (GPTQ with calibration text, or round-to-nearest). ModelLayout is what the float checkpoint's
safetensors headers say about the linears the recipe will quantize.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from qfit.errors import QfitError
from qfit.model.tensors import TensorGroup
from qfit.precision import GROUP_SIZES, Override, Recipe, gptq_recipe, weight_bytes
from qfit.quantize import checkpoint as ck
from qfit.quantize.calib import DEFAULT_CALIB, calibration_parts

METHODS = ("gptq", "rtn")

# Calibration size when --nsamples/--seqlen are "auto" (the default), by the device the codes are computed on.
# GPU: the GPTQ paper's setting (Frantar et al. 2022, arXiv:2210.17323, section 4: 128 random 2048-token segments).
# CPU: chosen so SmolLM2-135M quantizes in a few minutes on a 2-core machine; GPTQModel's per-layer and per-module
# overheads dominate there (profiles/quantize/time.yaml), so fewer, shorter windows buy most of the time back.
# The cost is a noisier Hessian estimate: the run prints a one-line warning whenever calibration is small.
AUTO_CALIBRATION = {"cuda": (128, 2048), "cpu": (8, 256)}
CALIBRATION_WHY = {
    "auto: gpu default": "the GPTQ paper's setting",
    "auto: cpu default": "GPTQModel on a CPU takes ~0.08 s of one core per calibration token for a 135M model here "
                         "(profiles/quantize/time.yaml); 2,048 tokens keep a small model to minutes and still exceed "
                         "its widest layer input, so the Hessians can be full rank",
}
# Calibration likely to overfit (benchmarks/results/gptq_vs_rtn.md, issue 17): a single text source (GPTQ on XSum alone
# lost to round-to-nearest on held-out Python docs: 26.41 vs 17.49), or fewer tokens than the smallest calibration
# measured to beat RTN on all three held-out domains (8 x 256 mixed, with act-order): the run says so before starting.
MIN_CALIBRATION_TOKENS = 2048
DEFAULT_DAMP = 0.01
# GPTQ's clipping search (GPTQModel `mse`; the GPTQ reference code's Quantizer(mse=True, norm=2.4, grid=100,
# maxshrink=0.8)): per group, the scale of the shrunk range (80 steps of 1 %) with the least |w - q(w)|^2.4 error
# instead of the min-max range. At 3-bit it took GPTQ from losing to RTN on encyclopedia text (180.1 vs 145.3) to
# 47.1/57.7/23.9 vs 140.6/145.3/92.5 on news/encyclopedia/Python docs (benchmarks/results/gptq_vs_rtn.md), for about
# twice the CPU time of the run (profiles/quantize/time.yaml `clip_search_ns_per_weight_step`).
CLIP_SEARCH_NORM = 2.4
CLIP_SEARCH_STEPS = 80
# Held-out perplexity after the run (qfit.quantize.heldout): 512-token windows per domain; each costs one forward
# pass of the float-sized model per model scored (float, checkpoint, and RTN with --compare-rtn).
HELDOUT_WINDOWS = 1
MAX_HELDOUT_WINDOWS = 32   # the eval split of the smallest built-in domain (pydoc) holds more than this


def parse_override(text: str) -> Override:
    """'mlp.down_proj=8' or 'self_attn.*=8:64' (pattern=bits[:group size])."""
    pattern, sep, spec = str(text).partition("=")
    bits, _, group = spec.partition(":")
    try:
        return Override(pattern.strip(), int(bits), int(group) if group else None)
    except ValueError:
        raise QfitError(f"--override {text!r}: expected PATTERN=BITS or PATTERN=BITS:GROUP, e.g. mlp.down_proj=8") \
            from None


def parse_count(flag: str, value) -> int | None:
    """--nsamples/--seqlen: a positive whole number, or "auto" (None: chosen by device, see AUTO_CALIBRATION)."""
    if value is None or str(value).strip().lower() == "auto":
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        raise QfitError(f"{flag} {value!r}: expected a whole number or auto") from None


@dataclass(frozen=True)
class QuantizeJob:
    """nsamples/seqlen None mean "auto": `for_device` fills them in once the device is known."""

    recipe: Recipe
    method: str = "gptq"
    damp: float = DEFAULT_DAMP
    nsamples: int | None = None
    seqlen: int | None = None
    calib: str = DEFAULT_CALIB
    calibration_size: str = "given"      # "given", or "auto: cpu default"/"auto: gpu default" from for_device
    heldout_windows: int = HELDOUT_WINDOWS   # per domain, for the report's held-out perplexity (0: skip it)
    compare_rtn: bool = False            # also score the RTN checkpoint of the same recipe (GPTQ runs)
    clip_search: bool = False            # GPTQ's per-group clipping search (CLIP_SEARCH_NORM); on by default for gptq
    act_order: bool = False              # GPTQ columns in activation order with static groups (see from_flags)
    group_choice: str = "given"          # "given", "auto" (until the layout is known), or why auto chose its size

    @classmethod
    def from_flags(cls, *, bits: int = 4, group_size: int | None = 128, desc_act: bool | None = None, sym: bool = True,
                   keep: tuple[str, ...] = (), overrides: tuple[Override, ...] = (), method: str = "gptq",
                   damp: float = DEFAULT_DAMP, nsamples: int | str | None = None,
                   seqlen: int | str | None = None, calib: str = DEFAULT_CALIB,
                   heldout_windows: int = HELDOUT_WINDOWS, compare_rtn: bool = False,
                   clip_search: bool | None = None) -> QuantizeJob:
        # act-order on by default for GPTQ: with it, 8 x 256 mixed tokens beat RTN on all three held-out domains at
        # 4-bit; without it they lost on two (benchmarks/results/gptq_vs_rtn.md). RTN has no activation order.
        # It is *static* act-order: columns are solved in activation order but each group's scale is fixed from the
        # contiguous columns i // group_size (GPTQModel static_groups), so g_idx stays trivial and the checkpoint is
        # desc_act=false to its readers: vLLM 0.33 refuses desc_act=true with groups ("group activation ordering is
        # no longer supported. Use a checkpoint with static activation ordering"; quantization/utils/gptq_utils.py).
        act_order = method == "gptq" if desc_act is None else desc_act
        if act_order and method == "rtn":
            raise QfitError("--desc-act needs calibration (activation order): use --method gptq")
        clip_search = method == "gptq" if clip_search is None else clip_search
        auto = group_size is None
        if not auto and group_size not in GROUP_SIZES["gptq"]:
            raise QfitError(f"--group-size {group_size} is not supported: choose one of "
                            f"{', '.join(map(str, GROUP_SIZES['gptq']))} (-1 = one group per column)")
        recipe = gptq_recipe(bits, AUTO_GROUPS[0] if auto else group_size, sym=sym, desc_act=False,
                             keep=tuple(keep), overrides=tuple(overrides))
        job = cls(recipe, method, damp, parse_count("--nsamples", nsamples), parse_count("--seqlen", seqlen), calib,
                  group_choice="auto" if auto else "given", heldout_windows=heldout_windows, compare_rtn=compare_rtn,
                  clip_search=clip_search, act_order=act_order)
        job.validate()
        return job

    def validate(self) -> None:
        if self.recipe.family != "gptq":
            raise QfitError(f"qfit quantize writes GPTQ checkpoints, not {self.recipe.name}")
        if self.method not in METHODS:
            raise QfitError(f"--method {self.method!r}: choose gptq or rtn")
        if not 0 < self.damp < 1:
            raise QfitError(f"--damp {self.damp} must be between 0 and 1 (fraction of the Hessian's mean diagonal)")
        if (self.nsamples is not None and not 1 <= self.nsamples <= 1_000_000) or \
                (self.seqlen is not None and not 16 <= self.seqlen <= 1_048_576):
            raise QfitError("--nsamples must be between 1 and 1,000,000 and --seqlen between 16 and 1,048,576 "
                            "(or auto)")
        if not 0 <= self.heldout_windows <= MAX_HELDOUT_WINDOWS:
            raise QfitError(f"--heldout {self.heldout_windows}: windows per domain must be 0 (skip) to "
                            f"{MAX_HELDOUT_WINDOWS}")
        if self.compare_rtn and not self.heldout_windows:
            raise QfitError("--compare-rtn needs held-out windows (--heldout N, N >= 1)")
        if self.method == "rtn" and self.recipe.desc_act:
            raise QfitError("--desc-act needs calibration (activation order): use --method gptq")
        if self.method == "rtn" and self.clip_search:
            raise QfitError("--clip-search is part of GPTQ's quantizer here: use --method gptq (RTN rounds the "
                            "min-max range)")

    @property
    def mse_norm(self) -> float:
        """GPTQModel's `mse` setting: the clipping search's error norm, 0 for none."""
        return CLIP_SEARCH_NORM if self.clip_search else 0.0

    def for_device(self, device: str) -> QuantizeJob:
        """The job with "auto" calibration sizes replaced by the device's defaults (AUTO_CALIBRATION)."""
        if self.nsamples is not None and self.seqlen is not None:
            return self
        kind = "cuda" if device.startswith("cuda") else "cpu"
        n, s = AUTO_CALIBRATION[kind]
        return replace(self, nsamples=self.nsamples or n, seqlen=self.seqlen or s,
                       calibration_size=f"auto: {'gpu' if kind == 'cuda' else 'cpu'} default")  # a CALIBRATION_WHY key

    def overfit_warning(self) -> str | None:
        """One line when GPTQ is likely to fit its calibration text rather than the model's use: a single text source,
        or fewer tokens than MIN_CALIBRATION_TOKENS (None for RTN, or a mix of sources with enough tokens)."""
        if self.method != "gptq" or self.nsamples is None or self.seqlen is None:
            return None
        parts = calibration_parts(self.calib)
        tokens = self.nsamples * self.seqlen
        why = ([f"one text source ({parts[0]})"] if len(parts) == 1 else []) + (
            [f"{self.nsamples} x {self.seqlen} = {tokens:,} tokens, below {MIN_CALIBRATION_TOKENS:,}"]
            if tokens < MIN_CALIBRATION_TOKENS else [])
        if not why:
            return None
        return (f"warning: calibration likely to overfit ({'; '.join(why)}): GPTQ may then lose to --method rtn on "
                f"other text (measured on SmolLM2: benchmarks/results/gptq_vs_rtn.md); use several sources "
                f"(--calib {DEFAULT_CALIB}, or {DEFAULT_CALIB},FILE to add yours) and >= {MIN_CALIBRATION_TOKENS:,} "
                f"tokens if time allows; the report's held-out perplexity shows the outcome")

    def to_dict(self) -> dict:
        r = self.recipe
        return {"precision": r.name, "bits": int(r.bits), "group_size": r.group_size, "desc_act": r.desc_act,
                "sym": r.sym, "keep": list(r.keep), "overrides": r.to_dict()["overrides"], "damp": self.damp,
                "method": self.method, "nsamples": self.nsamples, "seqlen": self.seqlen, "calib": self.calib,
                "calibration_size": self.calibration_size, "group_size_choice": self.group_choice,
                "heldout_windows": self.heldout_windows, "compare_rtn": self.compare_rtn,
                "clip_search": {"norm": CLIP_SEARCH_NORM, "steps": CLIP_SEARCH_STEPS} if self.clip_search else None,
                "act_order": "static" if self.act_order else None}


@dataclass(frozen=True)
class ModelLayout:
    """What the safetensors headers say: float bytes, linear shapes (out, in) of the quantizable modules."""

    float_bytes: int
    float_dtype_bytes: int
    linears: dict[str, tuple[int, int]]
    num_layers: int
    hidden: int

    def linear_groups(self) -> list[TensorGroup]:
        # The role only tells a format whether it quantizes a tensor: GPTQ quantizes every block linear alike.
        return [TensorGroup(name, "expert_up" if ".experts." in name else "mlp_up", out_f, in_f, 1, 1)
                for name, (out_f, in_f) in self.linears.items()]

    def packed_bytes(self, recipe: Recipe) -> int:
        """Bytes the quantized linears take in `recipe` (qfit.precision's formula, as the planner counts them)."""
        return weight_bytes(self.linear_groups(), recipe).total


def read_layout(model_dir: Path, spec) -> ModelLayout:
    """The quantizable linears of a float folder from its headers; `spec` is the folder's validated ModelSpec."""
    from qfit.model.headers import DTYPE_BYTES, read_header, shard_files

    linears, total, widths = {}, 0, []
    for shard in shard_files(model_dir):
        for name, entry in read_header(shard).items():
            start, end = entry["data_offsets"]
            total += end - start
            widths.append(DTYPE_BYTES.get(entry["dtype"], 4))
            if ck.is_quantizable(name, tuple(entry["shape"])):
                linears[name[: -len(".weight")]] = tuple(entry["shape"])
    if not linears:
        raise QfitError(f"{model_dir}: no quantizable linear layers found (expected *.layers.N.*.weight tensors)")
    layers = {ck.layer_index(n) for n in linears}
    return ModelLayout(float_bytes=total, float_dtype_bytes=max(set(widths), key=widths.count), linears=linears,
                       num_layers=len(layers), hidden=spec.hidden)


# --group-size auto: the first of these that divides every quantized width. 128 is the GPTQ paper's and the hub's
# common choice; 64 and 32 are the other sizes vLLM's Marlin kernels take, so the result stays fast to serve.
AUTO_GROUPS = (128, 64, 32)


def resolve_group(job: QuantizeJob, layout: ModelLayout) -> QuantizeJob:
    """--group-size auto made concrete for this model: 128 where it divides every quantized layer's input width,
    else the largest Marlin size that does, else -1 (one group per column); the reason is kept for the report."""
    if job.group_choice != "auto":
        return job
    widths = sorted({layout.linears[n][1] for n in layout.linears if job.recipe.for_module(n) is not None})
    group = next((g for g in AUTO_GROUPS if all(w % g == 0 for w in widths)), -1)
    why = (f"group size auto: {group}" + ("" if group == AUTO_GROUPS[0] else
           f" ({AUTO_GROUPS[0]} does not divide the input widths {', '.join(map(str, widths))}; {group} is the "
           "largest size vLLM's Marlin kernels take that does)"))
    r = job.recipe
    recipe = gptq_recipe(int(r.bits), group, sym=r.sym, desc_act=r.desc_act, keep=r.keep, overrides=r.overrides)
    return replace(job, recipe=recipe, group_choice=why)


def dividing_group_sizes(widths) -> list[int]:
    """The supported group sizes that divide every width in `widths`, and -1 (one group per column: always)."""
    return [g for g in GROUP_SIZES["gptq"] if g > 0 and all(w % g == 0 for w in widths)] + [-1]


def check_shapes(layout: ModelLayout, recipe: Recipe) -> None:
    """Refuse recipes the v1 layout cannot store, naming the module and the group sizes that would work (those that
    divide the input width of every module the recipe quantizes; modules --keep leaves 16-bit do not count)."""
    stored = {name: recipe.for_module(name) for name in layout.linears}
    widths = sorted({layout.linears[n][1] for n, s in stored.items() if s is not None})
    for name, (out_f, in_f) in layout.linears.items():
        if stored[name] is None:
            continue   # kept 16-bit
        bits, group = stored[name]
        if group != -1 and in_f % group:
            ok = ", ".join(map(str, dividing_group_sizes(widths)))
            raise QfitError(f"--group-size {group} does not divide in_features {in_f} of {name}; group sizes that "
                            f"divide every quantized layer (input widths {', '.join(map(str, widths))}): {ok}")
        if in_f % 32 or (out_f * bits) % 32:
            raise QfitError(f"{name} ({in_f} in, {out_f} out) cannot be packed into int32 words at {bits} bits")

"""What a `qfit quantize` run is asked to do, checked against the model before anything heavy is loaded.

QuantizeJob = the Recipe to write (qfit.precision: format, bits, group size, sym, act order, keep, overrides) plus how
the codes are chosen (GPTQ with calibration text, or round-to-nearest). ModelLayout is what the float checkpoint's
safetensors headers say about the linears the recipe will quantize.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from qfit.errors import QfitError
from qfit.model.tensors import TensorGroup
from qfit.precision import GROUP_SIZES, Override, Recipe, gptq_recipe, weight_bytes
from qfit.quantize import checkpoint as ck

METHODS = ("gptq", "rtn")


def parse_override(text: str) -> Override:
    """'mlp.down_proj=8' or 'self_attn.*=8:64' (pattern=bits[:group size])."""
    pattern, sep, spec = str(text).partition("=")
    bits, _, group = spec.partition(":")
    try:
        return Override(pattern.strip(), int(bits), int(group) if group else None)
    except ValueError:
        raise QfitError(f"--override {text!r}: expected PATTERN=BITS or PATTERN=BITS:GROUP, e.g. mlp.down_proj=8") \
            from None


@dataclass(frozen=True)
class QuantizeJob:
    recipe: Recipe
    method: str = "gptq"
    damp: float = 0.01
    nsamples: int = 128
    seqlen: int = 2048
    calib: str = "xsum"

    @classmethod
    def from_flags(cls, *, bits: int = 4, group_size: int = 128, desc_act: bool = False, sym: bool = True,
                   keep: tuple[str, ...] = (), overrides: tuple[Override, ...] = (), method: str = "gptq",
                   damp: float = 0.01, nsamples: int = 128, seqlen: int = 2048, calib: str = "xsum") -> QuantizeJob:
        if group_size not in GROUP_SIZES["gptq"]:
            raise QfitError(f"--group-size {group_size} is not supported: choose one of "
                            f"{', '.join(map(str, GROUP_SIZES['gptq']))} (-1 = one group per column)")
        recipe = gptq_recipe(bits, group_size, sym=sym, desc_act=desc_act, keep=tuple(keep),
                             overrides=tuple(overrides))
        job = cls(recipe, method, damp, nsamples, seqlen, calib)
        job.validate()
        return job

    def validate(self) -> None:
        if self.recipe.family != "gptq":
            raise QfitError(f"qfit quantize writes GPTQ checkpoints, not {self.recipe.name}")
        if self.method not in METHODS:
            raise QfitError(f"--method {self.method!r}: choose gptq or rtn")
        if not 0 < self.damp < 1:
            raise QfitError(f"--damp {self.damp} must be between 0 and 1 (fraction of the Hessian's mean diagonal)")
        if self.nsamples < 1 or self.seqlen < 16:
            raise QfitError("--nsamples must be >= 1 and --seqlen >= 16")
        if self.method == "rtn" and self.recipe.desc_act:
            raise QfitError("--desc-act needs calibration (activation order): use --method gptq")

    def to_dict(self) -> dict:
        r = self.recipe
        return {"precision": r.name, "bits": int(r.bits), "group_size": r.group_size, "desc_act": r.desc_act,
                "sym": r.sym, "keep": list(r.keep), "overrides": r.to_dict()["overrides"], "damp": self.damp,
                "method": self.method, "nsamples": self.nsamples, "seqlen": self.seqlen, "calib": self.calib}


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


def check_shapes(layout: ModelLayout, recipe: Recipe) -> None:
    """Refuse recipes the v1 layout cannot store, naming the module and the group sizes that would work."""
    for name, (out_f, in_f) in layout.linears.items():
        stored = recipe.for_module(name)
        if stored is None:
            continue   # kept 16-bit
        bits, group = stored
        if group != -1 and in_f % group:
            ok = [g for g in GROUP_SIZES["gptq"] if g > 0 and all(i % g == 0 for _, i in layout.linears.values())]
            hint = f"; group sizes that divide every layer: {', '.join(map(str, ok + [-1]))}"
            raise QfitError(f"--group-size {group} does not divide in_features {in_f} of {name}{hint}")
        if in_f % 32 or (out_f * bits) % 32:
            raise QfitError(f"{name} ({in_f} in, {out_f} out) cannot be packed into int32 words at {bits} bits")

"""GPTQ v1 ("gptq" format) tensor layout: round-to-nearest quantization, packing and unpacking, in pure torch.

The layout is the one AutoGPTQ defined and transformers/optimum, GPTQModel and vLLM read for `checkpoint_format: gptq`:
- qweight int32 [in_features * bits / 32, out_features]: quantized values packed along the input dimension;
- qzeros  int32 [n_groups, out_features * bits / 32]: zero points packed along the output dimension, stored minus one
  (the v1 convention; "gptq_v2" stores them as is);
- scales  fp16  [n_groups, out_features];
- g_idx   int32 [in_features]: group of each input row (i // group_size unless desc_act reordered it).
Dequantized weight: W[o, i] = scales[g, o] * (q[i, o] - (qzeros[g, o] + 1)), g = g_idx[i].

Packing treats every 32 consecutive values as one little-endian bit string of 32*bits bits (value k at bit bits*k) cut
into `bits` int32 words. For 2/4/8 bits that is the familiar "value k at shift bits*k" layout; for 3 bits it reproduces
AutoGPTQ's scheme where values 10 and 21 straddle word boundaries.

Known v1 limitation (asymmetric only): a zero point of 0 is stored as -1, i.e. all ones in its bit field; loaders
convert v1 to v2 by adding 0x11111111-style constants to the packed word, which carries into the neighbouring field.
We write what AutoGPTQ and GPTQModel write (so files are byte-compatible) and the report warns when --asym is used.
"""

from __future__ import annotations

from dataclasses import dataclass


def pack_rows(values, bits: int):
    """int values [N, M] in [0, 2**bits) -> int32 [N * bits / 32, M], packed along dim 0 (N % 32 == 0)."""
    import torch

    n, m = values.shape
    if n % 32:
        raise ValueError(f"cannot pack {n} rows: not a multiple of 32")
    v = values.to(torch.int64).reshape(n // 32, 32, m)
    if 32 % bits == 0:  # fast path: whole values per word, value k of a word at shift bits*k
        per = 32 // bits
        v = v.reshape(n // per, per, m) << (torch.arange(per, dtype=torch.int64) * bits).view(1, per, 1)
        packed = v.sum(dim=1)
        return torch.where(packed >= 2**31, packed - 2**32, packed).to(torch.int32)
    shifts = torch.arange(bits, dtype=torch.int64)
    # bit b of value k lands at absolute bit position bits*k + b of its 32-value block
    bitplanes = ((v.unsqueeze(2) >> shifts.view(1, 1, bits, 1)) & 1).reshape(n // 32, 32 * bits, m)
    words = bitplanes.reshape(n // 32, bits, 32, m)
    weights = (torch.ones(32, dtype=torch.int64) << torch.arange(32, dtype=torch.int64)).view(1, 1, 32, 1)
    packed = (words * weights).sum(dim=2)  # [n/32, bits, m], each in [0, 2**32)
    packed = torch.where(packed >= 2**31, packed - 2**32, packed)  # reinterpret as signed int32
    return packed.reshape(n // 32 * bits, m).to(torch.int32)


def unpack_rows(packed, bits: int):
    """Inverse of pack_rows: int32 [N * bits / 32, M] -> int64 values [N, M]."""
    import torch

    rows, m = packed.shape
    if rows % bits:
        raise ValueError(f"{rows} packed rows are not a multiple of {bits} bits")
    w = packed.to(torch.int64) & 0xFFFFFFFF
    if 32 % bits == 0:
        per = 32 // bits
        vals = (w.unsqueeze(1) >> (torch.arange(per, dtype=torch.int64) * bits).view(1, per, 1)) & (2**bits - 1)
        return vals.reshape(rows * per, m)
    w = w.reshape(rows // bits, bits, 1, m)
    bitplanes = (w >> torch.arange(32, dtype=torch.int64).view(1, 1, 32, 1)) & 1  # [blocks, bits, 32, m]
    bitplanes = bitplanes.reshape(rows // bits, 32, bits, m)
    weights = (torch.ones(bits, dtype=torch.int64) << torch.arange(bits, dtype=torch.int64)).view(1, 1, bits, 1)
    return (bitplanes * weights).sum(dim=2).reshape(rows // bits * 32, m)


@dataclass
class PackedLinear:
    """One quantized linear layer in v1 layout (tensors on CPU)."""

    qweight: object
    qzeros: object
    scales: object
    g_idx: object
    bias: object = None

    def tensors(self, prefix: str) -> dict:
        out = {f"{prefix}.qweight": self.qweight, f"{prefix}.qzeros": self.qzeros,
               f"{prefix}.scales": self.scales, f"{prefix}.g_idx": self.g_idx}
        if self.bias is not None:
            out[f"{prefix}.bias"] = self.bias
        return out


def group_params(w, bits: int, sym: bool):
    """GPTQ's min/max quantizer per row of `w` [rows, cols]: (scale [rows], zero [rows]) as in AutoGPTQ/GPTQModel,
    so the RTN baseline differs from GPTQ only in the rounding, not in the grid."""
    import torch

    maxq = 2**bits - 1
    xmin = torch.clamp(w.min(dim=1).values, max=0)
    xmax = torch.clamp(w.max(dim=1).values, min=0)
    if sym:
        xmax = torch.maximum(xmin.abs(), xmax)
        xmin = torch.where(xmin < 0, -xmax, xmin)
    both_zero = (xmin == 0) & (xmax == 0)
    xmin = torch.where(both_zero, torch.full_like(xmin, -1), xmin)
    xmax = torch.where(both_zero, torch.full_like(xmax, 1), xmax)
    scale = (xmax - xmin) / maxq
    zero = torch.full_like(scale, (maxq + 1) / 2) if sym else torch.round(-xmin / scale)
    return scale, zero


def rtn_quantize(weight, bits: int, group_size: int, sym: bool = True) -> tuple[object, object, object, object]:
    """Round-to-nearest: weight [out, in] -> (q [in, out] ints, scales [G, out] fp16, zeros [G, out] ints, g_idx [in]).

    Scales are rounded to fp16 before quantizing so that dequantizing from the stored fp16 scales gives exactly the
    values the rounding chose (no second rounding error)."""
    import torch

    out_f, in_f = weight.shape
    gs = in_f if group_size == -1 else group_size
    if in_f % gs:
        raise ValueError(f"group size {group_size} does not divide in_features {in_f}")
    w = weight.detach().to(torch.float32)
    groups = w.reshape(out_f, in_f // gs, gs)
    scale, zero = group_params(groups.reshape(-1, gs), bits, sym)
    scale = scale.to(torch.float16).to(torch.float32).reshape(out_f, in_f // gs, 1)
    zero = zero.reshape(out_f, in_f // gs, 1)
    q = torch.clamp(torch.round(groups / scale) + zero, 0, 2**bits - 1)
    g_idx = torch.arange(in_f, dtype=torch.int32) // gs
    return (q.reshape(out_f, in_f).t().contiguous().to(torch.int64), scale.squeeze(-1).t().contiguous().half(),
            zero.squeeze(-1).t().contiguous().to(torch.int64), g_idx)


def pack_linear(q, scales, zeros, g_idx, bits: int, bias=None) -> PackedLinear:
    """(q [in, out], scales [G, out], zeros [G, out], g_idx [in]) -> v1 tensors (zeros stored minus one)."""
    import torch

    # v1 stores zero-1; a zero of 0 (possible with asym) wraps to 2**bits-1 in its bit field, as AutoGPTQ does.
    z = (zeros - 1) & (2**bits - 1)
    return PackedLinear(qweight=pack_rows(q, bits), qzeros=pack_rows(z.t().contiguous(), bits).t().contiguous(),
                        scales=scales.to(torch.float16), g_idx=g_idx.to(torch.int32),
                        bias=None if bias is None else bias.detach().to(torch.float16))


def dequantize_linear(qweight, qzeros, scales, g_idx, bits: int):
    """v1 tensors -> float32 weight [out, in] (what a loader computes; used to check round trips and checkpoints)."""
    import torch

    q = unpack_rows(qweight, bits)  # [in, out]
    z = (unpack_rows(qzeros.t().contiguous(), bits).t() + 1) & (2**bits - 1)  # [G, out]; undo the v1 minus one
    g = g_idx.to(torch.int64)
    w = scales.to(torch.float32)[g] * (q - z[g]).to(torch.float32)
    return w.t().contiguous()

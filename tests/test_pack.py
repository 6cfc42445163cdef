"""Packing round trips and the v1 layout, checked against an independent transcription of AutoGPTQ's packing loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qfit.quantize.pack import (
    dequantize_linear,
    pack_linear,
    pack_rows,
    rtn_quantize,
    unpack_rows,
)


def autogptq_pack_rows(intweight: np.ndarray, bits: int) -> np.ndarray:
    """AutoGPTQ QuantLinear.pack's qweight loop (uint32 arithmetic), transcribed for reference."""
    intweight = intweight.astype(np.uint32)
    qweight = np.zeros((intweight.shape[0] // 32 * bits, intweight.shape[1]), dtype=np.uint32)
    i = row = 0
    while row < qweight.shape[0]:
        if bits in (2, 4, 8):
            for j in range(i, i + 32 // bits):
                qweight[row] |= intweight[j] << (bits * (j - i))
            i += 32 // bits
            row += 1
        else:  # 3 bits
            for j in range(i, i + 10):
                qweight[row] |= intweight[j] << (3 * (j - i))
            i += 10
            qweight[row] |= intweight[i] << 30
            row += 1
            qweight[row] |= (intweight[i] >> 2) & 1
            i += 1
            for j in range(i, i + 10):
                qweight[row] |= intweight[j] << (3 * (j - i) + 1)
            i += 10
            qweight[row] |= intweight[i] << 31
            row += 1
            qweight[row] |= (intweight[i] >> 1) & 0x3
            i += 1
            for j in range(i, i + 10):
                qweight[row] |= intweight[j] << (3 * (j - i) + 2)
            i += 10
            row += 1
    return qweight.view(np.int32)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("shape", [(32, 1), (64, 96), (576, 192)])
def test_pack_matches_autogptq_and_round_trips(bits, shape):
    gen = torch.Generator().manual_seed(bits * 1000 + shape[0])
    values = torch.randint(0, 2**bits, shape, generator=gen)
    packed = pack_rows(values, bits)
    assert packed.dtype == torch.int32 and packed.shape == (shape[0] * bits // 32, shape[1])
    np.testing.assert_array_equal(packed.numpy(), autogptq_pack_rows(values.numpy(), bits))
    assert torch.equal(unpack_rows(packed, bits), values)


def test_pack_extremes_use_the_sign_bit():
    values = torch.full((32, 2), 15)
    packed = pack_rows(values, 4)
    assert packed.tolist() == [[-1, -1], [-1, -1], [-1, -1], [-1, -1]]  # 0xFFFFFFFF as int32
    assert torch.equal(unpack_rows(packed, 4), values)


def test_pack_rejects_rows_not_multiple_of_32():
    with pytest.raises(ValueError):
        pack_rows(torch.zeros(48, 4, dtype=torch.int64), 4)


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
@pytest.mark.parametrize("sym", [True, False])
@pytest.mark.parametrize("group", [32, 64, -1])
def test_rtn_pack_dequant_round_trip(bits, sym, group):
    torch.manual_seed(bits + group)
    w = torch.randn(96, 192)
    q, scales, zeros, g_idx = rtn_quantize(w, bits, group, sym)
    assert q.min() >= 0 and q.max() < 2**bits
    assert torch.equal(g_idx, torch.arange(192, dtype=torch.int32) // (192 if group == -1 else group))
    packed = pack_linear(q, scales, zeros, g_idx, bits)
    n_groups = 1 if group == -1 else 192 // group
    assert packed.qweight.shape == (192 * bits // 32, 96)
    assert packed.qzeros.shape == (n_groups, 96 * bits // 32)
    assert packed.scales.shape == (n_groups, 96) and packed.scales.dtype == torch.float16
    deq = dequantize_linear(packed.qweight, packed.qzeros, packed.scales, packed.g_idx, bits)
    # exact: the stored tensors reproduce the codes the rounding chose
    direct = (scales.float()[g_idx.long()] * (q - zeros[g_idx.long()]).float()).t()
    assert torch.equal(deq, direct)
    # and close to the original: within one step (half a step from rounding, the rest from the sym grid's clipping)
    step = scales.float()[g_idx.long()].t()
    assert bool(((deq - w).abs() <= step * 1.01).all())


def test_v1_zero_point_is_stored_minus_one():
    w = torch.randn(32, 64)
    q, scales, zeros, g_idx = rtn_quantize(w, 4, 32, sym=True)
    assert bool((zeros == 8).all())  # symmetric 4-bit grid: zero point 2**(bits-1)
    packed = pack_linear(q, scales, zeros, g_idx, 4)
    assert bool((unpack_rows(packed.qzeros.t().contiguous(), 4) == 7).all())  # v1 writes zero - 1


def test_asym_zero_of_zero_wraps_like_autogptq():
    w = torch.rand(32, 32) + 1.0  # all positive: min clamps to 0 -> zero point 0 -> v1 stores -1 as 2**bits-1
    q, scales, zeros, g_idx = rtn_quantize(w, 4, 32, sym=False)
    assert bool((zeros == 0).all())
    packed = pack_linear(q, scales, zeros, g_idx, 4)
    assert bool((unpack_rows(packed.qzeros.t().contiguous(), 4) == 15).all())
    deq = dequantize_linear(packed.qweight, packed.qzeros, packed.scales, packed.g_idx, 4)
    assert float((deq - w).abs().max()) <= float(scales.float().max()) * 0.51

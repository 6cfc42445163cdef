"""Accuracy on dequantized weights: the values are the kernels' (W = scale x (q - zero)), only matmul rounding
differs; checked on real GPTQ v1 checkpoints of a tiny Llama, uniform and with per-module overrides."""

from __future__ import annotations

import pytest

from qfit.errors import QfitError
from qfit.precision import gptq_recipe
from qfit.precision.recipe import Override


def test_dequantized_tensors_replace_each_module_by_its_float_weight():
    import torch

    from qfit.quantize.dequant import dequantized_tensors
    from qfit.quantize.pack import dequantize_linear, pack_linear, rtn_quantize

    torch.manual_seed(0)
    w = torch.randn(64, 128)
    packed = pack_linear(*rtn_quantize(w, 4, 32), bits=4)
    tensors = packed.tensors("model.layers.0.mlp.up_proj") | {"model.norm.weight": torch.ones(64)}
    out = dequantized_tensors(tensors, gptq_recipe(4, 32))
    assert sorted(out) == ["model.layers.0.mlp.up_proj.weight", "model.norm.weight"]
    expected = dequantize_linear(packed.qweight, packed.qzeros, packed.scales, packed.g_idx, 4)
    assert torch.equal(out["model.layers.0.mlp.up_proj.weight"], expected)
    assert (out["model.layers.0.mlp.up_proj.weight"] - w).abs().max() < 0.5      # a 4-bit grid, not noise
    kept = gptq_recipe(4, 32, keep=("mlp.up_proj",))
    with pytest.raises(QfitError, match="recipe keeps it 16-bit"):
        dequantized_tensors(tensors, kept)


def _logprobs(model, ids):
    import torch

    with torch.no_grad():
        return model(ids).logits.float().log_softmax(-1)


def test_dequantized_model_matches_the_kernel_path(tiny_llama_dir, tmp_path):
    """Logits through the GPTQ CPU kernels (transformers' loader) vs the dequantized float model: same argmax
    everywhere, mean log-likelihood equal to the kernels' 16-bit rounding, so perplexity and task accuracy agree."""
    import torch

    from qfit.loading import load_causal_lm
    from qfit.quantize.dequant import load_dequantized
    from qfit.quantize.job import QuantizeJob
    from qfit.quantize.run import quantize

    out = tmp_path / "q"
    quantize(str(tiny_llama_dir), out, QuantizeJob.from_flags(method="rtn", bits=4, group_size=32), device="cpu")
    ids = torch.randint(0, 256, (2, 48), generator=torch.Generator().manual_seed(1))
    kernel, deq = _logprobs(load_causal_lm(out), ids), _logprobs(load_dequantized(out), ids)
    assert torch.equal(kernel.argmax(-1), deq.argmax(-1))
    nll_k = -kernel[:, :-1].gather(-1, ids[:, 1:, None]).mean()
    nll_d = -deq[:, :-1].gather(-1, ids[:, 1:, None]).mean()
    assert abs(float(nll_k - nll_d)) / float(nll_k) < 2e-3


def test_per_module_bits_dequantize_as_gptqmodel_computes_them(tiny_llama_dir, smollm2_dir, tmp_path):
    """A mixed checkpoint (v_proj at 8 bits, the rest 4): every module's dequantized weight against GPTQModel's own
    TorchLinear fed the stored tensors (converted v1 -> v2 as its loader does), at that module's bits; and the whole
    model as qfit loads it (through GPTQModel, since transformers' loader re-initialises such modules)."""
    import json
    import os

    import torch
    from safetensors.torch import load_file

    from qfit.precision import recipe_from_config
    from qfit.quantize.dequant import dequantized_tensors
    from qfit.quantize.job import QuantizeJob
    from qfit.quantize.run import quantize

    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", "2")
    from gptqmodel.nn_modules.qlinear.torch import TorchLinear
    from gptqmodel.utils.model import convert_gptq_v1_to_v2_format_module

    out = tmp_path / "q"
    quantize(str(tiny_llama_dir), out, QuantizeJob.from_flags(method="rtn", bits=4, group_size=64, overrides=(
        Override("self_attn.v_proj", 8),)), device="cpu")
    recipe = recipe_from_config(json.loads((out / "config.json").read_text())["quantization_config"])
    stored = load_file(str(out / "model.safetensors"))
    weights = dequantized_tensors(stored, recipe)
    prefixes = sorted(k[: -len(".qweight")] for k in stored if k.endswith(".qweight"))
    assert {recipe.for_module(p)[0] for p in prefixes} == {4, 8}
    for p in prefixes:
        bits, group = recipe.for_module(p)
        w = weights[f"{p}.weight"]
        m = TorchLinear(bits=bits, group_size=group, sym=True, desc_act=False, in_features=w.shape[1],
                        out_features=w.shape[0], bias=False, register_buffers=True)
        for part in ("qweight", "qzeros", "scales", "g_idx"):
            getattr(m, part).copy_(stored[f"{p}.{part}"])
        convert_gptq_v1_to_v2_format_module(m, bits, torch.int32)
        m.post_init()
        x = torch.randn(3, w.shape[1], generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            got = m(x.to(m.scales.dtype)).float()
        ref = x @ w.t()
        assert (got - ref).abs().max() <= 2e-3 * ref.abs().max() + 1e-3, p
    import shutil

    from qfit.loading import load_causal_lm
    from qfit.quantize.dequant import load_dequantized

    for f in smollm2_dir.glob("tokenizer*"):      # GPTQModel's loader wants a tokenizer beside the weights
        shutil.copy(f, out / f.name)
    ids = torch.randint(0, 256, (2, 48), generator=torch.Generator().manual_seed(1))
    kernel, deq = _logprobs(load_causal_lm(out), ids), _logprobs(load_dequantized(out), ids)
    assert torch.equal(kernel.argmax(-1), deq.argmax(-1)) and (kernel - deq).abs().max() < 0.02
    from qfit.quantize.inspect import inspect_checkpoint

    assert "transformers' GPTQ loader does not" in inspect_checkpoint(out).loaders


def test_a_float_checkpoint_is_refused(tiny_llama_dir):
    from qfit.quantize.dequant import load_dequantized

    with pytest.raises(QfitError, match="not a GPTQ checkpoint"):
        load_dequantized(tiny_llama_dir)

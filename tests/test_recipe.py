"""One recipe from plan to quantize to inspect: what the planner predicts for a recipe is what `qfit quantize` writes,
byte for byte, and the written config reads back as the same recipe."""

from __future__ import annotations

import pytest

from qfit.errors import QfitError
from qfit.model.params import tensor_groups
from qfit.model.sources import load_model
from qfit.model.tensors import module_key
from qfit.precision import (
    Override,
    gptq_recipe,
    parse_recipe,
    recipe_from_config,
    weight_bytes,
)
from qfit.quantize.inspect import inspect_checkpoint
from qfit.quantize.job import QuantizeJob
from qfit.quantize.run import quantize

# Every bit width x every group size the tiny model's shapes allow (in_features 64 and 128), and the per-module options.
RECIPES = [dict(bits=b, group_size=g) for b in (2, 3, 4, 8) for g in (-1, 16, 32, 64)] + [
    dict(bits=4, group_size=32, sym=False),
    dict(bits=4, group_size=32, keep=("mlp.down_proj",)),
    dict(bits=4, group_size=64, overrides=(Override("self_attn.v_proj", 8), Override("mlp.*", 2, 16))),
    dict(bits=3, group_size=-1, keep=("self_attn.q_proj",), overrides=(Override("mlp.up_proj", 8, 32),)),
]


@pytest.mark.parametrize("flags", RECIPES, ids=lambda f: "-".join(f"{k}={v}" for k, v in f.items()))
def test_planner_bytes_equal_written_bytes(tiny_llama_dir, tmp_path, flags):
    job = QuantizeJob.from_flags(method="rtn", **flags)
    report = quantize(str(tiny_llama_dir), tmp_path / "q", job)
    checked = inspect_checkpoint(tmp_path / "q")
    predicted = weight_bytes(tensor_groups(load_model(str(tiny_llama_dir)).spec), job.recipe).total
    assert checked.ok
    assert predicted == checked.tensor_bytes == report.weight_bytes
    assert report.to_dict()["planner_prediction"]["ratio_real_to_predicted"] == 1.0
    written = load_model(str(tmp_path / "q"))
    assert recipe_from_config(written.quantization_config) == job.recipe


def test_module_keys_agree_between_checkpoints_and_the_planner():
    assert module_key("model.layers.3.mlp.experts.7.down_proj.weight") == "mlp.experts.down_proj"
    assert module_key("layers.mlp.experts.down_proj") == "mlp.experts.down_proj"
    assert module_key("model.layers.0.self_attn.q_proj") == "self_attn.q_proj"
    assert module_key("model.embed_tokens.weight") == "embed_tokens" and module_key("lm_head") == "lm_head"


def test_overrides_and_keep_resolve_per_module():
    r = gptq_recipe(4, 128, keep=("self_attn.*",), overrides=(Override("mlp.down_proj", 8, 32), Override("mlp.*", 2)))
    assert r.for_module("model.layers.5.self_attn.k_proj") is None
    assert r.for_module("model.layers.5.mlp.down_proj") == (8, 32)     # first match wins
    assert r.for_module("model.layers.5.mlp.up_proj") == (2, 128)
    assert r.for_module("model.layers.5.other.proj") == (4, 128)


@pytest.mark.parametrize("call,error", [
    (lambda: parse_recipe("gguf-q4_k_m", keep=("mlp.*",)), "own type mix"),
    (lambda: parse_recipe("awq-int4", overrides=(Override("mlp.*", 8),)), "GPTQ recipes only"),
    (lambda: gptq_recipe(4, overrides=(Override("mlp.*", 5),)), "5 bits"),
    (lambda: gptq_recipe(4, overrides=(Override("mlp.*", 8, 100),)), "group size 100"),
    (lambda: gptq_recipe(4, keep=("",)), "empty"),
    (lambda: parse_recipe("awq-int4", desc_act=True), "GPTQ option"),
    (lambda: parse_recipe("bf16", sym=False), "sym/desc_act"),
    (lambda: gptq_recipe(5), "--bits 5"),
    (lambda: parse_recipe("gptq-int4", 100), "group size 100"),
])
def test_recipe_refuses_what_no_tool_can_store(call, error):
    with pytest.raises(QfitError, match=error):
        call()


def test_one_set_of_group_sizes_for_plan_quantize_and_inspect():
    from qfit.precision import GROUP_SIZES
    from qfit.quantize.inspect import config_problems

    for g in GROUP_SIZES["gptq"]:
        assert parse_recipe("gptq-int4", g).group_size == g
        assert QuantizeJob.from_flags(group_size=g, method="rtn").recipe.group_size == g
        qc = {"quant_method": "gptq", "checkpoint_format": "gptq", "bits": 4, "group_size": g, "desc_act": False,
              "sym": True}
        assert config_problems(qc) == []
    for bad in (0, 100, 2048):
        with pytest.raises(QfitError):
            parse_recipe("gptq-int4", bad)
        with pytest.raises(QfitError):
            QuantizeJob.from_flags(group_size=bad, method="rtn")
        assert config_problems({**qc, "group_size": bad})

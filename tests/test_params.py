"""Parameter counts per architecture kind, against exact counts stated by the catalog's sources and hand arithmetic."""

from __future__ import annotations

import json

import pytest

from qfit.errors import QfitError
from qfit.model.params import count_params, tensor_groups
from qfit.model.sources import catalog_entries, catalog_lookup
from qfit.model.spec import parse_config

REFERENCED = [e for e in catalog_entries() if e.get("params_reference")]


def test_catalog_is_large_enough_and_parses():
    entries = catalog_entries()
    assert len(entries) >= 30
    for e in entries:
        spec = parse_config(e["config"], name=e["name"])
        assert count_params(spec).total > 0, e["name"]


@pytest.mark.parametrize("entry", REFERENCED, ids=[e["name"] for e in REFERENCED])
def test_count_matches_reference_within_0_1_percent(entry):
    """The sources' counts come from the hub's safetensors metadata (via llmfit's catalog or llama.cpp)."""
    spec = parse_config(entry["config"], name=entry["name"])
    counts = count_params(spec)
    ref = entry["params_reference"]["value"]
    # Multimodal references count the text model only; MTP layers are in the checkpoint, not in the reference.
    ours = counts.total - sum(g.params for g in tensor_groups(spec) if g.role == "vision")
    assert abs(ours - ref) / ref < 1e-3, (ours, ref)


# Totals / active counts as model cards print them: the check allows half a unit of the last printed digit.
CARDS = [
    ("qwen3-30b-a3b", "30.5", "3.3"),
    ("qwen3-235b-a22b", "235", "22"),
    ("mixtral-8x7b", "46.7", "12.9"),
    ("deepseek-v3", "671", "37"),
    ("kimi-k2-instruct", "1026", "32.9"),   # 1.026T total / 32.9B active incl. embeddings (card: "1T / 32B")
    ("gpt-oss-120b", "116.8", "5.7"),
    ("gpt-oss-20b", "20.9", "4.2"),
    ("llama-4-scout-17b-16e-instruct", "109", "17"),
    ("qwen3-next-80b-a3b", "80", "3.9"),
]


def _within_printed(value: float, printed: str) -> bool:
    decimals = len(printed.split(".")[1]) if "." in printed else 0
    return abs(value / 1e9 - float(printed)) <= 0.5 * 10 ** -decimals + 1e-9


@pytest.mark.parametrize("name,total,active", CARDS)
def test_moe_total_and_active(name, total, active):
    counts = count_params(catalog_lookup(name).spec)
    assert _within_printed(counts.total, total), counts.total
    # Cards round active counts loosely (Qwen3-30B-A3B: 3.35B printed as 3.3B; DeepSeek-V3 37.5B as 37B): 2 %.
    assert counts.active / 1e9 == pytest.approx(float(active), rel=0.02), counts.active


def test_dense_llama_by_hand():
    # Llama-2-7B: 32 x (4 h^2 attention + 3 h i MLP + 2 h norms) + 2 v h + h
    h, i, v, n = 4096, 11008, 32000, 32
    expected = n * (4 * h * h + 3 * h * i + 2 * h) + 2 * v * h + h
    assert count_params(catalog_lookup("llama-2-7b").spec).total == expected == 6_738_415_616


def test_tied_embeddings_counted_once():
    spec = catalog_lookup("smollm2-135m").spec
    roles = [g.role for g in tensor_groups(spec)]
    assert spec.tied_embeddings and "lm_head" not in roles and roles.count("embed") == 1
    assert count_params(spec).total == 134_515_008  # equals the GGUF header count of the real model file


def test_mla_projection_shapes_by_hand():
    spec = catalog_lookup("deepseek-v3").spec
    m = spec.mla
    assert (m.kv_lora_rank, m.qk_rope_head_dim, m.q_lora_rank) == (512, 64, 1536)
    per_layer_attn = (1536 * 7168 + 1536 + 128 * 192 * 1536 + (512 + 64) * 7168 + 512
                      + 128 * (128 + 128) * 512 + 7168 * 128 * 128)
    attn = sum(g.params for g in tensor_groups(spec)
               if g.module.startswith("layers.self_attn"))
    assert attn == 61 * per_layer_attn


def test_deltanet_layer_by_hand():
    spec = catalog_lookup("qwen3-next-80b-a3b").spec
    la = spec.linear
    key, val = la.num_key_heads * la.key_head_dim, la.num_value_heads * la.value_head_dim   # 2048, 4096
    h = spec.hidden
    per_layer = ((2 * key + 2 * val) * h + 2 * la.num_value_heads * h + (2 * key + val) * la.conv_kernel
                 + 2 * la.num_value_heads + la.value_head_dim + h * val)
    linear = sum(g.params for g in tensor_groups(spec) if g.module.startswith("layers.linear_attn"))
    assert spec.count("linear") == 36 and spec.count("full") == 12
    assert linear == 36 * per_layer


def test_gpt_oss_alternating_layers_and_sinks():
    spec = catalog_lookup("gpt-oss-20b").spec
    assert spec.count("sliding") == 12 and spec.count("full") == 12 and spec.sliding_window == 128
    sinks = [g for g in tensor_groups(spec) if g.module.endswith("sinks")]
    assert sinks and sinks[0].params == 64 * 24


def test_gemma3_pattern_and_text_config_unwrapped():
    spec = catalog_lookup("gemma-3-27b-it").spec
    assert spec.hidden == 5376 and spec.count("full") == 62 // 6 and spec.count("sliding") == 62 - 62 // 6
    assert spec.vision is not None and spec.tied_embeddings


def test_mtp_in_checkpoint_not_in_served_total():
    counts = count_params(catalog_lookup("deepseek-v3").spec)
    assert counts.checkpoint == pytest.approx(685e9, rel=2e-3)  # the hub lists 685B incl. the MTP module
    assert counts.total == pytest.approx(671e9, rel=1e-3)


@pytest.mark.parametrize("cfg,needle", [
    ({"num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "intermediate_size": 8}, "hidden_size"),
    ({"hidden_size": 8, "num_attention_heads": 4, "vocab_size": 10, "intermediate_size": 8}, "num_hidden_layers"),
    ({"hidden_size": 8, "num_hidden_layers": 2, "vocab_size": 10, "intermediate_size": 8}, "num_attention_heads"),
    ({"hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 8}, "vocab_size"),
    ({"hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10}, "intermediate_size"),
    ({"hidden_size": -8, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10,
      "intermediate_size": 8}, "hidden_size"),
    ({"hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "intermediate_size": 8,
      "layer_types": ["full_attention"]}, "layer_types"),
    ({"hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 10, "intermediate_size": 8,
      "num_local_experts": 4}, "num_experts_per_tok"),
])
def test_missing_or_bad_fields_are_named(cfg, needle):
    with pytest.raises(QfitError, match=needle):
        parse_config(cfg)


def test_catalog_entries_have_sources():
    for e in catalog_entries():
        assert e["source"] and e["hub_id"], e["name"]
        json.dumps(e)  # serialisable


def test_models_command_lists_catalog():
    from click.testing import CliRunner

    from qfit.cli import cli

    r = CliRunner().invoke(cli, ["models", "--json"])
    assert r.exit_code == 0
    rows = json.loads(r.output)
    assert len(rows) >= 30
    by_name = {row["name"]: row for row in rows}
    assert by_name["qwen3-30b-a3b"]["params_active"] < by_name["qwen3-30b-a3b"]["params_total"]
    assert CliRunner().invoke(cli, ["models"]).exit_code == 0

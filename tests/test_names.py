"""Names people use (issue 12): every accelerator and precision spelling that published measurements, drivers and users
write resolves to the intended catalog entry, or is refused in one line that names what to pass instead."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from qfit import api  # noqa: E402
from qfit.errors import QfitError  # noqa: E402
from qfit.hardware import get_accelerator, load_accelerators  # noqa: E402
from qfit.precision import bytes_per_param, list_precisions, parse_recipe  # noqa: E402
from qfit.precision.names import ALIASES, JUDGEMENTS  # noqa: E402

# ------------------------------------------------------------------------------------------------- accelerators
ACCELERATORS = [
    # product + bracketed / "w/" GPU name (AMD's own spelling), in either order, with a size picking the configuration
    ("AMD Ryzen AI Max+ 395 (Radeon 8060S)", "ryzen-ai-max-395", 128),
    ("AMD Ryzen AI Max+ 395 w/ Radeon 8060S", "ryzen-ai-max-395", 128),
    ("Radeon 8060S (Ryzen AI Max+ 395)", "ryzen-ai-max-395", 128),
    ("Framework Desktop (Ryzen AI Max+ 395) 64GB", "ryzen-ai-max-395", 64),
    ("Ryzen AI Max+ PRO 395", "ryzen-ai-max-395", 128),
    ("Apple M3 Max (96GB)", "m3-max-30c", 96),
    # "Edition", nvidia-smi names, Max-Q as its own part
    ("RTX PRO 6000 Blackwell Workstation Edition", "rtx-pro-6000-blackwell", 96),
    ("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "rtx-pro-6000-blackwell", 96),
    ("RTX 6000 Pro", "rtx-pro-6000-blackwell", 96),
    ("RTX PRO 6000 96GB", "rtx-pro-6000-blackwell", 96),
    ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "rtx-pro-6000-blackwell-server", 96),
    ("NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition", "rtx-pro-6000-blackwell-max-q", 96),
    ("RTX PRO 6000 (Max-Q)", "rtx-pro-6000-blackwell-max-q", 96),
    ("RTX 4090 Founders Edition", "rtx-4090", 24),
    ("NVIDIA H100 80GB HBM3", "h100-sxm", 80),
    ("NVIDIA H200 141GB HBM3e", "h200-sxm", 141),
    ("GH200 HBM3", "gh200-96gb", 96), ("GH200 HBM3e", "gh200-144gb", 141), ("NVIDIA GH200 480GB", "gh200-96gb", 96),
    ("NVIDIA A100-SXM4-80GB", "a100-80gb-sxm4", 80), ("Tesla V100-SXM2-32GB", "v100-sxm2-32gb", 32),
    ("MI300X OAM", "mi300x", 192), ("AMD Radeon RX 7900 XTX", "rx-7900-xtx", 24),
    ("Intel(R) Arc(TM) Pro B60 Graphics", "arc-pro-b60", 24),
    # devices added for this issue
    ("Intel Arc Pro B70", "arc-pro-b70", 32), ("Arc B580", "arc-b580", 12),
    ("Intel(R) Arc(TM) B580 Graphics", "arc-b580", 12), ("H800", "h800", 80), ("NVIDIA H800 SXM5 80GB", "h800", 80),
    ("A800", "a800-80gb-sxm4", 80), ("NVIDIA A800-SXM4-80GB", "a800-80gb-sxm4", 80),
    ("A800 PCIe", "a800-80gb-pcie", 80), ("RX 9070 XT", "rx-9070-xt", 16), ("AMD Radeon RX 9070 XT", "rx-9070-xt", 16),
    ("RX 9070", "rx-9070", 16), ("Jetson AGX Orin", "jetson-agx-orin", 64),
    ("NVIDIA Jetson AGX Orin 64GB", "jetson-agx-orin", 64), ("Jetson Thor", "jetson-agx-thor", 128),
    ("L20", "l20", 48), ("NVIDIA A2", "a2", 16), ("Quadro RTX 8000", "quadro-rtx-8000", 48),
    ("RTX 8000", "quadro-rtx-8000", 48), ("Quadro RTX 6000", "quadro-rtx-6000", 24),
]


@pytest.mark.parametrize("spelling, key, gib", ACCELERATORS, ids=[a[0] for a in ACCELERATORS])
def test_accelerator_spellings_resolve(spelling, key, gib):
    acc = get_accelerator(spelling)
    assert (acc.key, acc.memory_gib) == (key, gib)


REFUSED_ACCELERATORS = [
    # ambiguous: three generations share "6000"; "Quadro" is not noise, so a bare "RTX 6000" picks none of them
    ("RTX 6000", ["unknown accelerator", "RTX A6000", "RTX PRO 6000", "RTX 6000 Ada"]),
    ("RTX 4090 (A6000)", ["names two different devices", "RTX 4090", "RTX A6000"]),
    ("Jetson AGX Orin 32GB", ["no catalogued configuration", "Jetson AGX Orin 64GB (64 GB)"]),
    ("A800 40GB", ["no catalogued configuration", "A800 80GB PCIe (80 GB)", "A800 80GB SXM4 (80 GB)"]),
    ("NVIDIA GeForce RTX 4090 Laptop GPU", ["unknown accelerator", "did you mean: RTX 4090"]),  # other silicon
    ("H800 PCIe", ["unknown accelerator", "H800 SXM", "H100 PCIe"]),  # the PCIe H800 is not catalogued: no stand-in
    ("(R)", ["empty accelerator name"]),
]


@pytest.mark.parametrize("spelling, fragments", REFUSED_ACCELERATORS, ids=[r[0] for r in REFUSED_ACCELERATORS])
def test_accelerator_refusals_name_the_candidates(spelling, fragments):
    with pytest.raises(QfitError) as exc:
        get_accelerator(spelling)
    message = str(exc.value)
    assert "\n" not in message and all(f in message for f in fragments), message


NEW_DEVICES = ["arc-pro-b70", "arc-b580", "jetson-agx-orin", "jetson-agx-thor", "h800", "a800-80gb-sxm4",
               "a800-80gb-pcie", "rx-9070-xt", "rx-9070", "l20", "a2", "rtx-pro-6000-blackwell-max-q",
               "quadro-rtx-8000", "quadro-rtx-6000"]


@pytest.mark.parametrize("key", NEW_DEVICES)
def test_new_devices_plan_within_their_bandwidth(key):
    """Each added device plans an 8B model at llama.cpp Q4_K_M and at 16-bit with its default engine; batch-1 decode
    cannot beat reading the active weights once per token at the profile's bandwidth."""
    acc = load_accelerators()[key]
    for precision in ("gguf-q4_k_m", "fp16"):
        p = api.plan("llama-3-8b", gpu=acc, precision=precision, context=4096)
        assert p.accelerator.key == key and p.memory.per_gpu > p.weights.total
        ceiling = acc.bandwidth_gbps * 1e9 / p.weights.active
        assert 0 < p.performance.decode_tokens_per_s < ceiling


def test_recalled_and_derived_figures_say_so():
    """Profiles added from memory carry the RECALLED tag on every recalled figure; sourced ones cite fact-sheet keys."""
    accs = load_accelerators()
    for key in ("h800", "a800-80gb-sxm4", "a800-80gb-pcie", "arc-b580", "rx-9070-xt", "rx-9070", "quadro-rtx-8000"):
        src = accs[key].source_map
        assert all("RECALLED" in src[f] for f in ("memory_gib", "bandwidth_gbps", "tflops", "tdp_w")), key
        assert accs[key].list_price is None and accs[key].rent is None  # no invented prices
    assert "ZOLOTUKHIN-B70" in accs["arc-pro-b70"].source_map["bandwidth_gbps"]
    assert "ULTRA-JETSON" in accs["jetson-agx-orin"].source_map["bandwidth_gbps"]
    # derived by hand: 64 tensor cores x 256 FMA x 2 x 1.3 GHz = 42.6 TFLOPS; 64 CU x 2.97 GHz x 1024 = 194.6
    assert accs["jetson-agx-orin"].tflops.bf16 == pytest.approx(64 * 256 * 2 * 1.3e9 / 1e12, abs=0.05)
    assert accs["rx-9070-xt"].tflops.fp16 == pytest.approx(64 * 2.97e9 * 1024 / 1e12, abs=0.05)
    assert accs["rx-9070-xt"].tflops.int4 * 2 == pytest.approx(1557, abs=1)  # AMD's "1557 AI TOPS" (INT4 sparse)


def test_lookup_index_cache_is_keyed_by_the_rules(tmp_path, monkeypatch):
    """The spelling index is cached on disk; its file name carries a fingerprint of the lookup rules, so a qfit with new
    rules never reads an index built by old ones."""
    from qfit.hardware import lookup

    monkeypatch.setenv("QFIT_CACHE", str(tmp_path))
    lookup._index.cache_clear()
    try:
        assert get_accelerator("Intel Arc Pro B70").key == "arc-pro-b70"
        assert list(tmp_path.glob(f"gpus-index-{lookup._RULES_TAG}-*.json"))
    finally:
        lookup._index.cache_clear()


# --------------------------------------------------------------------------------------------------- precisions
PRECISIONS = [
    ("gguf-mxfp4", "gguf-mxfp4_moe"), ("GGUF MXFP4", "gguf-mxfp4_moe"), ("MXFP4_MOE", "gguf-mxfp4_moe"),
    ("mxfp4-moe", "gguf-mxfp4_moe"), ("mxfp4", "mxfp4"), ("Q4_K_M", "gguf-q4_k_m"), ("gguf-Q4_K_M", "gguf-q4_k_m"),
    ("gguf_q4_k_m", "gguf-q4_k_m"), ("GGUF Q4_K_M", "gguf-q4_k_m"), ("q4-k-m", "gguf-q4_k_m"), ("Q8_0", "gguf-q8_0"),
    ("IQ2_XXS", "gguf-iq2_xxs"), ("Q3_K_L", "gguf-q3_k_l"), ("Q4_K", "gguf-q4_k_m"), ("q5_k", "gguf-q5_k_m"),
    ("Q3_K", "gguf-q3_k_m"), ("BF16", "bf16"), ("gguf-BF16", "gguf-bf16"), ("F16", "fp16"), ("fp16", "fp16"),
    ("awq", "awq-int4"), ("AWQ-INT4", "awq-int4"), ("int4-awq", "awq-int4"), ("W4A16-AWQ", "awq-int4"),
    ("gptq-4bit", "gptq-int4"), ("GPTQ-Int4", "gptq-int4"), ("int4-gptq", "gptq-int4"), ("GPTQ-Int8", "gptq-int8"),
    ("fp8-dynamic", "fp8"), ("FP8_DYNAMIC", "fp8"), ("fp8_e4m3", "fp8"), ("W8A8-FP8", "fp8"), ("W8A8_INT8", "int8"),
    ("llm.int8", "int8"), ("bnb-4bit", "nf4"),
]


@pytest.mark.parametrize("typed, canonical", PRECISIONS)
def test_precision_spellings_resolve_without_a_judgement(typed, canonical):
    r = parse_recipe(typed)
    assert (r.name, r.note) == (canonical, "")


JUDGED = [("int4", "gptq-int4", "'int4' read as GPTQ int4"), ("W4A16", "gptq-int4", "'W4A16' (4-bit weights"),
          ("gptq", "gptq-int4", "read as 4-bit"), ("W8A8", "int8", "pass fp8 for W8A8-FP8"),
          ("w8a16", "gptq-int8", "GPTQ int8"), ("int3", "gptq-int3", "GPTQ int3"), ("int2", "gptq-int2", "GPTQ int2")]


@pytest.mark.parametrize("typed, canonical, note", JUDGED)
def test_judgement_names_resolve_with_a_note_in_the_plan(typed, canonical, note):
    r = parse_recipe(typed)
    assert r.name == canonical and note in r.note
    assert r == parse_recipe(canonical)        # the note is not part of the recipe's identity


def test_the_judgement_note_reaches_the_plan_and_its_figure_holds():
    p = api.plan("llama-3-8b", gpu="A6000", precision="int4", context=4096)
    assert p.precision.name == "gptq-int4" and any("'int4' read as GPTQ int4" in a for a in p.assumptions)
    assert p.to_dict()["recipe"]["note"].startswith("'int4' read as")
    # the note's "~0.1 % fewer bytes" for AWQ: Llama-3-8B-shaped blocks, both at group 128
    gptq, awq = bytes_per_param(parse_recipe("gptq-int4")), bytes_per_param(parse_recipe("awq-int4"))
    assert round(100 * (1 - awq / gptq), 1) == 0.1


def test_every_alias_and_judgement_names_a_canonical_precision():
    canon = set(list_precisions())
    assert set(ALIASES.values()) <= canon and {v[0] for v in JUDGEMENTS.values()} <= canon


REFUSED_PRECISIONS = [
    # uploaders' _L/_XL variants (not Unsloth Dynamic): the .gguf file, or llama.cpp's nearest mix as an approximation
    ("UD-Q7_K_XL", ["Unsloth Dynamic GGUF of no llama.cpp base type", "pass the .gguf file itself"]),
    ("q4_k_xl", ["not a llama-quantize type", "gguf-q4_k_m"]),
    ("Q6_K_L", ["not a llama-quantize type", "gguf-q6_k"]), ("Q4_K_L", ["not a llama-quantize type", "gguf-q4_k_m"]),
    # ambiguous or not sizeable by name
    ("4bit", ["ambiguous", "gptq-int4, awq-int4, nf4, gguf-q4_k_m"]), ("4-bit", ["ambiguous", "nf4"]),
    ("8-bit", ["ambiguous", "int8, fp8, gptq-int8, gguf-q8_0"]), ("Q4", ["ambiguous", "gguf-q4_k_s"]),
    ("fp4", ["ambiguous", "mxfp4", "gguf-mxfp4_moe"]), ("gguf", ["ambiguous", "gguf-q4_k_m"]),
    ("NVFP4", ["cannot be sized from its name", "no NVFP4 byte layout", "--model"]),
    ("exl2", ["cannot be sized from its name", "--model"]),
    # plain typos still get the closest names
    ("q4km", ["unknown precision", "gguf-q4_k_m"]), ("UD-foo", ["unknown precision"]),
]


@pytest.mark.parametrize("typed, fragments", REFUSED_PRECISIONS, ids=[r[0] for r in REFUSED_PRECISIONS])
def test_precision_refusals_say_what_to_pass(typed, fragments):
    with pytest.raises(QfitError) as exc:
        parse_recipe(typed)
    message = str(exc.value)
    assert "\n" not in message and all(f in message for f in fragments), message


def test_uploader_refusal_suggests_a_name_that_plans():
    with pytest.raises(QfitError) as exc:
        parse_recipe("Q4_K_XL")
    suggested = str(exc.value).split("plan llama.cpp's own ")[1].split(" mix")[0]
    assert parse_recipe(suggested).name == "gguf-q4_k_m"


# Unsloth Dynamic names resolve to their llama.cpp base mix (the largest n-bit mix for "Qn_K_XL", the type itself for
# "IQ2_XXS"-style names), the note saying no overhead is added and why.
UD_NAMES = [("UD-Q4_K_XL", "gguf-q4_k_m"), ("gguf-UD-Q4_K_XL", "gguf-q4_k_m"), ("ud-q4_k_xl", "gguf-q4_k_m"),
            ("UD-Q8_K_XL", "gguf-q8_0"), ("UD-Q2_K_XL", "gguf-q2_k"), ("UD-Q3_K_XL", "gguf-q3_k_l"),
            ("UD-Q5_K_XL", "gguf-q5_k_m"), ("UD-Q6_K_XL", "gguf-q6_k"), ("UD-IQ2_XXS", "gguf-iq2_xxs"),
            ("UD-IQ1_S", "gguf-iq1_s"), ("UD-TQ1_0", "gguf-tq1_0"), ("UD-IQ3_XXS", "gguf-iq3_xxs")]


@pytest.mark.parametrize("typed, canonical", UD_NAMES)
def test_unsloth_dynamic_names_plan_as_their_base_mix(typed, canonical):
    r = parse_recipe(typed)
    assert r.name == canonical and "Unsloth Dynamic" in r.note and "no overhead is added" in r.note
    assert r == parse_recipe(canonical)


def test_a_ud_quant_plans_with_its_assumption_and_the_base_mix_bytes():
    ud = api.plan("llama-3-8b", gpu="A6000", precision="UD-Q4_K_XL", context=4096)
    base = api.plan("llama-3-8b", gpu="A6000", precision="gguf-q4_k_m", context=4096)
    assert ud.memory.weights == base.memory.weights
    assert any("'UD-Q4_K_XL' (Unsloth Dynamic GGUF) planned as llama.cpp's gguf-q4_k_m mix" in a
               for a in ud.assumptions)

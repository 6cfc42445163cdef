"""The accelerator catalog: every profile valid and sourced, the lookup forgiving but exact, the `qfit gpus` CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from qfit.yamlcache import load_records

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from qfit import hardware  # noqa: E402
from qfit.errors import QfitError  # noqa: E402
from qfit.hardware import (  # noqa: E402
    get_accelerator,
    list_accelerators,
    load_accelerators,
    validate_record,
)

GPU_DIR = Path(__file__).resolve().parent.parent / "profiles" / "gpus"
FILES = sorted(GPU_DIR.glob("*.yaml"))
CASES = Path(__file__).resolve().parents[1] / "benchmarks" / "calibration" / "cases.jsonl"


def _raw(path: Path) -> dict:
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_profile_valid_and_sourced(path):
    data = _raw(path)
    assert validate_record(data, path.stem) == []
    for kind, p in (data.get("price") or {}).items():
        if p:
            assert len(str(p["date"])) >= 4, kind


def test_catalog_size_and_no_duplicate_spellings():
    accs = load_accelerators()
    assert len(accs) >= 55 and len(accs) == len(FILES)
    seen: dict[str, str] = {}
    for acc in accs.values():
        for spelling in {hardware.compact(s) for s in (acc.key, acc.name, *acc.aliases)}:
            assert spelling not in seen, f"{spelling!r} used by {seen.get(spelling)} and {acc.key}"
            seen[spelling] = acc.key


@pytest.mark.parametrize("mutation, problem", [
    (lambda d: d.pop("bandwidth_gbps"), "missing field"),
    (lambda d: d.update(memory_gib=-1), "memory_gib"),
    (lambda d: d["sources"].pop("tflops"), "no source for 'tflops'"),
    (lambda d: d["sources"].pop("tdp_w"), "no source for 'tdp_w'"),
    (lambda d: d.update(key="other"), "does not match"),
    (lambda d: d.update(vendor="nvdia"), "vendor"),
    (lambda d: d["tflops"].update(bf16=0), "tflops.bf16"),
    (lambda d: d.update(usable_memory_fraction=0.8), "usable_memory_fraction"),
])
def test_validation_catches(mutation, problem):
    data = _raw(GPU_DIR / "rtx-a6000.yaml")
    mutation(data)
    assert any(problem in p for p in validate_record(data, "rtx-a6000"))


@pytest.mark.parametrize("spelling, key", [
    ("A6000", "rtx-a6000"), ("rtx a6000", "rtx-a6000"), ("NVIDIA RTX A6000", "rtx-a6000"), ("rtx-a6000", "rtx-a6000"),
    ("a100-80gb", "a100-80gb-sxm4"), ("A100 80GB", "a100-80gb-sxm4"), ("A100", "a100-80gb-sxm4"),
    ("A100 40GB", "a100-40gb-sxm4"), ("A100 PCIe 40GB", "a100-40gb-pcie"), ("a100 pcie", "a100-80gb-pcie"),
    ("NVIDIA A100 80GB SXM4", "a100-80gb-sxm4"), ("h100", "h100-sxm"), ("H100 SXM", "h100-sxm"),
    ("NVIDIA H100 SXM 80GB", "h100-sxm"), ("H100 PCIe", "h100-pcie"), ("H100 94GB", "h100-nvl"), ("h200", "h200-sxm"),
    ("H200 NVL", "h200-nvl"), ("GH200", "gh200-96gb"), ("GH200 144GB", "gh200-144gb"), ("4090", "rtx-4090"),
    ("rtx4090", "rtx-4090"), ("GeForce RTX 4090", "rtx-4090"), ("NVIDIA RTX 3060 12GB", "rtx-3060-12gb"),
    ("3080", "rtx-3080-10gb"), ("RTX 3080 12GB", "rtx-3080-12gb"), ("Tesla P40", "p40"), ("Tesla T4", "t4"),
    ("V100 32GB", "v100-sxm2-32gb"), ("V100 PCIe 32GB", "v100-pcie-32gb"), ("M3 Max", "m3-max-40c"),
    ("m3-max-40c", "m3-max-40c"), ("M3 Max 96GB", "m3-max-30c"), ("M3 Max 36GB", "m3-max-30c"),
    ("M3 Max 128GB", "m3-max-40c"), ("M4 Max 36GB", "m4-max-32c"), ("M4 Max", "m4-max-40c"), ("DGX Spark", "dgx-spark"),
    ("NVIDIA DGX Spark (GB10)", "dgx-spark"), ("mi300x", "mi300x"), ("AMD Instinct MI300X", "mi300x"),
    ("RTX PRO 6000", "rtx-pro-6000-blackwell"), ("RTX PRO 6000 Blackwell Workstation", "rtx-pro-6000-blackwell"),
    ("RTX PRO 6000 Server", "rtx-pro-6000-blackwell-server"), ("rtx 6000 ada", "rtx-6000-ada"),
    ("Strix Halo", "ryzen-ai-max-395"), ("Radeon RX 7900 XTX", "rx-7900-xtx"), ("gaudi3", "gaudi3"),
    ("Intel Arc Pro B60", "arc-pro-b60"), ("B200", "b200"), ("p100", "p100-pcie-16gb"),
])
def test_lookup_spellings(spelling, key):
    assert get_accelerator(spelling).key == key


@pytest.mark.parametrize("spelling, gib, usable", [
    ("M3 Max 96GB", 96, 72.0), ("M3 Max 36GB", 36, 27.0), ("M1 16GB", 16, 16 * 0.6667), ("M3 Max", 128, 96.0),
    ("Ryzen AI Max+ 395 64GB", 64, 48.0), ("A100 40GB", 40, 40.0),
])
def test_memory_selection_and_usable_share(spelling, gib, usable):
    acc = get_accelerator(spelling)
    assert acc.memory_gib == gib and acc.capacity_bytes == gib * 2**30
    assert acc.usable_memory_gib == pytest.approx(usable, rel=1e-3)
    assert acc.memory_bytes == acc.usable_bytes == int(gib * 2**30 * acc.usable_memory_fraction)


@pytest.mark.parametrize("spelling, expect", [
    ("A7000", "did you mean: RTX A6000"), ("A100 48GB", "A100 80GB SXM4 (80 GB)"), ("M3 36GB", "M3 (8/16/24 GB)"),
    ("zzzz-9999", "run `qfit gpus`"), ("", "empty"),
])
def test_unknown_names_give_one_line_errors(spelling, expect):
    with pytest.raises(QfitError) as exc:
        get_accelerator(spelling)
    assert expect in str(exc.value) and "\n" not in str(exc.value)


def test_tflops_for_fallbacks():
    assert get_accelerator("V100").tflops_for("bf16") == 125  # no BF16 on Volta: engines run FP16
    assert get_accelerator("H100").tflops_for("fp16") == 989
    assert get_accelerator("H100").tflops_for("int4") is None  # Hopper has no INT4 tensor path: no silent int8
    assert get_accelerator("A100").tflops_for("fp8") is None
    assert get_accelerator("RTX 5090").tflops_for("nvfp4") == 1676
    with pytest.raises(QfitError):
        get_accelerator("H100").tflops_for("fp12")


def test_list_filters_and_sorting():
    apple = list_accelerators(vendor="apple")
    assert apple and all(a.vendor == "apple" and a.segment == "unified" for a in apple)
    bws = [a.bandwidth_gbps for a in apple]
    assert bws == sorted(bws, reverse=True)
    assert {a.vendor for a in list_accelerators(segment="datacenter")} == {"nvidia", "amd", "intel"}
    with pytest.raises(QfitError, match="unknown vendor"):
        list_accelerators(vendor="nvdia")


def _calibration_rows():
    if not CASES.exists():
        return []
    rows = {}
    for line in CASES.read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            if d.get("gpu"):
                rows[(d["gpu"], d.get("gpu_variant"))] = d.get("bw_gbps")
    return sorted(rows.items(), key=str)


@pytest.mark.skipif(not CASES.exists(), reason="shared calibration cases not available")
@pytest.mark.parametrize("case", _calibration_rows(), ids=lambda c: f"{c[0][0]}|{c[0][1]}")
def test_calibration_gpus_resolve(case):
    (gpu, variant), bw = case
    acc = get_accelerator(gpu, variant)
    if bw is not None:
        assert acc.bandwidth_gbps == pytest.approx(bw)


def test_cache_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("QFIT_CACHE", str(tmp_path / "qfit"))
    first = load_records(GPU_DIR)
    assert list(tmp_path.glob("qfit/gpus-records-*.json"))
    assert load_records(GPU_DIR) == first  # served from the JSON cache
    assert {k: hardware.build_accelerator(v) for k, v in first.items()} == hardware.load_accelerators()


def test_cli_gpus_json_and_errors():
    from click.testing import CliRunner

    from qfit.cli import cli

    runner = CliRunner()
    res = runner.invoke(cli, ["gpus", "--json", "--vendor", "nvidia"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert rows and all(r["vendor"] == "nvidia" for r in rows)
    h100 = next(r for r in rows if r["key"] == "h100-sxm")
    assert h100["bandwidth_gbps"] == 3350 and h100["tflops"]["bf16"] == 989 and h100["sources"]["bandwidth_gbps"]
    table = runner.invoke(cli, ["gpus", "--segment", "unified"])
    assert table.exit_code == 0 and "M3 Max" in table.output and "DGX Spark" in table.output
    bad = runner.invoke(cli, ["gpus", "--vendor", "nvdia"])
    assert bad.exit_code == 2 and "unknown vendor" in bad.output and "Traceback" not in bad.output

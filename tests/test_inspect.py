"""`qfit inspect`: header-only layout checks on good and corrupted checkpoints, and vLLM Marlin rules."""

from __future__ import annotations

import json
import shutil
import struct

import pytest
from click.testing import CliRunner

from qfit.cli import cli
from qfit.errors import QfitError
from qfit.quantize.inspect import (
    inspect_checkpoint,
    marlin_config_failures,
    marlin_shape_failures,
)
from qfit.quantize.job import QuantizeJob
from qfit.quantize.run import quantize


@pytest.fixture(scope="module")
def rtn_ckpt(tiny_llama_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("inspect") / "rtn-w4g32"
    quantize(str(tiny_llama_dir), out, QuantizeJob.from_flags(bits=4, group_size=32, method="rtn"))
    return out


def _copy(src, tmp_path):
    dst = tmp_path / "ckpt"
    shutil.copytree(src, dst)
    return dst


def _rewrite_header(path, edit):
    """Edit the JSON header of a safetensors file in place (data untouched), as a corruption would."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    edit(header)
    new = json.dumps(header).encode()
    new += b" " * (-len(new) % 8)
    path.write_bytes(struct.pack("<Q", len(new)) + new + raw[8 + n:])


def _edit_config(ckpt, **changes):
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["quantization_config"].update(changes)
    (ckpt / "config.json").write_text(json.dumps(cfg))


def test_good_checkpoint(rtn_ckpt):
    r = inspect_checkpoint(rtn_ckpt)
    assert r.ok and r.config_problems == []
    assert (r.quant_method, r.format, r.bits, r.group_size, r.sym, r.desc_act) == ("gptq", "gptq", 4, 32, True, False)
    assert len(r.modules) == 2 * 7
    # 4 bits + fp16 scale and packed 4-bit zero per 32 weights + int32 g_idx per input row
    assert r.quantized_params == 2 * (2 * 64 * 64 + 2 * 32 * 64 + 3 * 64 * 128)  # q,o + k,v (2 kv heads x 16) + mlp
    assert 4.5 < r.bits_per_weight < 5.5
    assert r.tensor_bytes <= r.file_bytes
    # hidden 64: every module has in_features 64 or 128 -> the 64-wide ones fail Marlin's in % 128 rule
    assert not r.marlin_compatible and any("divisible by 128" in x for x in r.marlin_reasons)


CORRUPTIONS = [
    ("qweight shape", lambda h: h["model.layers.0.self_attn.q_proj.qweight"].update(shape=[4, 64]), "qweight shape"),
    ("scales dtype", lambda h: h["model.layers.1.mlp.up_proj.scales"].update(dtype="F32"), "scales dtype F32"),
    ("qzeros shape", lambda h: h["model.layers.0.mlp.down_proj.qzeros"].update(shape=[2, 64]), "qzeros shape"),
    ("g_idx missing", lambda h: h.pop("model.layers.0.self_attn.k_proj.g_idx"), "missing g_idx"),
]


@pytest.mark.parametrize("what, edit, message", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_corrupted_tensors_are_reported(rtn_ckpt, tmp_path, what, edit, message):
    ckpt = _copy(rtn_ckpt, tmp_path)
    _rewrite_header(ckpt / "model.safetensors", edit)
    r = inspect_checkpoint(ckpt)
    assert not r.ok
    assert any(message in p for m in r.modules for p in m.problems), [m.problems for m in r.modules if m.problems]


@pytest.mark.parametrize("changes, message", [
    ({"checkpoint_format": "gptq_v2", "format": "gptq_v2"}, "only v1 'gptq'"),
    ({"quant_method": "awq"}, "quant_method"),
    ({"sym": "yes"}, "sym missing or not a boolean"),
    ({"format": "gptq_v2"}, "disagrees"),
])
def test_config_problems(rtn_ckpt, tmp_path, changes, message):
    ckpt = _copy(rtn_ckpt, tmp_path)
    _edit_config(ckpt, **changes)
    r = inspect_checkpoint(ckpt)
    assert not r.ok and any(message in p for p in r.config_problems), r.config_problems


def test_config_bits_disagreeing_with_tensors(rtn_ckpt, tmp_path):
    ckpt = _copy(rtn_ckpt, tmp_path)
    _edit_config(ckpt, bits=8)
    r = inspect_checkpoint(ckpt)
    assert not r.ok and all(any("qweight shape" in p for p in m.problems) for m in r.modules)


@pytest.mark.parametrize("bits, group, sym, failing", [
    (4, 128, True, []), (8, -1, True, []), (4, 64, False, ["sym"]), (3, 128, True, ["4 or 8 bits"]),
    (2, 32, False, ["4 or 8 bits", "sym"]), (4, 256, True, ["group size"]),
])
def test_marlin_config_rules(bits, group, sym, failing):
    reasons = marlin_config_failures(bits, group, sym)
    assert len(reasons) == len(failing) and all(f in r for f, r in zip(failing, reasons))


@pytest.mark.parametrize("in_f, out_f, group, failing", [
    (4096, 4096, 128, []), (576, 1536, 64, ["in_features 576 not divisible by 128"]),
    (4096, 4000, 128, ["out_features 4000 not divisible by 64"]), (4096, 4096, -1, []),
])
def test_marlin_shape_rules(in_f, out_f, group, failing):
    assert marlin_shape_failures(in_f, out_f, group) == failing


def test_bad_paths(tmp_path):
    with pytest.raises(QfitError, match="does not exist"):
        inspect_checkpoint(tmp_path / "nothing")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(QfitError, match="not a quantized checkpoint"):
        inspect_checkpoint(tmp_path)


def test_truncated_safetensors(rtn_ckpt, tmp_path):
    ckpt = _copy(rtn_ckpt, tmp_path)
    (ckpt / "model.safetensors").write_bytes(b"\x10\x00")
    with pytest.raises(QfitError, match="too short"):
        inspect_checkpoint(ckpt)


def test_cli_json_and_exit_codes(rtn_ckpt, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["inspect", str(rtn_ckpt), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["ok"] is True and data["bits"] == 4 and data["modules_checked"] == 14
    ckpt = _copy(rtn_ckpt, tmp_path)
    _edit_config(ckpt, bits=2)
    assert runner.invoke(cli, ["inspect", str(ckpt)]).exit_code == 1
    res = runner.invoke(cli, ["inspect", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "error:" in res.output and "Traceback" not in res.output

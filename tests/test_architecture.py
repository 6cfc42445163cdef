"""The shapes the code keeps: the planner core does no I/O, one helper writes files, one module owns paths, and no
file or function grows past what one reader holds in mind (README: development)."""

from __future__ import annotations

import ast
import builtins
import io
import os
import socket
import subprocess
from pathlib import Path

import pytest

from qfit import api, resolve
from qfit.plan import default_context, make_plan, plan_matrix
from qfit.quality import load_quality
from qfit.size.api import size
from qfit.survey import Request, survey
from qfit.workload import Workload

ROOT = Path(__file__).resolve().parents[1]
# dense GQA, MoE, hybrid linear attention + MoE, MLA, sliding/alternating, multimodal wrapper
MODELS = ("llama-3-8b", "qwen3-30b-a3b", "qwen3.5-35b-a3b", "deepseek-v3", "gemma-2-9b", "gemma-3-27b-it")


IO_ENTRY_POINTS = ((builtins, "open"), (io, "open"), (io, "open_code"), (os, "open"), (os, "stat"), (os, "listdir"),
                   (os, "scandir"), (socket, "socket"), (socket, "create_connection"), (subprocess, "Popen"))


def _no_io(*args, **kwargs):
    raise AssertionError(f"the planner core did I/O: {args[:1]}")


def _forbid_io(patched: pytest.MonkeyPatch) -> None:
    """Every way to reach a file, a socket or a process raises from here on."""
    for target, name in IO_ENTRY_POINTS:
        patched.setattr(target, name, _no_io)


def test_the_io_guard_bites():
    with pytest.MonkeyPatch().context() as patched:
        _forbid_io(patched)
        with pytest.raises(AssertionError, match="did I/O"):
            resolve.model("llama-3-8b")
        with pytest.raises(AssertionError, match="did I/O"):
            Path(__file__).read_text()


def test_planner_and_size_search_take_objects_and_do_no_io():
    models = [resolve.model(m) for m in MODELS]
    accs = [resolve.accelerator(g) for g in ("a6000", "h100", "M3 Max 96GB", "rtx 4090")]
    engines, quality = resolve.engines(), load_quality()
    recipes = [resolve.recipe(p) for p in ("bf16", "fp8", "gptq-int4", "awq-int4", "gguf-q4_k_m")]
    with pytest.MonkeyPatch().context() as patched:
        _forbid_io(patched)
        for model in models:
            w = Workload(default_context(model), batch=4, input_tokens=1024, output_tokens=256)
            plans = plan_matrix(model, accs, recipes, engines, w)
            assert plans and all(p.performance is not None for p in plans)
            big = make_plan(model, accs[0], recipes[0], engines.get("vllm"), w, gpus=3)   # suggestions search too
            assert big.suggestion or big.fits
            res = size(model, Workload(8192, batch=16), accs, tuple(recipes), engines, quality=quality,
                       max_total_gpus=16)
            assert res.chosen is not None
        rows = survey(models, accs[0], engines, quality, Request(context=16384, batch=2))
        assert len(rows) == len(models) and rows[0].fits
    assert api.plan("llama-3-8b", gpu="h100").fits    # and the edge still reads files once the patches are gone


def test_offload_and_speculation_plan_without_io():
    from qfit.offload import host_memory
    from qfit.speculative import speculation

    host, spec = host_memory("64GB", "80GB/s"), speculation("mtp:2", "0.8")   # the edge reads their facts
    moe, dense = resolve.model("qwen3.5-35b-a3b"), resolve.model("llama-3.1-70b")
    card, h100, engines = resolve.accelerator("rtx 4090"), resolve.accelerator("h100"), resolve.engines()
    gguf = [resolve.recipe(p) for p in ("gguf-q8_0", "gguf-q4_k_m")]
    with pytest.MonkeyPatch().context() as patched:
        _forbid_io(patched)
        w = Workload(8192)
        assert make_plan(moe, card, gguf[0], engines.get("llama.cpp"), w, host=host).offload.kind == "moe_experts"
        assert make_plan(dense, card, gguf[1], engines.get("llama.cpp"), w, host=host).offload.kind == "layers"
        assert make_plan(moe, h100, resolve.recipe("bf16"), engines.get("vllm"), w, spec=spec).speculative


def test_only_the_atomic_helper_renames_files_into_place():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "qfit").rglob("*.py")
                 if p.name != "atomic.py" and "os.replace(" in p.read_text()]
    assert offenders == []


def test_only_paths_reads_the_cache_and_config_variables():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "qfit").rglob("*.py") if p.name != "paths.py"
                 for var in ("QFIT_CACHE", "QFIT_CONFIG_DIR", "XDG_CACHE_HOME", '".cache"') if var in p.read_text()]
    assert offenders == []


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            decorators = [ast.unparse(d) for d in node.decorator_list]
            if not any(d.startswith(("click.command", "click.option", "click.argument")) for d in decorators):
                yield node


@pytest.mark.parametrize("folder", ["qfit", "scripts"])
def test_files_and_functions_stay_small(folder):
    """~400 lines a file and ~50 a function (click commands, which are mostly option declarations, aside)."""
    too_long = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > 400:
            too_long.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        too_long += [f"{path.relative_to(ROOT)}:{f.lineno} {f.name}: {f.end_lineno - f.lineno + 1} lines"
                     for f in _functions(ast.parse(text)) if f.end_lineno - f.lineno + 1 > 50]
    assert too_long == []

"""qfit size: constraint logic on hand-checked cases, ranking, costs, price files, the perf adapter, bad input (CLI)."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from qfit import resolve
from qfit.api import plan, size
from qfit.cli import cli
from qfit.deployment import Deployment
from qfit.errors import QfitError
from qfit.hardware import get_accelerator
from qfit.memory import GIB
from qfit.model.params import count_params, tensor_groups
from qfit.model.sources import load_model
from qfit.perf import estimate_performance
from qfit.precision import parse_recipe
from qfit.quality import load_quality
from qfit.size import CostParams, load_prices
from qfit.size.cost import cost_of
from qfit.size.prices import PriceBook
from qfit.size.search import SpeedInputs
from qfit.size.search import search as search_objects
from qfit.size.speed import ReplicaSpeed
from qfit.workload import Workload

W8K = Workload(context=8192, batch=1)
ENGINES = resolve.engines()


def search(model, w, accs, precisions=("bf16",), **kw):
    """The pure search with the names of a test resolved to objects, as qfit.api.size does."""
    recipes = tuple(parse_recipe(p) for p in precisions)
    return search_objects(model, w, accs, recipes, ENGINES, load_quality(), **kw)


@pytest.fixture(scope="module")
def llama70():
    return load_model("llama-3.1-70b")


@pytest.fixture(scope="module")
def qwen7():
    return load_model("qwen2.5-7b-instruct")


def run(*args):
    return CliRunner().invoke(cli, ["size", *args])


# ------------------------------------------------------------------------------------------- hand-checked constraints

def test_70b_bf16_needs_at_least_two_80gb_cards(llama70):
    h100 = get_accelerator("h100")
    params = count_params(llama70.spec).total
    # by hand: 2 bytes per weight alone exceed one card (80 GiB) but fit in two cards' vLLM budget (2 x 0.9 x 80 GiB)
    assert 2 * params / GIB > 80 and 2 * params / GIB < 2 * 0.9 * 80
    res = search(llama70, W8K, [h100], precisions=("bf16",))
    assert min(o.gpus for o in res.options) == 2
    one = [f for f in res.failures if f.tp == 1]
    assert len(one) == 1 and one[0].constraint == "memory" and one[0].shortfall > 1.6
    # and the same verdict on the 80 GB A100; a 48 GB card needs at least four (131 GiB of weights / 43.2 GiB budget)
    a100 = search(llama70, W8K, [get_accelerator("a100")], precisions=("bf16",))
    assert min(o.gpus for o in a100.options) == 2
    l40s = search(llama70, W8K, [get_accelerator("l40s")], precisions=("bf16",))
    assert min(o.gpus for o in l40s.options) == 4


def test_7b_4bit_on_one_24gb_card_serves_n_users_not_4n(qwen7):
    """N computed by hand from the KV formula: 2 (K,V) x layers x KV heads x head_dim x 2 bytes x 8192 tokens."""
    s = qwen7.spec
    assert (s.layers, s.kv_heads, s.head_dim, s.count("full")) == (28, 4, 128, 28)
    kv_user = 2 * 28 * 4 * 128 * 2 * 8192                       # 469,762,048 B = 0.4375 GiB (fp16 KV for GPTQ)
    p1 = plan(qwen7, gpu="rtx 4090", precision="gptq-int4", context=8192, batch=1, with_performance=False)
    assert p1.memory.kv_per_gpu == kv_user
    fixed = p1.memory.per_gpu - kv_user                        # weights + activations + runtime overhead, one GPU
    budget = 0.92 * 24 * GIB                                   # vLLM gpu_memory_utilization on a 24 GiB card
    n = math.floor((budget - fixed) / kv_user)
    assert 20 <= n <= 40
    card = [get_accelerator("rtx 4090")]
    kw = dict(precisions=("gptq-int4",), max_total_gpus=1, max_gpus_per_node=1)
    ok = search(qwen7, Workload(context=8192, batch=n), card, **kw)
    assert [o.gpus for o in ok.options] == [1] and ok.options[0].max_batch == n
    for users in (n + 1, 4 * n):
        bad = search(qwen7, Workload(context=8192, batch=users), card, **kw)
        assert not bad.options and bad.failures[0].constraint == "memory"
    # with more GPUs allowed, 4N users take ceil(4N / N) = 4 single-card replicas (TP=2 would hold more per card)
    more = search(qwen7, Workload(context=8192, batch=4 * n), card, precisions=("gptq-int4",),
                  max_gpus_per_node=1)
    assert min(o.gpus for o in more.options) == 4


def test_replicas_are_the_fewest_meeting_per_user_speed(qwen7):
    acc = get_accelerator("a100")
    w = Workload(context=8192, batch=64, min_tokens_per_s=60)
    res = search(qwen7, w, [acc], precisions=("bf16",), max_gpus_per_node=1)
    (o,) = res.options
    # memory alone would take one replica (64 users fit); the speed floor forces more, and one fewer misses it
    assert o.max_batch >= 64 and o.replicas > 1
    assert o.decode_tok_s >= 60 and o.batch == math.ceil(64 / o.replicas)
    assert 1 / o.speed.tpot(math.ceil(64 / (o.replicas - 1)), w.decode_context) < 60


def test_ttft_and_throughput_constraints(qwen7):
    acc = get_accelerator("h100")
    w = Workload(context=8192, batch=32, rps=4, input_tokens=2000, output_tokens=500, max_ttft_s=1.0)
    res = search(qwen7, w, [acc], precisions=("bf16",))
    assert res.options
    for o in res.options:
        assert o.ttft_s <= 1.0 and o.capacity_rps >= 4
        # capacity formula by hand: replicas / (prefill per request + output tokens x TPOT / batch)
        pre = o.speed.prefill_s(o.batch, 2000) / o.batch
        assert o.capacity_rps == pytest.approx(o.replicas / (pre + 500 * o.tpot_s / o.batch))
    tight = search(qwen7, Workload(context=8192, batch=1, max_ttft_s=1e-4), [acc], precisions=("bf16",))
    assert not tight.options and {f.constraint for f in tight.failures} == {"ttft"}


# ----------------------------------------------------------------------------------- the planner/perf adapters agree

@pytest.mark.parametrize("model,gpu,prec,tp,batch", [
    ("qwen2.5-7b-instruct", "h100", "bf16", 1, 1), ("qwen2.5-7b-instruct", "rtx 4090", "gptq-int4", 2, 24),
    ("llama-3.1-70b", "a100", "fp8", 4, 16), ("qwen3-30b-a3b", "l40s", "gguf-q4_k_m", 2, 8),
    ("gemma-2-9b", "mi300x", "awq-int4", 1, 64),
])
def test_fast_paths_equal_planner_and_estimate_performance(model, gpu, prec, tp, batch):
    loaded, acc = load_model(model), get_accelerator(gpu)
    p = parse_recipe(prec)
    eng = plan(loaded, gpu=acc, precision=prec, with_performance=False).engine
    # the planner's deployment (what plan computes) and the plan itself agree per batch, through one formula
    ref = Deployment.build(loaded, acc, tp, p, eng)
    for b in (1, batch, 3 * batch):
        planned = plan(loaded, gpu=acc, precision=prec, gpus=tp, batch=b, context=8192, input_len=2000,
                            with_performance=False, suggest=False)
        assert ref.per_gpu(8192, b, 2000) == pytest.approx(planned.memory.per_gpu, rel=1e-12)
    groups = tensor_groups(loaded.spec)
    speed = ReplicaSpeed(SpeedInputs.build(loaded.spec, groups, ref.weights.recipe), acc, prec, eng, tp, ref.kv_dtype)
    real = estimate_performance(loaded.spec, groups, ref.weights.recipe, p.name, acc, gpus=tp,
                                efficiency=eng.efficiency(acc.backend, p.name), batch=batch, input_len=2000,
                                context=4096, kv_dtype=ref.kv_dtype)
    assert speed.tpot(batch, 4096) == pytest.approx(real.tpot_s, rel=1e-12)
    assert speed.prefill_s(batch, 2000) == pytest.approx(real.ttft_s, rel=1e-12)


# ----------------------------------------------------------------------------------------------- costs and ranking

def test_cost_formulas_by_hand():
    h100 = get_accelerator("h100")
    c = cost_of(h100, 2, 1000.0, CostParams(hours_per_month=730, months=36, power_usd_per_kwh=0.12))
    assert c.rent_usd_per_hour == pytest.approx(2 * 2.69)
    assert c.usd_per_million_output_tokens == pytest.approx(2 * 2.69 / (1000 * 3600 / 1e6))
    assert c.power_kw == pytest.approx(1.4) and c.rack_units == 2
    assert c.tco_usd == pytest.approx(2 * 30000 + 1.4 * 730 * 36 * 0.12)
    assert c.tco_usd_per_hour == pytest.approx(c.tco_usd / (730 * 36))
    no_list = cost_of(get_accelerator("b200"), 1, 1000.0, CostParams())
    assert no_list.rent_usd_per_hour is not None and no_list.tco_usd is None     # B200 has no list price


def test_ranking_is_cheapest_first_and_pareto_is_non_dominated(qwen7):
    r = size(qwen7, Workload(context=8192, batch=64, min_tokens_per_s=20),
             gpus_allowed=["h100", "a100", "l40s", "rtx 4090", "l4"], with_performance=False)
    rents = [o.cost.rent_usd_per_hour for o in r.by_rent]
    assert rents == sorted(rents) and r.chosen is r.by_rent[0]
    tcos = [o.cost.tco_usd for o in r.by_tco]
    assert tcos == sorted(tcos)
    for f in r.frontier:
        assert not any(o.cost.rent_usd_per_hour <= f.cost.rent_usd_per_hour and o.throughput_tok_s >= f.throughput_tok_s
                       and o.decode_tok_s >= f.decode_tok_s and (o.cost.rent_usd_per_hour, o.throughput_tok_s,
                       o.decode_tok_s) != (f.cost.rent_usd_per_hour, f.throughput_tok_s, f.decode_tok_s)
                       for o in r.by_rent)
    # every explained accelerator is cheaper per GPU-hour than the chosen configuration's hour
    assert all(d["usd_per_gpu_hour"] < r.chosen.cost.rent_usd_per_hour for d in r.cheaper_failed)
    d = r.to_dict(top=3)
    assert d["chosen"]["cost"]["rent_usd_per_hour"] == pytest.approx(rents[0], abs=1e-4) and len(d["by_rent"]) == 3
    assert set(d["infeasible"]) == {a.short_name for a in r.accelerators} - {o.acc.short_name for o in r.found.options}


def test_price_override_changes_the_winner(qwen7, tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("name,usd_per_hour,list_usd\nH100,0.01,100\n")
    book = load_prices(f)
    r = size(qwen7, Workload(context=8192, batch=8), gpus_allowed=["h100", "rtx 4090", "l4"],
             costs=CostParams(prices=book), with_performance=False)
    assert r.chosen.acc.key == "h100-sxm" and r.chosen.cost.rent_price.value == 0.01
    assert r.chosen.cost.rent_price.source == "--prices p.csv"


def test_explanations_name_the_binding_constraint(llama70):
    # nodes of 2 GPUs, one node per replica: A40 and RTX 3090 cannot hold 131 GiB of BF16 weights in one TP group
    r = size(llama70, Workload(context=8192, batch=16, min_tokens_per_s=25), precisions=("bf16",), max_nodes=1,
             gpus_allowed=["h100", "rtx 4090", "a40", "l4", "rtx 3090"], max_gpus_per_node=2, with_performance=False)
    why = {d["accelerator"]: d for d in r.cheaper_failed}
    a40 = why["A40"]
    assert a40["constraint"] == "memory" and "2 GPU(s)/replica" in a40["detail"] and a40["shortfall"] > 1.5
    assert why["RTX 3090"]["constraint"] == "memory" and why["RTX 3090"]["shortfall"] > a40["shortfall"]
    assert r.chosen.acc.key == "h100-sxm" and r.chosen.tp == 2


def test_pcie_cards_pair_beyond_their_bridge_within_a_node(llama70):
    """One rule for plan and size: RTX 3090 / A40 go past their NVLink-bridge pairs over PCIe, up to the node."""
    r = size(llama70, Workload(context=8192, batch=16, min_tokens_per_s=25), precisions=("bf16",),
             gpus_allowed=["h100", "rtx 4090", "a40", "l4", "rtx 3090"], with_performance=False)
    why = {d["accelerator"]: d for d in r.cheaper_failed}
    assert r.chosen.acc.key == "rtx-3090" and r.chosen.tp == 8
    assert why["A40"]["constraint"] == "cost" and "(3x8)" in why["A40"]["detail"]
    # L4 holds it at TP 8 but is too slow per user even with 8 replicas
    assert why["L4"]["constraint"] == "speed" and "tok/s per user < 25" in why["L4"]["detail"]
    # H100 is cheaper per GPU-hour than the chosen hour but needs more money in all
    assert why["H100 SXM"]["constraint"] == "cost"
    assert r.chosen.headroom(r.workload)["speed_x"] >= 1
    est = r.chosen.speed.estimate(batch=8, input_len=512, context=8192)
    assert any("8 GPUs exceed the nvlink3-bridge domain of 2: tensor parallel runs over PCIe 4.0 x16 at 31.5 GB/s" in a
               for a in est.assumptions)


# --------------------------------------------------------------------------------------------------- price files

@pytest.mark.parametrize("name,text", [
    ("p.csv", "# comment\nname,usd_per_hour,list_usd\nA100,1.10,9000\nRTX 4090,0.30,\n"),
    ("p.yaml", "prices:\n  - {name: A100, usd_per_hour: 1.10, list_usd: 9000}\n  - {name: RTX 4090, usd_per_hour: 0.30}\n"),
    ("p.yml", "A100: {usd_per_hour: 1.10, list_usd: 9000}\nRTX 4090: 0.30\n"),
])
def test_price_file_forms(tmp_path, name, text):
    f = tmp_path / name
    f.write_text(text)
    book = load_prices(f)
    a100, rtx = get_accelerator("a100"), get_accelerator("rtx 4090")
    assert book.rent_for(a100).value == 1.10 and book.list_for(a100).value == 9000
    assert book.rent_for(rtx).value == 0.30 and book.list_for(rtx) == rtx.list_price   # falls back to the profile
    assert "(file date)" in book.rent_for(a100).date


@pytest.mark.parametrize("text,needle", [
    ("name,usd_per_hour\nA100,abc\n", "row 1: usd_per_hour 'abc' is not a number"),
    ("name,usd_per_hour\nA100,1\nH100,-2\n", "row 2: usd_per_hour must be a positive number"),
    ("name,usd_per_hour\nA100,1\nHundred,2\n", "row 2: unknown accelerator 'Hundred'"),
    ("name,usd_per_hour\nA100,1\na100-80gb-sxm4,2\n", "row 2: A100 80GB SXM4 already priced in row 1"),
    ("name,usd_per_hour,list_usd\nA100,,\n", "row 1: A100 has neither usd_per_hour nor list_usd"),
    ("gpu,price\nA100,1\n", "CSV header must be name,usd_per_hour"),
])
def test_price_file_bad_rows(tmp_path, text, needle):
    f = tmp_path / "bad.csv"
    f.write_text(text)
    with pytest.raises(QfitError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        load_prices(f)


def test_price_file_bad_yaml(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("prices:\n  - {name: A100, usd_per_hour: 1.1, colour: red}\n")
    with pytest.raises(QfitError, match="row 1: unknown column"):
        load_prices(f)
    f.write_text("prices: [\n")
    with pytest.raises(QfitError, match="not valid YAML"):
        load_prices(f)


def test_empty_book_uses_profiles():
    acc = get_accelerator("h100")
    assert PriceBook({}, {}).rent_for(acc) == acc.rent


# ------------------------------------------------------------------------------------------------------ CLI paths

def _one_line_error(result, *needles):
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in result.output
    for n in needles:
        assert n in err, err
    return err


def test_cli_concurrency_zero():
    _one_line_error(run("-m", "qwen2.5-7b-instruct", "--concurrency", "0"), "at least 1 user")


def test_cli_unknown_accelerator_suggests():
    _one_line_error(run("-m", "qwen2.5-7b-instruct", "-u", "8", "--gpus-allowed", "H100,A100X"),
                    "--gpus-allowed", "unknown accelerator", "did you mean")


def test_cli_price_file_bad_row(tmp_path):
    f = tmp_path / "prices.csv"
    f.write_text("name,usd_per_hour\nH100,2.5\nL40S,cheap\n")
    _one_line_error(run("-m", "qwen2.5-7b-instruct", "-u", "8", "--prices", str(f)), "row 2", "'cheap'")


def test_cli_impossible_ttft_says_best_achievable():
    err = _one_line_error(run("-m", "qwen2.5-7b-instruct", "-u", "8", "--max-ttft", "1ms",
                              "--gpus-allowed", "h100,l40s"), "TTFT <= 0.001 s", "best achievable")
    assert "H100" in err


def test_cli_impossible_speed_and_memory():
    _one_line_error(run("-m", "qwen2.5-7b-instruct", "-u", "8", "--min-tokens-per-s", "100000",
                        "--gpus-allowed", "l4"), "best is")
    _one_line_error(run("-m", "llama-3.1-70b", "-u", "1", "--precision", "bf16", "--gpus-allowed", "rtx 3060",
                        "--max-gpus", "4", "--max-gpus-per-node", "4"), "closest is")


@pytest.mark.parametrize("args,needle", [
    (["--rps", "2"], "--rps needs --input-len and --output-len"),
    (["--rps", "2", "--input-len", "8k", "--output-len", "1k"], "exceeds --context"),
    (["--max-ttft", "soon"], "cannot read --max-ttft"),
    (["--precision", "int5"], "precision"),
    (["--engine", "vllm", "--precision", "gguf-q4_k_m", "--gpus-allowed", "h100"], "llama.cpp"),
    (["--engine", "vlm"], "unknown engine 'vlm'"),
    (["--prices", "/nonexistent/prices.csv"], "cannot read price file"),
    (["--json", "--csv"], "choose one of --json and --csv"),
])
def test_cli_bad_input_one_line(args, needle):
    _one_line_error(run("-m", "qwen2.5-7b-instruct", "-u", "4", *args), needle)


def test_cli_json_csv_and_plot(tmp_path):
    common = ["-m", "qwen2.5-7b-instruct", "-u", "16", "--min-tokens-per-s", "20", "--gpus-allowed", "h100,l40s,l4"]
    r = run(*common, "--json", "--top", "2")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["chosen"]["cost"]["rent_usd_per_hour"] > 0 and len(d["by_rent"]) == 2
    assert d["chosen"]["performance"]["error_band"] and d["quality"]["gptq-int4"]["caveat"] == "typical, model-dependent"
    c = run(*common, "--csv")
    lines = c.stdout.strip().splitlines()
    assert c.exit_code == 0 and lines[0].startswith("accelerator,gpus,replicas") and len(lines) > 3
    png = tmp_path / "size.png"
    p = run(*common, "--plot", str(png))
    assert p.exit_code == 0 and png.stat().st_size > 1000 and "CHOSEN" in p.stdout
    _one_line_error(run(*common, "--plot", str(png)), "exists; pass --force")


@pytest.mark.parametrize("gpu", ["rtx a6000", "rtx 3090", "h100 sxm", "l4", "M4 Max (40-core GPU)"])
@pytest.mark.parametrize("precision", ["bf16", "gptq-int4", "gguf-q4_k_m"])
def test_plan_and_size_agree_on_every_tensor_parallel_count(llama70, gpu, precision):
    """The TP table: size evaluates exactly the counts plan accepts without a cross-node warning, and for each the
    memory verdicts agree (one Deployment formula, one Accelerator.tp_limit rule)."""
    acc = get_accelerator(gpu)
    res = search(llama70, Workload(context=8192, batch=1), [acc], precisions=(precision,), max_total_gpus=8)
    fits = {o.tp for o in res.options}
    short = {f.tp for f in res.failures if f.constraint == "memory"}
    assert not fits & short
    for tp in range(1, 9):
        try:
            p = plan(llama70, gpu=acc, gpus=tp, precision=precision, context=8192, with_performance=False)
        except QfitError:               # no engine runs it there: size skips the pair too
            assert not fits | short and res.skipped
            continue
        crosses = any("exceed one node" in a for a in p.assumptions)
        splits = "do not split" not in p.reason
        assert (tp in fits | short) == (not crosses and splits), (gpu, precision, tp, p.reason)
        if tp in fits | short:
            assert (tp in fits) == p.fits, (gpu, precision, tp, p.reason)


def test_size_offers_fp16_where_a_gpu_has_no_bf16(qwen7):
    """V100/T4 have no bf16: size offers fp16 there (what engines load a bf16 model as) and never fp8."""
    res = search(qwen7, Workload(context=8192, batch=4), [get_accelerator("v100 sxm2 32gb"), get_accelerator("t4"),
                                                          get_accelerator("a100")],
                 precisions=("bf16", "fp8", "gptq-int4"))
    shown = {(o.acc.key, o.precision.name) for o in res.options} | {(f.acc.key, f.precision) for f in res.failures}
    old = {"v100-sxm2-32gb", "t4"}
    assert {p for a, p in shown if a in old} <= {"fp16", "gptq-int4"} and ("v100-sxm2-32gb", "fp16") in shown
    assert ("a100-80gb-sxm4", "bf16") in shown or ("a100-40gb-sxm4", "bf16") in shown
    assert any("t4" in s.lower() and "fp8" in s for s in res.skipped)
    both = search(qwen7, Workload(context=8192, batch=4), [get_accelerator("t4")], precisions=("bf16", "fp16"))
    rows = [(o.tp, o.replicas) for o in both.options]
    assert {o.precision.name for o in both.options} == {"fp16"} and len(rows) == len(set(rows))  # no duplicate


def test_old_option_names_still_work_for_one_release():
    new = CliRunner().invoke(cli, ["size", "-m", "llama-3-8b", "-u", "4", "--rps", "1", "--input-len", "1k",
                                   "--output-len", "256", "--json", "--gpus-allowed", "l4"])
    old = CliRunner().invoke(cli, ["size", "-m", "llama-3-8b", "-u", "4", "--rps", "1", "--input-tokens=1k",
                                   "--output-tokens", "256", "--json", "--gpus-allowed", "l4"])
    assert new.exit_code == old.exit_code == 0
    a, b = json.loads(old.stdout), json.loads(new.stdout)
    assert a["workload"] == b["workload"] and a["chosen"] == b["chosen"] and a["by_rent"] == b["by_rent"]
    assert "--input-tokens is now --input-len" in old.stderr and "--output-tokens is now --output-len" in old.stderr
    helptext = CliRunner().invoke(cli, ["size", "--help"]).output
    assert "--input-len" in helptext and "--input-tokens" not in helptext


def test_plot_frontier_line_never_dips(llama70, monkeypatch, tmp_path):
    """The plot's line is the 2-objective frontier (rent, total tok/s): it only rises; the table's 3-objective
    Pareto set is drawn as separate markers and labelled as such."""
    pytest.importorskip("matplotlib")
    from qfit.size.render import cost_throughput_frontier

    r = size(llama70, Workload(context=8192, batch=32), gpus_allowed=["a6000", "mi325x", "v100", "3090", "b200"],
             with_performance=False)
    line = cost_throughput_frontier(r.by_rent)
    xs = [o.cost.rent_usd_per_hour for o in line]
    ys = [o.throughput_tok_s for o in line]
    assert xs == sorted(xs) and ys == sorted(ys) and len(set(ys)) == len(ys)
    assert all(not any(o.cost.rent_usd_per_hour <= p.cost.rent_usd_per_hour and o.throughput_tok_s >
                       p.throughput_tok_s for o in r.by_rent) for p in line)

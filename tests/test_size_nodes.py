"""qfit size over several nodes: the replica layouts it tries, agreement with `qfit plan --nodes`, a hand-computed
cost and ranking, and the bad input of --max-nodes / --internode."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from qfit import resolve
from qfit.api import plan, size
from qfit.cli import cli
from qfit.hardware import get_accelerator
from qfit.memory import GIB
from qfit.model.sources import load_model
from qfit.perf.pipeline import internode
from qfit.precision import parse_recipe
from qfit.quality import load_quality
from qfit.size.nodes import Layout, node_layouts
from qfit.size.search import search
from qfit.workload import Workload

ENGINES = resolve.engines()


def run_search(model, w, gpu, precision, **kw):
    return search(model, w, [get_accelerator(gpu)], (parse_recipe(precision),), ENGINES, load_quality(), **kw)


@pytest.mark.parametrize("counts,max_nodes,max_gpus,layers,want", [
    # 8-GPU nodes: 2x4 = 8 fits one node (TP8); 4x4 = 16 has the same GPUs as 2x8 on more nodes: not tried
    ([1, 2, 4, 8], 4, 64, 80, [(3, 4), (2, 8), (3, 8), (4, 8)]),
    ([1, 2, 4, 8], 4, 20, 80, [(3, 4), (2, 8)]),                 # --max-gpus bounds the replica
    ([1, 2], 4, 64, 80, [(3, 1), (2, 2), (3, 2), (4, 2)]),        # nodes of two GPUs
    ([1, 2, 4, 8], 1, 64, 80, []),                               # --max-nodes 1: one node per replica
    ([1, 2], 8, 64, 3, [(3, 1), (2, 2), (3, 2)]),                # at most one pipeline stage per layer
    ([], 4, 64, 80, []),
])
def test_node_layouts_table(counts, max_nodes, max_gpus, layers, want):
    got = node_layouts(counts, max_nodes, max_gpus, layers)
    assert [(x.nodes, x.tp) for x in got] == want
    assert [x.gpus for x in got] == sorted(x.gpus for x in got)


def test_layout_names():
    assert (Layout(1, 8).short, Layout(2, 8).short, Layout(2, 8).text) == ("8", "(2x8)", "2 nodes x 8 GPUs, TP8xPP2")
    assert Layout(2, 8).to_dict() == {"nodes_per_replica": 2, "gpus_per_node": 8, "tensor_parallel": 8,
                                      "pipeline_parallel": 2, "layout": "2 nodes x 8 GPUs (TP8 x PP2)"}
    assert Layout(1, 1).long == "1 node x 1 GPU (TP1)"


# ------------------------------------------------------------------------------------- the same numbers as plan --nodes

CASES = [
    # model, GPU, precision, GPUs per node, nodes, context, users
    ("llama-3.1-405b", "h100", "fp8", 8, 2, 32768, 32),             # one 8 x H100 node holds ~10 such users
    ("llama-3.1-70b", "rtx a6000", "bf16", 2, 2, 8192, 4),          # small nodes of 2 x 48 GB
    ("qwen3-235b-a22b", "l40s", "bf16", 4, 3, 8192, 8),             # a MoE: 438 GiB of BF16 > one 8 x L40S node;
                                                                    # 3 x 4 = 12 GPUs hold it (2 x 8 not tried)
]


@pytest.mark.parametrize("model,gpu,precision,per_node,nodes,context,users", CASES)
def test_size_multi_node_option_equals_plan_nodes(model, gpu, precision, per_node, nodes, context, users):
    loaded, link = load_model(model), internode()
    w = Workload(context=context, batch=users)
    res = run_search(loaded, w, gpu, precision, max_gpus_per_node=8 if per_node == 4 else per_node, max_nodes=4,
                     link=link)
    (o,) = [x for x in res.options if (x.nodes, x.tp) == (nodes, per_node)]
    assert o.gpus == o.replicas * nodes * per_node and o.internode == link
    p = plan(loaded, gpu=gpu, precision=precision, gpus=nodes * per_node, nodes=nodes, batch=o.batch,
             context=context)
    assert p.fits and (p.pipeline, p.tensor_parallel) == (nodes, per_node) and p.engine.name == o.engine.name
    assert o.per_gpu_bytes == pytest.approx(p.memory.per_gpu, rel=1e-12)
    assert o.max_batch == min(p.max_batch, users)
    assert o.tpot_s == pytest.approx(p.performance.tpot_s, rel=1e-12)
    assert o.decode_tok_s == pytest.approx(p.performance.decode_tokens_per_s, rel=1e-12)
    one = plan(loaded, gpu=gpu, precision=precision, gpus=nodes * per_node, nodes=nodes, batch=1, context=context)
    assert o.ttft_s == pytest.approx(one.performance.ttft_s, rel=1e-12)
    shown = o.speed.estimate(batch=o.batch, input_len=context, context=context)   # the row's band and notes
    assert shown.tpot_s == pytest.approx(p.performance.tpot_s, rel=1e-12)
    assert shown.error_band == p.performance.error_band
    assert any(f"pipeline parallel: {nodes} stages on {nodes} nodes" in a for a in shown.assumptions)


def test_cli_json_of_size_and_plan_agree():
    """The same through the two commands' JSON (as printed, rounded)."""
    r = CliRunner().invoke(cli, ["size", "-m", "llama-3.1-70b", "-u", "4", "-p", "bf16", "--gpus-allowed", "a6000",
                                 "--max-gpus-per-node", "2", "--max-nodes", "2", "--json"])
    assert r.exit_code == 0, r.output
    c = json.loads(r.stdout)["chosen"]
    assert (c["nodes_per_replica"], c["gpus_per_node"], c["pipeline_parallel"], c["internode"]) == (
        2, 2, 2, "infiniband-ndr")
    q = CliRunner().invoke(cli, ["plan", "-m", "llama-3.1-70b", "-p", "bf16", "--gpu", "a6000", "--nodes", "2",
                                 "--gpus-per-node", "2", "--batch", str(c["batch_per_replica"]), "--json"])
    assert q.exit_code == 0, q.output
    p = json.loads(q.stdout)
    assert c["memory_per_gpu_gib"] == pytest.approx(p["memory"]["per_gpu_gib"], abs=5e-4)
    assert c["decode_tokens_per_s_per_user"] == pytest.approx(p["performance"]["decode_tokens_per_s"], abs=5e-3)
    csv = CliRunner().invoke(cli, ["size", "-m", "llama-3.1-70b", "-u", "4", "-p", "bf16", "--gpus-allowed", "a6000",
                                   "--max-gpus-per-node", "2", "--max-nodes", "2", "--csv"])
    header, first = (line.split(",") for line in csv.stdout.splitlines()[:2])
    row = dict(zip(header, first))
    assert (row["gpus"], row["gpus_per_replica"], row["nodes_per_replica"]) == ("4", "4", "2")


# ----------------------------------------------------------------------------------- what is searched, and when

def test_no_multi_node_where_one_node_is_enough_or_the_engine_has_no_ranks():
    llama70 = load_model("llama-3.1-70b")
    link = internode()
    # 70B BF16 fits 2 x H100 in one node: no replica of 9+ GPUs can cost less, none is tried
    res = run_search(llama70, Workload(context=8192, batch=1), "h100", "bf16", max_nodes=4, link=link)
    alone = run_search(llama70, Workload(context=8192, batch=1), "h100", "bf16", max_nodes=1)
    assert all(o.nodes == 1 for o in res.options) and res.evaluated == alone.evaluated
    # llama.cpp has no multi-node ranks (plan refuses --nodes for it): GGUF stays on one node, even where it fails
    gguf = run_search(llama70, Workload(context=8192, batch=1), "rtx 3060", "gguf-q8_0", max_gpus_per_node=2,
                      max_nodes=4, link=link)
    assert not gguf.options and {f.nodes for f in gguf.failures} == {1}


def test_a_multi_node_failure_names_its_layout():
    """Where no layout holds the model, the closest attempt is the largest multi-node one, and it says so."""
    loaded = load_model("llama-3.1-405b")
    res = run_search(loaded, Workload(context=8192, batch=1), "rtx 4090", "bf16", max_gpus_per_node=2, max_nodes=2,
                     link=internode())
    assert not res.options
    (f,) = [x for x in res.failures if x.nodes == 2]
    assert f.constraint == "memory" and "on 2 nodes x 2 GPUs, TP2xPP2" in f.detail
    assert f.to_dict()["gpus_per_replica"] == 4 and f.to_dict()["nodes_per_replica"] == 2


# ---------------------------------------------------------------------------------------- cost and ranking by hand

def test_multi_node_cost_by_hand_and_its_rank_against_one_node():
    """Llama-3.1-70B BF16, 4 users at 8k, nodes of 2 GPUs: 2 nodes x 2 RTX A6000 (one replica) against H100 SXM in
    one node (2 replicas of 2: one holds 3 such users). Rent by hand: 4 x $0.33 = $1.32/h < 4 x $2.69 = $10.76/h, so
    the two-node A6000 replica ranks first;
    TCO by hand: 4 x $4,649 + 4 x 300 W x 730 h x 36 months x $0.12/kWh = $18,596 + $3,784.32 = $22,380.32."""
    llama70 = load_model("llama-3.1-70b")
    r = size(llama70, Workload(context=8192, batch=4), precisions=("bf16",), gpus_allowed=["rtx a6000", "h100"],
             max_gpus_per_node=2, max_nodes=2, with_performance=False)
    first, second = r.by_rent[:2]
    assert (first.acc.key, first.nodes, first.tp, first.replicas, first.gpus) == ("rtx-a6000", 2, 2, 1, 4)
    assert (second.acc.key, second.nodes, second.tp, second.replicas, second.max_batch) == ("h100-sxm", 1, 2, 2, 3)
    assert first.cost.rent_usd_per_hour == pytest.approx(4 * 0.33)
    assert second.cost.rent_usd_per_hour == pytest.approx(4 * 2.69)
    assert first.cost.power_kw == pytest.approx(1.2)
    assert first.cost.tco_usd == pytest.approx(4 * 4649 + 1.2 * 730 * 36 * 0.12) == pytest.approx(22380.32)
    assert r.chosen is first and first.label == "4 x RTX A6000 (1 x [2 nodes x 2 GPUs, TP2xPP2]) bf16 (vllm)"
    assert first.layout == "1x(2x2)" and first.to_dict(r.workload)["gpus_per_replica"] == 4
    assert first.per_gpu_bytes / GIB < first.budget_bytes / GIB
    # with one node per replica the A6000 cannot hold it at all, and H100 wins
    alone = size(llama70, Workload(context=8192, batch=4), precisions=("bf16",), gpus_allowed=["rtx a6000", "h100"],
                 max_gpus_per_node=2, max_nodes=1, with_performance=False)
    assert alone.chosen.acc.key == "h100-sxm" and alone.to_dict()["search"]["internode"] is None
    assert any("multi-node replicas (up to 2 nodes, " in n for n in r.notes)


# ----------------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("args,needle", [
    (["--max-nodes", "0"], "--max-nodes must be positive, got 0"),
    (["--max-nodes", "two"], "cannot read --max-nodes 'two'"),
    (["--max-nodes", "2.5"], "--max-nodes 2.5 is not a whole number"),
    (["--max-nodes", "65"], "--max-nodes 65 is absurd (more than 64)"),
    (["--internode", "myrinet"], "unknown --internode 'myrinet'; known: infiniband-ndr, infiniband-hdr, ethernet-100g"),
    (["--internode", "myrinet", "--max-nodes", "1"], "unknown --internode 'myrinet'"),
])
def test_cli_bad_node_options_one_line(args, needle):
    r = CliRunner().invoke(cli, ["size", "-m", "qwen2.5-7b-instruct", "-u", "4", *args])
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and needle in err, err


def test_library_bounds_and_link():
    llama70 = load_model("llama-3.1-70b")
    from qfit.errors import QfitError
    from qfit.size import size as core_size

    acc = [get_accelerator("h100")]
    kw = dict(quality=load_quality(), with_performance=False)
    with pytest.raises(QfitError, match="--max-nodes must be between 1 and 64, got 0"):
        core_size(llama70, Workload(context=8192, batch=1), acc, (parse_recipe("bf16"),), ENGINES, max_nodes=0, **kw)
    with pytest.raises(QfitError, match="need the link between them"):
        core_size(llama70, Workload(context=8192, batch=1), acc, (parse_recipe("bf16"),), ENGINES, max_nodes=2, **kw)


def test_internode_choice_changes_only_the_hops():
    """--internode ethernet-100g vs the default NDR: the same replica, each decode step slower by one hop's difference,
    by hand: 2 stages -> 1 hop of batch x hidden x 2 bytes; (30 us + B / 12.5 GB/s) - (15 us + B / 50 GB/s)."""
    llama70 = load_model("llama-3.1-70b")
    kw = dict(precisions=("bf16",), gpus_allowed=["rtx a6000"], max_gpus_per_node=2, max_nodes=2,
              with_performance=False)
    ndr = size(llama70, Workload(context=8192, batch=4), **kw).chosen
    eth = size(llama70, Workload(context=8192, batch=4), internode="ethernet-100g", **kw).chosen
    assert (ndr.nodes, eth.nodes, ndr.batch, eth.batch) == (2, 2, 4, 4) and eth.internode.key == "ethernet-100g"
    b = 4 * 8192 * 2                       # batch x hidden (8,192 for Llama-3.1-70B) x bf16 activations
    assert eth.tpot_s - ndr.tpot_s == pytest.approx((30e-6 + b / 12.5e9) - (15e-6 + b / 50e9), rel=1e-6)
    assert eth.per_gpu_bytes == ndr.per_gpu_bytes

"""Terminal output fits: every table at 100 columns when not a terminal, identifying columns never cut, --wide shows
everything, and the layout rule on hand-made columns."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from qfit.cli import cli
from qfit.tables import Col, layout, table

COMMANDS = [
    ["plan", "--gpu", "A6000"],
    ["plan", "-m", "llama-3-70b", "--gpu", "A6000"],
    ["plan", "-m", "llama-3-8b"],
    ["plan", "-m", "llama-3-8b", "--gpu", "A6000,H100,4090,L40S,A100,B200,MI300X,M4 Max"],
    ["plan", "-m", "llama-3-8b", "--gpu", "A6000", "-p", "gptq-int4", "-b", "1,8,64"],
    ["plan", "-m", "llama-3-8b", "--gpu", "A6000", "-p", "gptq-int4"],
    ["size", "-m", "llama-3-70b", "-u", "32"],
    ["size", "-m", "llama-3.1-8b", "-u", "8", "--rps", "1", "--input-len", "2k", "--output-len", "256"],
    ["gpus"],
    ["models"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a) for a in COMMANDS])
def test_every_table_fits_100_columns_and_never_cuts_a_name(args):
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    assert "…" not in r.stdout      # nothing is squeezed: columns are abbreviated or left out, never cut
    if args[0] == "plan" and "-m" in args and "--gpu" in args and "-p" not in args:
        assert any(line.startswith("gptq-int4 ") for line in lines) and any(line.startswith("gptq-int8 ")
                                                                            for line in lines)


def test_wide_shows_the_columns_left_out():
    narrow = CliRunner().invoke(cli, ["size", "-m", "llama-3-70b", "-u", "32"]).stdout
    wide = CliRunner().invoke(cli, ["size", "-m", "llama-3-70b", "-u", "32", "--wide"]).stdout
    assert "left out to fit 100 columns: RU, kW, GPUs (--wide shows them)" in narrow
    assert "left out" not in wide and max(len(line) for line in wide.splitlines()) > 100
    header = next(line for line in wide.splitlines() if line.startswith("accelerator"))
    assert header.split()[-2:] == ["kW", "RU"] and "repl x GPU" in header


COLS = [Col("model", "left"), Col("params/active", drop=3, short="params"), Col("precision", "left"),
        Col("engine", "left", drop=4), Col("loss", "left", drop=2), Col("prefill", drop=5)]
ROW = ["qwen3-next-80b-a3b", "79.7B/3.87B", "awq-int4", "vllm", "+2.4% ppl", "10,528"]


@pytest.mark.parametrize("width,shown,dropped", [
    (None, ["model", "params/active", "precision", "engine", "loss", "prefill"], []),
    (200, ["model", "params/active", "precision", "engine", "loss", "prefill"], []),
    # too wide: every header shortened first, then columns left out highest drop first
    (69, ["model", "params", "precision", "engine", "loss"], ["prefill"]),
    (60, ["model", "params", "precision", "loss"], ["prefill", "engine"]),
    (10, ["model", "precision"], ["prefill", "engine", "params/active", "loss"]),   # identifying ones stay
])
def test_layout_abbreviates_then_drops_in_order(width, shown, dropped):
    keep, headers, out = layout(COLS, [ROW], width)
    assert headers == shown and out == dropped and [COLS[i].header for i in keep][0] == "model"


def test_identifying_columns_are_never_squeezed():
    from rich.console import Console

    from qfit.tables import print_table

    t, note, need = table(COLS, [ROW], 10)
    assert need == len("qwen3-next-80b-a3b") + 2 + len("precision")
    con = Console(width=10, record=True)
    print_table(con, COLS, [ROW])
    text = con.export_text()
    assert "qwen3-next-80b-a3b" in text and "awq-int4" in text and "…" not in text
    assert note and "prefill, engine, params/active, loss" in note


def test_profile_plots_carry_names_and_every_quality_figure(tmp_path):
    """Profile plots: titled with the model and baseline, every metric with an interval (perplexity and each task's
    acc and acc_norm), measured vs planned prefill and decode side by side."""
    pytest.importorskip("matplotlib")
    from qfit.profile import report

    interval = {"value": 97.0, "low": 95.0, "high": 99.0}
    result = {"model": {"path": "/m/smollm2-gptq"}, "baseline": {"path": "/m/smollm2-f32"},
              "device": {"name": "host CPU"}, "backend": "transformers",
              "accuracy": {"text": {"protocol": {"source": "xsum"}, "retained_pct": interval},
                           "tasks": [{"task": "piqa", "retained_pct": {"acc": interval, "acc_norm": interval}},
                                     {"task": "mmlu", "retained_pct": {"acc": interval}}]},
              "speed": {"prefill": [], "decode": []},
              "comparison": {"prefill": [{"input_len": 64, "measured_tokens_per_s": 100.0,
                                          "predicted_tokens_per_s": 110.0}],
                             "decode": [{"batch": b, "measured_tokens_per_s_per_seq": 5.0,
                                         "predicted_tokens_per_s_per_seq": 6.0} for b in (1, 2)]}}
    assert [name.split("\n")[0] for name, _ in report._retained_bars(result)] == ["perplexity", "piqa", "piqa", "mmlu"]
    fig = report._speed_figure(result)
    assert "smollm2-gptq on host CPU" in fig._suptitle.get_text() and len(fig.axes) == 2
    paths = report.write_plots(result, tmp_path, force=False)
    assert [p.name for p in paths] == ["retained_accuracy.png", "decode_vs_batch.png"]

"""`qfit profile --endpoint`: the protocol pieces on hand-built inputs, then whole runs against the fake
fault-injecting server (tests/endpoint_servers.py): a clean stream whose sleeps fix TTFT and ITL, every failure path
mid-sweep (kept as counts and a first message, never raised), and every probe failure (one line, exit 2)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from click.testing import CliRunner
from endpoint_servers import FakeConfig, closed_port, fake_server, prompt_tokens

from qfit.cli import cli
from qfit.endpoint import prompts
from qfit.endpoint.client import Record, Timeouts, error_message, parse_event, take_event
from qfit.endpoint.probe import base_url
from qfit.endpoint.run import EndpointOptions, PlanRequest, run_endpoint
from qfit.endpoint.stats import level_stats, measured_speed
from qfit.profile.progress import line_progress

# short enough that a fault test is quick, long enough that a loaded 2-core machine answers a healthy request in time
FAST = Timeouts(connect_s=5.0, first_token_s=1.0, stall_s=1.0, total_s=10.0)


# ------------------------------------------------------------------ pure pieces

@pytest.mark.parametrize("line,expected", [
    ("data: [DONE]", "[DONE]"),
    (": ping - 2026-01-01", None),
    ("event: message", None),
    ("", None),
    ('data: {"choices": [{"text": "a"}]}', {"choices": [{"text": "a"}]}),
    ('data:{"choices": [], "usage": {"completion_tokens": 3}}', {"choices": [], "usage": {"completion_tokens": 3}}),
])
def test_parse_event(line, expected):
    assert parse_event(line) == expected


@pytest.mark.parametrize("line,kind,message", [
    ("data: <html>", "not-openai", "not JSON"),
    ("data: [1, 2]", "not-openai", "not an object"),
    ('data: {"id": "x"}', "not-openai", "no choices"),
    ('data: {"error": {"message": "KV cache full"}}', "server-error", "KV cache full"),
])
def test_parse_event_refuses(line, kind, message):
    from qfit.endpoint.client import ProtocolError
    with pytest.raises(ProtocolError, match=message) as info:
        parse_event(line)
    assert info.value.kind == kind


def test_take_event_counts_tokens_not_the_closing_chunk():
    rec = Record()
    events = [({"choices": [{"text": "a", "finish_reason": None}]}, 0.1),
              ({"choices": [{"text": "", "finish_reason": None}]}, 0.2),     # an empty token (a special one) counts
              ({"choices": [{"text": "b", "finish_reason": None}]}, 0.3),
              ({"choices": [{"text": "", "finish_reason": "length"}]}, 0.35),  # the closing chunk does not
              ({"choices": [], "usage": {"prompt_tokens": 17, "completion_tokens": 3}}, 0.4)]
    for doc, t in events:
        take_event(rec, doc, t)
    assert rec.token_times == [0.1, 0.2, 0.3]
    assert (rec.finish_reason, rec.usage_prompt_tokens, rec.usage_completion_tokens) == ("length", 17, 3)


@pytest.mark.parametrize("status,reason,body,expected", [
    (500, "Internal Server Error", b'{"error": {"message": "OOM"}}', "HTTP 500 Internal Server Error: OOM"),
    (400, "Bad Request", b'{"detail": "bad"}', "HTTP 400 Bad Request: {'detail': 'bad'}"),
    (502, "Bad Gateway", b"<html>nginx</html>", "HTTP 502 Bad Gateway: <html>nginx</html>"),
    (503, "", b"", "HTTP 503"),
])
def test_error_message(status, reason, body, expected):
    assert error_message(status, reason, body) == expected


@pytest.mark.parametrize("url,base", [
    ("http://h:8000", "http://h:8000"), ("http://h:8000/", "http://h:8000"), ("http://h:8000/v1", "http://h:8000"),
    ("http://h/proxy/v1/", "http://h/proxy"), ("http://h:1/v1/completions", "http://h:1"),
])
def test_base_url(url, base):
    assert base_url(url) == base


def test_prompts_have_the_length_and_distinct_starts():
    text = " ".join(f"w{i}" for i in range(5000))
    cuts = [prompts.prompt_at(text, i, 300) for i in range(20)]
    assert all(len(c) == 300 for c in cuts)
    assert len({c[:40] for c in cuts}) == 20
    assert len(prompts.prompt_at("short text", 3, 100)) == 100        # repeated when too short
    assert prompts.rescale(400, 100, 134) == 299                       # 400 * 100 / 134 = 298.5
    assert [prompts.close_enough(100, s) for s in (98, 102, 103)] == [True, True, False]
    assert prompts.close_enough(10, 11)                                # one token always tolerated


def _rec(start, times, end, usage=None, kind=None):
    return Record(start_s=start, end_s=end, token_times=list(times), usage_completion_tokens=usage, error_kind=kind,
                  error=None if kind is None else "boom")


def test_level_stats_hand_computed():
    recs = [_rec(0.0, [0.1, 0.2, 0.4], 0.5),               # tpot (0.4-0.1)/2 = 0.15; itl 0.1, 0.2
            _rec(0.5, [0.3, 0.4, 0.5], 1.5, usage=5),       # usage says 5 tokens: tpot 0.2/4 = 0.05; itl 0.1, 0.1
            _rec(1.0, [], 2.0, kind="http-5xx")]
    s = level_stats(recs, output_len=3)
    assert (s["requests"], s["completed"], s["failed"], s["errors"]) == (3, 2, 1, {"http-5xx": 1})
    assert s["first_error"] == "http-5xx: boom" and s["short_outputs"] == 0
    assert s["wall_s"] == 2.0                                # first start 0.0 -> last end 2.0
    assert s["request_throughput_per_s"] == 1.0 and s["output_tokens_per_s"] == 4.0    # 2 req, 8 tokens / 2 s
    assert s["ttft_s"]["mean"] == pytest.approx(0.2) and s["tpot_s"]["mean"] == pytest.approx(0.1)
    assert s["itl_s"]["mean"] == pytest.approx(0.125) and s["itl_s"]["max"] == pytest.approx(0.2)
    assert s["e2e_s"]["mean"] == pytest.approx(0.75)        # 0.5 and 1.0
    assert s["prompt_tokens_served"] is None
    speed = measured_speed([{"concurrency": 4} | s], input_len=64)
    assert speed["decode"][0]["batch"] == 4 and speed["decode"][0]["tokens_per_s_per_seq"]["mean"] == pytest.approx(10)
    assert speed["prefill"][0]["tokens_per_s"]["mean"] == pytest.approx(64 / 0.2)


def test_a_level_with_nothing_completed_has_no_figures():
    s = level_stats([_rec(0.0, [], 1.0, kind="stall")], output_len=4)
    assert (s["completed"], s["ttft_s"], s["request_throughput_per_s"]) == (0, None, None)
    assert measured_speed([{"concurrency": 1} | s], 64) == {"prefill": [], "decode": []}


# ------------------------------------------------------------------ runs against the fake server

def _run(cfg: FakeConfig, **kw) -> dict:
    lines: list[str] = []
    with fake_server(cfg) as url:
        opts = EndpointOptions(url=url, **({"input_len": 64, "output_len": 6, "concurrencies": (1,), "requests": 3,
                                            "text": "pydoc", "timeouts": FAST} | kw))
        result = run_endpoint(opts, line_progress(lines.append))
    assert any("done" in line for line in lines)
    return result


def test_a_clean_stream_is_timed_by_the_servers_sleeps():
    ttft, itl = 0.2, 0.05
    r = _run(FakeConfig(ttft_s=ttft, itl_s=itl), timeouts=replace(FAST, first_token_s=2.0))
    lv = r["levels"][0]
    assert (lv["completed"], lv["failed"], lv["short_outputs"]) == (3, 0, 0)
    assert lv["output_tokens"]["mean"] == 6 and r["protocol"]["output_tokens_source"] == "usage.completion_tokens"
    # lower bounds are what the sleeps guarantee; upper bounds allow a loaded machine 0.3 s / 0.1 s of lateness
    assert ttft <= lv["ttft_s"]["min"] and lv["ttft_s"]["max"] < ttft + 0.3
    assert itl * 0.9 <= lv["itl_s"]["mean"] < itl + 0.1
    assert lv["tpot_s"]["mean"] == pytest.approx(lv["itl_s"]["mean"], rel=1e-6)   # tokens one per chunk
    assert lv["e2e_s"]["min"] >= ttft + 5 * itl
    assert r["protocol"]["fields_accepted"] == ["ignore_eos", "min_tokens", "stream_options"]
    assert prompts.close_enough(64, r["protocol"]["input_len_probe_served"])   # the length search found it
    assert prompts.close_enough(64, lv["prompt_tokens_served"]["mean"])
    assert r["complete"] and r["prediction"]["available"] is False and "--model" in r["prediction"]["reason"]


def test_without_usage_in_the_stream_tokens_are_counted_from_chunks():
    r = _run(FakeConfig(usage_in_stream=False))
    lv = r["levels"][0]
    assert r["protocol"]["output_tokens_source"] == "chunks counted"
    assert lv["output_tokens"]["mean"] == 6 and lv["prompt_tokens_served"] is None


def test_a_server_refusing_the_extra_fields_is_measured_without_them():
    cfg = FakeConfig(reject_extras=True)
    r = _run(cfg)
    assert r["protocol"]["fields_accepted"] == [] and r["levels"][0]["completed"] == 3
    streamed = [b for b in cfg.bodies if b.get("stream")]
    assert "ignore_eos" in streamed[0] and not any("ignore_eos" in b for b in streamed[1:])


# mode -> error kind, words of the first error; the probe's stream and the warm-up (ok_first=2) succeed
FAULTS = [
    ("http-500", "http-5xx", "CUDA out of memory"),
    ("not-json", "not-openai", "(Content-Type text/html, not an event stream)"),
    ("stall", "timeout-first-token", "no bytes for 1 s"),
    ("stall-mid", "stall", "no bytes for 1 s"),
    ("die", "disconnect", "after 2 tokens"),
]


@pytest.mark.parametrize("mode,kind,words", FAULTS)
def test_faults_mid_sweep_are_counted_not_raised(mode, kind, words):
    r = _run(FakeConfig(mode=mode, ok_first=2, stall_s=3.0), concurrencies=(1, 2), requests=2)
    assert len(r["levels"]) == 2 and not r["complete"]
    for lv in r["levels"]:
        assert (lv["completed"], lv["failed"], lv["errors"]) == (0, 2, {kind: 2})
        assert lv["first_error"].startswith(kind) and words in lv["first_error"]
        assert lv["ttft_s"] is None and lv["output_tokens_per_s"] is None
    assert r["measured"] == {"prefill": [], "decode": []}


def test_a_request_over_the_total_timeout_is_cut():
    r = _run(FakeConfig(ok_first=2, mode="ok", itl_s=0.1), output_len=40, requests=1,
             timeouts=replace(FAST, total_s=2.0))
    lv = r["levels"][0]
    assert lv["errors"] == {"timeout-total": 1} and "2 s" in lv["first_error"]


def test_partial_results_are_kept():
    r = _run(FakeConfig(mode="alternate", ok_first=2), requests=4)
    lv = r["levels"][0]
    assert (lv["completed"], lv["failed"], lv["errors"]) == (2, 2, {"http-5xx": 2})
    assert lv["ttft_s"]["n"] == 2 and r["measured"]["decode"][0]["batch"] == 1


def test_a_server_stopping_at_eos_is_flagged_short():
    r = _run(FakeConfig(mode="eos", ok_first=2, eos_after=3))
    lv = r["levels"][0]
    assert lv["short_outputs"] == 3 and lv["output_tokens"]["mean"] == 3 and lv["failed"] == 0


def test_rate_mode_draws_no_plan_and_says_why():
    r = _run(FakeConfig(), rates=(50.0,), requests=4, plan=PlanRequest("llama-3-8b", "h100", "vllm", None))
    assert r["levels"][0]["rate"] == 50.0 and r["levels"][0]["completed"] == 4
    assert r["protocol"]["mode"] == "rate" and "rates" in r["prediction"]["reason"]


# ------------------------------------------------------------------ the CLI: probe failures and flag checks

def _cli(args):
    return CliRunner().invoke(cli, ["profile", *args])


@pytest.mark.parametrize("cfg,extra,words", [
    (FakeConfig(models="html"), [], "not an OpenAI-compatible server: GET /v1/models answered JSON without"),
    (FakeConfig(models=None), [], "lists no model at /v1/models: name the served model with --served-model"),
    (FakeConfig(), ["--served-model", "other"], "serves fake-model, not other"),
    (FakeConfig(mode="http-500"), [], "a streamed completion failed (http-5xx): HTTP 500"),
    (FakeConfig(mode="not-json"), [], "a streamed completion failed (not-openai)"),
])
def test_probe_failures_are_one_line(cfg, extra, words):
    with fake_server(cfg) as url:
        r = _cli(["--endpoint", url, "--text", "pydoc", *extra])
    assert r.exit_code == 2 and words in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_an_unreachable_url_is_one_line():
    r = _cli(["--endpoint", f"http://127.0.0.1:{closed_port()}", "--text", "pydoc"])
    assert r.exit_code == 2 and "cannot reach http://127.0.0.1" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("args,words", [
    (["ckpt", "--endpoint", "http://x"], "drop MODEL (ckpt)"),
    (["--endpoint", "http://x", "--baseline", "b"], "--baseline applies to a model qfit loads"),
    (["--endpoint", "http://x", "--eval", "ppl"], "--eval applies to a model qfit loads"),
    (["ckpt", "--gpu", "h100"], "--gpu applies to --endpoint URL only"),
    ([], "give MODEL (a checkpoint to load) or --endpoint URL"),
    (["--endpoint", "http://x", "--rate", "2", "-b", "1"], "--rate and -b/--batch are two kinds of sweep"),
    (["--endpoint", "http://x", "--model", "llama-3-8b"], "a plan needs both --model and --gpu (got --model only)"),
    (["--endpoint", "http://x", "--engine", "vllm"], "--engine/--precision describe the plan"),
    (["--endpoint", "http://x", "--input-len", "128,512"], "--input-len: one length with --endpoint"),
    (["--endpoint", "http://x", "--output-len", "1"], "--output-len must be at least 2"),
    (["--endpoint", "http://x", "--stall-timeout", "0"], "--stall-timeout must be positive"),
    (["--endpoint", "ftp://x"], "is not an http:// or https:// URL"),
])
def test_flag_errors_are_one_line(args, words):
    r = _cli(args)
    assert r.exit_code == 2 and words in r.output, r.output


def test_json_on_stdout_and_files_in_out(tmp_path):
    out = tmp_path / "run"
    with fake_server(FakeConfig()) as url:
        args = ["--endpoint", url, "--text", "pydoc", "--input-len", "32", "--output-len", "4", "-b", "1,2",
                "--requests", "2", "--warmup", "0", "--model", "llama-3-8b", "--gpu", "h100", "--engine", "vllm",
                "--json", "--out", str(out), "--plot"]
        r = _cli(args)
        assert r.exit_code == 0, r.output
        doc = json.loads(r.stdout)                                   # stdout is nothing but the JSON
        again = _cli(args)
    assert again.exit_code == 2 and "exists; pass --force" in again.output
    assert doc["schema"] == "qfit.profile.endpoint/1" and [lv["concurrency"] for lv in doc["levels"]] == [1, 2]
    assert doc["prediction"]["available"] and [d["batch"] for d in doc["comparison"]["decode"]] == [1, 2]
    assert json.loads((out / "endpoint.json").read_text())["levels"] == doc["levels"]
    assert "| c=2 | 2/2 | 0 |" in (out / "endpoint.md").read_text()
    assert (out / "endpoint.png").stat().st_size > 0


def test_the_plot_draws_the_plan_or_says_why_not():
    from qfit.endpoint.plot import figure
    with fake_server(FakeConfig()) as url:
        base = EndpointOptions(url=url, input_len=32, output_len=4, concurrencies=(1, 2), requests=2, warmup=0,
                               text="pydoc", timeouts=FAST)
        plain = run_endpoint(base, line_progress(lambda _: None))
    fig = figure(plain)
    labels = [line.get_label() for ax in fig.axes for line in ax.get_lines()]
    assert not any("qfit plan" in label for label in labels)
    assert any("no plan drawn" in t.get_text() for t in fig.texts)
    plain["prediction"] = {"available": True, "decode": [{"batch": 1, "tpot_s": 0.01, "ttft_s": 0.02,
                                                          "tokens_per_s_per_seq": 100.0}]}
    labels = [line.get_label() for ax in figure(plain).axes for line in ax.get_lines()]
    assert "TPOT (qfit plan)" in labels and "decode tokens/s (qfit plan)" in labels


def test_prompt_tokens_of_the_fake_tokenizer():
    assert [prompt_tokens(p) for p in ("", "abc", "abcd")] == [1, 1, 2]


def test_a_refused_connection_mid_sweep_is_a_counted_failure():
    import asyncio

    from qfit.endpoint.client import completion_body, stream_completion
    url = f"http://127.0.0.1:{closed_port()}/v1/completions"
    rec = asyncio.run(stream_completion(url, completion_body("m", "hi", 4, stream=True, extras=frozenset()), FAST, {},
                                        Record()))
    assert rec.error_kind == "connect" and "cannot connect to 127.0.0.1" in rec.error and rec.end_s is not None


def test_ctrl_c_keeps_the_finished_levels(monkeypatch):
    from qfit.endpoint import run as run_module
    real = run_module._level
    calls = []

    async def level(opts, server, text, kind, value, first_index, tick):
        calls.append(value)
        if len(calls) == 3:          # warm-up, c=1, then Ctrl-C during c=2
            raise KeyboardInterrupt
        return await real(opts, server, text, kind, value, first_index, tick)
    monkeypatch.setattr(run_module, "_level", level)
    r = _run(FakeConfig(), concurrencies=(1, 2), requests=2)
    assert r["interrupted"] and not r["complete"] and [lv["concurrency"] for lv in r["levels"]] == [1]
    from qfit.endpoint.report import notes
    assert "interrupted (Ctrl-C): 1 of 2 levels finished" in "\n".join(notes(r))


def test_the_table_and_notes_on_stdout():
    with fake_server(FakeConfig(mode="eos", ok_first=1, eos_after=2)) as url:
        r = _cli(["--endpoint", url, "--text", "pydoc", "--input-len", "32", "--output-len", "4", "-b", "1",
                  "--requests", "2", "--warmup", "0", "--wide"])
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert out.startswith("endpoint") and "c=1" in out and "TTFT ms mean/p50/p90/p99" in out
    assert "c=1: 2 request(s) ended before 4 tokens" in out
    assert "no plan drawn: give --model, --gpu" in out
    assert "qfit profile: concurrency 1" not in out          # progress is on stderr only


@pytest.mark.parametrize("plan,words", [
    (PlanRequest("llama-3-8b", "no-such-gpu-9000", None, None), "no plan drawn: "),
    (PlanRequest("llama-3-8b", "h100", "no-such-engine", None), "no plan drawn: the planner cannot describe"),
])
def test_a_plan_the_planner_cannot_draw_is_said_not_raised(plan, words):
    r = _run(FakeConfig(), requests=1, warmup=0, plan=plan)
    assert r["prediction"]["available"] is False and r["prediction"]["reason"].startswith(words)
    assert r["levels"][0]["completed"] == 1 and r["comparison"]["decode"][0]["predicted_tpot_s"] is None


RAW = [   # what a raw socket answers -> (error kind or None, tokens received)
    (b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
     b'data: {"choices": [{"text": "a", "finish_reason": null}]}\n\n'
     b'data: {"choices": [{"text": "b", "finish_reason": "length"}]}\n\ndata: [DONE]\n\n', None, 2),   # to the end
    (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "protocol", 0),                                                 # not HTTP
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "protocol", 0),                 # bad chunk
    (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy", "http-5xx", 0),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\ndata: ", "disconnect", 0),                     # cut short
]


@pytest.mark.parametrize("raw,kind,tokens", RAW)
def test_raw_http_answers(raw, kind, tokens):
    import asyncio

    from qfit.endpoint.client import completion_body, stream_completion

    async def go():
        async def answer(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(raw)
            await writer.drain()
            writer.close()
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await stream_completion(f"http://127.0.0.1:{port}/v1/completions",
                                           completion_body(None, "hi", 2, stream=True, extras=frozenset()), FAST, {},
                                           Record())
    rec = asyncio.run(go())
    assert (rec.error_kind, len(rec.token_times)) == (kind, tokens), rec.error


def test_the_llama_cpp_starter_reports_a_server_that_does_not_start(tmp_path):
    """The helper the llama.cpp server test uses: a server process that exits is a RuntimeError with its output."""
    import importlib.util

    from endpoint_servers import llama_cpp_server
    if importlib.util.find_spec("llama_cpp") is not None:
        pytest.skip("llama_cpp is installed: the starter is exercised by the real server test")
    with pytest.raises(RuntimeError, match=r"exited with 1:[\s\S]*No module named 'llama_cpp'"):
        with llama_cpp_server(str(tmp_path / "missing.gguf"), timeout_s=60):
            pass

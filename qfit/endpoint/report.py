"""Tables (terminal and markdown) of an endpoint profile, and its files in --out. Rendering is pure over the result."""

from __future__ import annotations

from pathlib import Path

from qfit.atomic import refuse_existing, write_report_pair

NAMES = ("endpoint.json", "endpoint.md")
PLOT_NAME = "endpoint.png"
HEAD = ["level", "done/sent", "errors", "TTFT ms mean/p50/p90/p99", "TPOT ms mean/p50/p99", "predicted TPOT ms",
        "out tok/s", "req/s", "ITL ms mean/p50/p99", "E2E s mean/p50/p90/p99", "out tokens mean"]
# which columns go first when the terminal is narrow (0: never); the latency and throughput figures stay longest
DROP = [0, 0, 0, 1, 2, 4, 3, 5, 6, 7, 8]


def _ms(s: dict | None, keys=("mean", "p50", "p90", "p99")) -> str:
    return "/".join(f"{1000 * s[k]:.1f}" for k in keys) if s else "n/a"


def _s(s: dict | None) -> str:
    return "/".join(f"{s[k]:.2f}" for k in ("mean", "p50", "p90", "p99")) if s else "n/a"


def _f(x, fmt="{:.3g}") -> str:
    return fmt.format(x) if x is not None else "n/a"


def level_label(level: dict) -> str:
    return f"c={level['concurrency']}" if "concurrency" in level else f"{level['rate']:g} req/s"


def rows(result: dict) -> list[list[str]]:
    pred = {d["batch"]: d for d in result["prediction"].get("decode", [])} if result["prediction"].get("available") else {}
    out = []
    for lv in result["levels"]:
        errors = ", ".join(f"{k} {v}" for k, v in lv["errors"].items()) or "0"
        p = pred.get(lv.get("concurrency"))
        out.append([level_label(lv), f"{lv['completed']}/{lv['requests']}", errors, _ms(lv["ttft_s"]),
                    _ms(lv["tpot_s"], ("mean", "p50", "p99")), f"{1000 * p['tpot_s']:.1f}" if p else "n/a",
                    _f(lv["output_tokens_per_s"]), _f(lv["request_throughput_per_s"]),
                    _ms(lv["itl_s"], ("mean", "p50", "p99")), _s(lv["e2e_s"]),
                    _f(lv["output_tokens"]["mean"]) if lv["output_tokens"] else "n/a"])
    return out


def notes(result: dict) -> list[str]:
    """The lines under the table: protocol, shortfalls, the first error of each failing level, the plan or why not."""
    pr, ep = result["protocol"], result["endpoint"]
    served = pr["input_len_probe_served"]
    out = [f"{ep['url']} ({ep['served_model']}): prompts of {pr['input_len']} tokens asked"
           + (f", {served} served (usage.prompt_tokens of the probe)" if served is not None else
              f" ({pr['prompt_tokens_source']})")
           + f", {pr['output_len']} output tokens asked, counted from {pr['output_tokens_source']}; "
           f"{pr['warmup_requests']} warm-up request(s); fields accepted: {', '.join(pr['fields_accepted']) or 'none'}."]
    for lv in result["levels"]:
        if lv["short_outputs"]:
            out.append(f"{level_label(lv)}: {lv['short_outputs']} request(s) ended before {pr['output_len']} tokens "
                       "(the server stopped at EOS: it ignored ignore_eos/min_tokens)")
        if lv["first_error"]:
            out.append(f"{level_label(lv)}: {lv['failed']} failed; first error: {lv['first_error']}")
    pred = result["prediction"]
    out.append("plan: " + (f"qfit plan {pred['request']['model']} on {pred['request']['gpu']} "
                           f"({pred['request']['engine'] or 'default engine'}, {pred['request']['precision'] or 'native precision'}); "
                           f"its decode error band is +-{_f((pred.get('error_band') or {}).get('decode_pct'))} %"
                           if pred.get("available") else pred["reason"]))
    if result["interrupted"]:
        out.append(f"interrupted (Ctrl-C): {len(result['levels'])} of {len(result['protocol']['levels'])} levels "
                   "finished and are reported")
    elif not result["complete"]:
        out.append("incomplete: some requests failed; the figures above are over the completed ones only")
    return out


def render_markdown(result: dict) -> str:
    head = "| " + " | ".join(HEAD) + " |\n|" + "---|" * len(HEAD)
    body = "\n".join("| " + " | ".join(r) + " |" for r in rows(result))
    return (f"## qfit profile --endpoint {result['endpoint']['url']}\n\n{result['created']}, qfit {result['qfit']}\n\n"
            f"{head}\n{body}\n\n" + "\n".join(f"- {n}" for n in notes(result)) + "\n")


def render_rich(result: dict, console, wide: bool = False) -> None:
    from qfit.tables import Col, print_table
    cols = [Col(h, "left" if i == 0 else "right", drop=DROP[i]) for i, h in enumerate(HEAD)]
    print_table(console, cols, rows(result), wide=wide, title="endpoint")
    for line in notes(result):
        console.print(line, markup=False)


def check_out(folder: Path, force: bool, plot: bool) -> None:
    """Before the run: nothing in --out is overwritten without --force."""
    from qfit.atomic import check_writable
    from qfit.errors import QfitError
    if folder.exists() and not folder.is_dir():
        raise QfitError(f"--out {folder} is a file, not a folder")
    check_writable(folder / NAMES[0]) if folder.is_dir() else check_writable(folder)
    if folder.is_dir() and not force:
        for name in NAMES + ((PLOT_NAME,) if plot else ()):
            refuse_existing(folder / name)


def write_outputs(result: dict, out: Path, force: bool, plot: bool) -> list[Path]:
    paths = write_report_pair(out, *NAMES, result, render_markdown(result), force)
    if plot:
        from qfit.endpoint.plot import write_plot
        paths.append(write_plot(result, out / PLOT_NAME, force))
    return paths

"""endpoint.png: latency and throughput against concurrency (or request rate), measured, with qfit plan's predicted
curve beside it when a plan was drawn and the reason written on the figure when not. matplotlib is imported here only."""

from __future__ import annotations

from pathlib import Path

from qfit.atomic import write_with
from qfit.errors import QfitError


def _xy(levels: list[dict], key: str, stat: str, x: str, scale: float = 1.0):
    pts = [(lv[x], lv[key][stat] * scale) for lv in levels if lv.get(key)]
    return [p for p, _ in pts], [v for _, v in pts]


def figure(result: dict):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise QfitError("--plot needs matplotlib: pip install 'qfit[plot]'") from None
    levels, pred = result["levels"], result["prediction"]
    x = "rate" if result["protocol"]["mode"] == "rate" else "concurrency"
    fig, (ax_lat, ax_tps) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, stat, label, style in (("ttft_s", "p50", "TTFT p50", "o-"), ("tpot_s", "mean", "TPOT mean", "s-"),
                                    ("itl_s", "p99", "ITL p99", "^-")):
        ax_lat.plot(*_xy(levels, key, stat, x, 1000), style, label=f"{label} (measured)")
    ok = [lv for lv in levels if lv["output_tokens_per_s"] is not None]
    ax_tps.plot([lv[x] for lv in ok], [lv["output_tokens_per_s"] for lv in ok], "o-", label="output tokens/s (measured)")
    if pred.get("available"):
        dec = pred["decode"]
        ax_lat.plot([d["batch"] for d in dec], [1000 * d["tpot_s"] for d in dec], "s--", label="TPOT (qfit plan)")
        ax_lat.plot([d["batch"] for d in dec], [1000 * d["ttft_s"] for d in dec], "o--", label="TTFT (qfit plan)")
        ax_tps.plot([d["batch"] for d in dec], [d["batch"] * d["tokens_per_s_per_seq"] for d in dec], "s--",
                    label="decode tokens/s (qfit plan)")
    else:
        fig.text(0.5, 0.01, pred["reason"], ha="center", fontsize=8, wrap=True)
    for ax, ylabel in ((ax_lat, "ms"), (ax_tps, "tokens/s")):
        ax.set_xlabel("request rate (req/s)" if x == "rate" else "concurrent streams")
        ax.set_ylabel(ylabel)
        if x == "concurrency":
            ax.set_xscale("log", base=2)
            ax.set_xticks([lv[x] for lv in levels], [str(lv[x]) for lv in levels])
        ax.legend(fontsize=8)
    pr = result["protocol"]
    fig.suptitle(f"{result['endpoint']['served_model']} at {result['endpoint']['url']}: "
                 f"{pr['input_len']} in / {pr['output_len']} out tokens", fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def write_plot(result: dict, path: Path, force: bool) -> Path:
    fig = figure(result)
    import matplotlib.pyplot as plt
    try:
        return write_with(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"), overwrite=force, suffix=".png")
    finally:
        plt.close(fig)

"""--plot FILE.png: memory breakdown and tokens/s vs batch in one figure, readable without the terminal.

matplotlib is imported inside `write_plot` only (it is the [plot] extra); the PNG is written atomically.
"""

from __future__ import annotations

from pathlib import Path

from qfit.atomic import refuse_existing, write_with
from qfit.errors import QfitError


def write_plot(path: str | Path, *, title: str, memory_gib: dict[str, float], budget_gib: float | None,
               curve: list, memory_batch: int = 1, force: bool = False) -> Path:
    """memory_gib: {"weights": .., "kv_cache": .., ...} per GPU at `memory_batch`; curve: CurvePoint list."""
    path = Path(path)
    if not force:
        refuse_existing(path)
    fig = figure(title=title, memory_gib=memory_gib, budget_gib=budget_gib, curve=curve, memory_batch=memory_batch)
    import matplotlib.pyplot as plt

    try:
        return write_with(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"), overwrite=force, suffix=".png")
    finally:
        plt.close(fig)


def figure(*, title: str, memory_gib: dict[str, float], budget_gib: float | None, curve: list, memory_batch: int = 1):
    """The two panels as a matplotlib Figure (tests read it back; write_plot saves it)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise QfitError("--plot needs matplotlib: pip install 'qfit[plot]'") from None
    fig, (ax_mem, ax_tps) = plt.subplots(1, 2, figsize=(11, 4.2))
    _memory(ax_mem, memory_gib, budget_gib)
    ax_mem.set_title(f"memory per GPU at batch {memory_batch}")
    _throughput(ax_tps, curve)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _memory(ax, memory_gib: dict[str, float], budget_gib: float | None) -> None:
    bottom = 0.0
    for name, gib in memory_gib.items():
        ax.bar(["memory"], [gib], bottom=bottom, label=f"{name} {gib:.1f} GiB")
        bottom += gib
    if budget_gib:
        ax.axhline(budget_gib, color="red", linestyle="--", label=f"usable {budget_gib:.1f} GiB")
    ax.set_ylabel("GiB per GPU")
    ax.legend(fontsize=8)


def _throughput(ax, curve: list) -> None:
    if not curve:
        ax.set_axis_off()
        return
    b = [p.batch for p in curve]
    ax.plot(b, [p.aggregate_tokens_per_s for p in curve], marker="o", label="total tokens/s")
    ax.plot(b, [p.decode_tokens_per_s for p in curve], marker="s", label="per-sequence tokens/s")
    over = [p.batch for p in curve if p.fits is False]
    if over:   # one shaded span and one legend entry, not a label per point (they overlapped)
        ax.axvspan(min(over) / 2 ** 0.5, max(b) * 2 ** 0.5, color="red", alpha=0.08,
                   label=f"does not fit in memory (batch >= {min(over)})")
    flip = next((p.batch for p in curve if p.bound == "compute"), None)
    if flip:
        ax.axvline(flip, color="grey", linestyle=":", label=f"compute-bound from batch {flip}")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch (concurrent sequences)")
    ax.set_ylabel("decode tokens/s")
    ax.set_title("decode throughput vs batch")
    ax.legend(fontsize=8)


def plot_plans(plans: list, path: str | Path, force: bool = False) -> Path:
    """One plan (or a batch curve of plans of one configuration) -> PNG. A single plan gets a batch sweep 1..256
    of the same configuration so the throughput panel says where decode turns compute-bound."""
    from qfit.memory import GIB
    from qfit.plan import curve_points, make_plan
    from qfit.workload import Workload

    p0 = plans[0]
    if len(plans) == 1:
        batches = [b for b in (1, 2, 4, 8, 16, 32, 64, 128, 256) if b != p0.batch]
        plans = [p0] + [make_plan(p0.model, p0.accelerator, p0.precision, p0.engine, Workload(p0.context, b),
                                  gpus=p0.gpus, kv_dtype=p0.kv_dtype, suggest=False) for b in batches]
        plans.sort(key=lambda p: p.batch)
    curve = curve_points(plans)
    m, n = p0.memory, p0.gpus
    memory = {"weights": m.weights / n / GIB, "KV cache": m.kv_per_gpu / GIB, "activations": m.activations / n / GIB,
              "overhead": m.overhead / n / GIB}
    title = (f"{p0.model.spec.name} on {n} x {p0.accelerator.short_name}, {p0.precision.name}, {p0.engine.name}, "
             f"context {p0.context:,}, batch {plans[0].batch}-{plans[-1].batch}")
    return write_plot(path, title=title, memory_gib=memory, budget_gib=p0.budget_per_gpu / GIB, curve=curve,
                      memory_batch=p0.batch, force=force)

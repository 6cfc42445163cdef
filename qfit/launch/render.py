"""A launch plan as text, printed after the plan's tables (plain lines: they are commands to copy)."""

from __future__ import annotations

from qfit.launch.build import LaunchPlan


def render_text(launch: LaunchPlan) -> str:
    kv = launch.plan.kv_pool.to_dict()
    lines = [f"Launch: {launch.engine} {launch.table.version} (flags read from {launch.table.package})"]
    if launch.environment:
        where = "every node" if len(launch.commands) > 1 else "the server's"
        lines.append(f"  # environment ({where})")
        lines += [f"  export {k}={v}" for k, v in launch.environment.items()]
    for c in launch.commands:
        lines += [f"  # {c.where}", f"  {c.shell}"]
    lines.append(f"Predicted at start-up: KV cache {kv['capacity_tokens']:,} tokens, max concurrency "
                 f"{kv['max_concurrency']:g} x {launch.max_model_len:,}-token requests")
    for name, what in launch.placeholders.items():
        lines.append(f"Fill in {name}: {what}")
    if launch.defaults_left_out:
        lines.append(f"Left at the engine default: {', '.join(launch.defaults_left_out)}")
    lines += [f"Note: {n}" for n in launch.notes]
    return "\n".join(lines)

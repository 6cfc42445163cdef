"""From a plan to the commands that start the server: `qfit plan ... --launch vllm|sglang|llama.cpp`.

    from qfit.launch import build_launch
    launch = build_launch(plan, "vllm")          # LaunchPlan: per-node argv, environment, KV figures, notes
    print(render_text(launch))

Pure: takes a Plan and the engine's launch flag table (profiles/engines/launch/<engine>.yaml, read from the engine's
own source); emits only flags the table has.
"""

from qfit.launch.build import LaunchPlan, NodeCommand, build_launch
from qfit.launch.render import render_text

__all__ = ["LaunchPlan", "NodeCommand", "build_launch", "render_text"]

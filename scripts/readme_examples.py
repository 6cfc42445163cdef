#!/usr/bin/env python3
"""Re-run the `$ qfit plan ...` / `$ qfit size ...` examples in README.md and replace their output in place, so every
number the README quotes is one the code prints today.

Usage: PYTHONPATH=. python scripts/readme_examples.py [--check]   (--check: exit 1 if any block would change)
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```\n(\$ qfit (?:plan|size) .*?)```", re.S)


def run(command: str) -> str:
    args = shlex.split(command.replace("\\\n", " ").removeprefix("$ "))
    out = subprocess.run([sys.executable, "-m", "qfit", *args[1:]], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1",
                              "HOME": str(Path.home()), "COLUMNS": "160"})
    if out.returncode != 0:
        raise SystemExit(f"{command!r} failed: {out.stderr.strip()}")
    return "\n".join(line.rstrip() for line in out.stdout.splitlines())   # rich pads wrapped lines with a space


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    readme = ROOT / "README.md"
    text = readme.read_text()

    def replace(m: re.Match) -> str:
        body = m.group(1)
        lines = body.split("\n")
        n = 1
        while lines[n - 1].endswith("\\"):
            n += 1
        command = "\n".join(lines[:n])
        return f"```\n{command}\n{run(command).rstrip()}\n```"

    new = BLOCK.sub(replace, text)
    if args.check:
        return int(new != text)
    readme.write_text(new)
    print(f"updated {len(BLOCK.findall(text))} examples")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The README's plan/size examples and the prose figures quoting them are what the code prints today."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_examples_and_prose_are_current():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "readme_examples.py"), "--check"], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, ("README drifted from the code; run `PYTHONPATH=. python scripts/readme_examples.py`\n"
                                 + out.stdout + out.stderr)

"""The calibration set in CI: the planner must not regress past the figures the README publishes.

README "Speed model and its accuracy" table is made by `python scripts/validate_planner.py --markdown`; the ceilings
below are those medians plus 1.5 points of slack for floating-point and profile-rounding noise. Update both together.

The README figures were made on the rows the speed profiles were fitted on. The calibration set has since gained the
Qwen3 speed-benchmark rows (H20; transformers and SGLang; source "QwenLM/Qwen3 ..."), which no profile has seen: they
are scored separately against their own current figures (issue 12 is to improve them), so neither set can regress.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from calibration import DEFAULT_CASES  # noqa: E402
from calibration import held_out as is_held_out  # noqa: E402

# kind -> (README median abs error %, README share within +-25 %)
README_FIGURES = {"decode": (4.4, 97.0), "prefill": (5.2, 89.7),
                  "e2e": (2.9, 100.0), "memory": (0.3, 100.0)}
# The unseen Qwen3 rows as scored on 2026-11-30, after transformers' per-expert MoE loop and FP8 call cost (no prefill
# rows there): a ceiling until issue 12 lowers it further. The end-to-end figure counts (prompt + generated) tokens
# over total time, as those rows define it.
HELD_OUT_FIGURES = {"decode": (31.6, 18.2), "e2e": (31.4, 35.6), "memory": (3.0, 100.0)}
SLACK_PCT = 1.5

pytestmark = pytest.mark.skipif(not DEFAULT_CASES.is_file(), reason="calibration set not present")


def _score_rows(tmp_path_factory, keep) -> dict:
    import json

    from validate_planner import score

    lines = [ln for ln in DEFAULT_CASES.read_text().splitlines() if ln.strip() and keep(json.loads(ln))]
    path = tmp_path_factory.mktemp("cases") / "cases.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return score(str(path))[0]["overall"]


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    return _score_rows(tmp_path_factory, lambda row: not is_held_out(row))


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    return _score_rows(tmp_path_factory, is_held_out)


def _check(s: dict, median: float, within25: float) -> None:
    assert s["n"] > 0
    assert s["median_abs_pct"] <= median + SLACK_PCT, s
    assert s["within_25_pct"] >= within25 - 2 * SLACK_PCT, s


@pytest.mark.parametrize("kind", sorted(README_FIGURES))
def test_speed_medians_do_not_regress(summary, kind):
    _check(summary[kind], *README_FIGURES[kind])


@pytest.mark.parametrize("kind", sorted(HELD_OUT_FIGURES))
def test_held_out_rows_do_not_regress(held_out, kind):
    _check(held_out[kind], *HELD_OUT_FIGURES[kind])


def test_issue_targets_hold(summary):
    # issue 2: memory median < 3 %; issue 3: decode median < 10 %, >= 85 % of decode rows within +-25 %,
    # prefill median < 20 %
    assert summary["memory"]["median_abs_pct"] < 3
    assert summary["decode"]["median_abs_pct"] < 10
    assert summary["decode"]["within_25_pct"] >= 85
    assert summary["prefill"]["median_abs_pct"] < 20

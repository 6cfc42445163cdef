"""The calibration set in CI: the planner must not regress past the figures the README publishes.

README "Speed model and its accuracy" table is made by `python scripts/validate_planner.py --markdown`; the ceilings
below are those medians plus 1.5 points of slack for floating-point and profile-rounding noise. Update both together.
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

# kind -> (README median abs error %, README share within +-25 %)
README_FIGURES = {"decode": (3.9, 97.0), "prefill": (5.3, 89.7),
                  "e2e": (2.9, 100.0)}
SLACK_PCT = 1.5

pytestmark = pytest.mark.skipif(not DEFAULT_CASES.is_file(), reason="calibration set not present")


@pytest.fixture(scope="module")
def summary():
    from validate_planner import score

    return score(str(DEFAULT_CASES))[0]["overall"]


@pytest.mark.parametrize("kind", sorted(README_FIGURES))
def test_speed_medians_do_not_regress(summary, kind):
    median, within25 = README_FIGURES[kind]
    s = summary[kind]
    assert s["n"] > 0
    assert s["median_abs_pct"] <= median + SLACK_PCT, s
    assert s["within_25_pct"] >= within25 - 2 * SLACK_PCT, s


def test_issue_targets_hold(summary):
    # issue 3: decode median < 10 %, >= 85 % of decode rows within +-25 %, prefill median < 20 %
    assert summary["decode"]["median_abs_pct"] < 10
    assert summary["decode"]["within_25_pct"] >= 85
    assert summary["prefill"]["median_abs_pct"] < 20

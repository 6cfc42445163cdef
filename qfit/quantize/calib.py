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


# Built-in mixes: equal shares of windows from each source's calibration split, interleaved. One domain overfits a
# small calibration set (benchmarks/results/gptq_vs_rtn.md: GPTQ on XSum alone lost to round-to-nearest on Python docs).
MIXES = {"mix": ("xsum", "boolq-passages", "pydoc")}
DEFAULT_CALIB = "mix"


def calibration_parts(source: str) -> list[str]:
    """--calib as its text sources: a built-in mix expanded, a comma-separated list split ("mix,notes.txt" = the
    three built-ins plus a file); an existing path is one source even if its name has a comma. Pure (no reading)."""
    source = str(source).strip()
    items = [source] if "," not in source or Path(source).expanduser().exists() else \
        [p.strip() for p in source.split(",")]
    items = [item for item in items if item]
    if not items:
        raise QfitError("--calib is empty: give a built-in name, mix, a file or a hub dataset")
    parts = [name for item in items for name in MIXES.get(item, (item,))]
    return list(dict.fromkeys(parts))


def calibration_text(source: str) -> list[tuple[TextSource, list[str]]]:
    """The calibration split of each source in --calib (calibration_parts) as (source, documents), read before any
    model is loaded, so a bad --calib fails in a second."""
    out = []
    for part in calibration_parts(source):
        if looks_like_hub_dataset(part):
            out.append(_hub_dataset_text(part))
        else:
            loaded = load_text(part, split="calib")
            out.append((loaded.source, loaded.documents))
    return out


def _windows(tokenizer, info: TextSource, docs: list[str], count: int, seqlen: int) -> list[list[int]]:
    """`count` consecutive `seqlen`-token windows from the start of the documents."""
    needed = count * seqlen
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
                        f"{have} samples of {seqlen}, not {count}; lower --nsamples/--seqlen or use a larger source")
    return [ids[i * seqlen:(i + 1) * seqlen] for i in range(count)]


def shares(nsamples: int, parts: int) -> list[int]:
    """Windows per part: as equal as possible, the first parts taking the remainder (pure)."""
    return [nsamples // parts + (1 if i < nsamples % parts else 0) for i in range(parts)]


def build_calibration(tokenizer, parts: list[tuple[TextSource, list[str]]], nsamples: int,
                      seqlen: int) -> tuple[Calibration, list[list[int]]]:
    """(description, token windows): equal shares from each part, interleaved (part 0, 1, 2, 0, 1, 2, ...)."""
    per_part = [_windows(tokenizer, info, docs, n, seqlen) if n else []
                for (info, docs), n in zip(parts, shares(nsamples, len(parts)))]
    windows = [ws[i] for i in range(max(map(len, per_part))) for ws in per_part if i < len(ws)]
    infos = [info for info, _ in parts]
    info = infos[0] if len(infos) == 1 else TextSource(
        name="+".join(i.name for i in infos), path="; ".join(i.path for i in infos), split=infos[0].split,
        documents=sum(i.documents for i in infos), chars=sum(i.chars for i in infos),
        fraction="; ".join(f"{i.name} {i.fraction}" for i in infos))
    return Calibration(source=info, nsamples=nsamples, seqlen=seqlen, tokens=nsamples * seqlen), windows

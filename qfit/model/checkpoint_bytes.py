"""Weight bytes of a checkpoint folder, counted one way for every command that reports them (`qfit profile` and
`qfit inspect` call this; `qfit quantize` sums the same safetensors headers): the bytes of every tensor in its
safetensors files, from the headers (no tensor data read), with tied weights counted once.

Tied weights: `save_pretrained` stores a tied lm_head once (safetensors refuses shared storage), so the sum of the
headers is already right for the checkpoints transformers and GPTQModel write. A checkpoint that stores both
`lm_head.weight` and an identical-shape, identical-dtype embedding while its config says tie_word_embeddings=true
holds one matrix twice on disk but once in memory and once per decode step: the copy is not counted.
"""

from __future__ import annotations

from pathlib import Path

from qfit.errors import QfitError
from qfit.jsonfile import read_json_object
from qfit.model.headers import read_header, shard_files
from qfit.model.spec import unwrap_text_config


def _span(entry: dict) -> int:
    begin, end = entry["data_offsets"]
    return int(end) - int(begin)


def tied_copy(header: dict[str, dict], tied: bool) -> str | None:
    """Pure: the name of a stored lm_head that duplicates a tied input embedding, else None."""
    if not tied:
        return None
    heads = [k for k in header if k == "lm_head.weight" or k.endswith(".lm_head.weight")]
    embeds = [k for k in header if k.endswith(("embed_tokens.weight", "wte.weight", "word_embeddings.weight"))]
    for head in heads:
        h = header[head]
        if any(header[e]["shape"] == h["shape"] and header[e]["dtype"] == h["dtype"] for e in embeds):
            return head
    return None


def weight_bytes(header: dict[str, dict], tied: bool) -> int:
    """Pure: bytes of every tensor in a (merged) safetensors header, a tied lm_head copy counted once."""
    copy = tied_copy(header, tied)
    return sum(_span(v) for k, v in header.items() if k != copy)


def tied_embeddings(config: dict) -> bool:
    """tie_word_embeddings as config.json states it (inner text config first); unstated reads as untied."""
    text, _ = unwrap_text_config(config)
    return bool(text.get("tie_word_embeddings", False))


def checkpoint_weight_bytes(folder: str | Path) -> int:
    """Bytes of weights stored in a checkpoint folder's safetensors files (headers only, shards checked complete)."""
    folder = Path(folder)
    files = shard_files(folder)
    if not files:
        raise QfitError(f"{folder} holds no .safetensors files")
    header: dict[str, dict] = {}
    for f in files:
        header.update(read_header(f))
    config = folder / "config.json"
    return weight_bytes(header, tied_embeddings(read_json_object(config, "config")) if config.is_file() else False)

"""Safetensors headers, read and validated once (I/O: never the tensor data itself).

A safetensors file is an 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, and
the tensor bytes. What we accept is what a loader would load: a JSON object; every tensor a known dtype, a shape of
non-negative integers and offsets [begin, end] whose length is exactly shape x dtype size; tensors that tile the data
region without overlap or gap; a data region exactly as long as the file holds (a truncated download is refused, not
planned as a smaller model); at least one tensor. A folder's shards must be complete: every file its
*.safetensors.index.json names, or every `-0000i-of-0000n` sibling.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

from qfit.errors import QfitError
from qfit.jsonfile import read_json_object

DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4,
               "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1}
MAX_HEADER = 100 * 2**20
_SHARD = re.compile(r"^(.*)-(\d{5})-of-(\d{5})\.safetensors$")


def _entry_problem(t) -> str | None:
    """What makes one header entry unreadable (wrong types), else None."""
    if not isinstance(t, dict):
        return "is not an object"
    dtype, shape, offsets = t.get("dtype"), t.get("shape"), t.get("data_offsets")
    if dtype not in DTYPE_BYTES:
        return f"has unknown dtype {dtype!r:.30}"
    if not isinstance(shape, list) or len(shape) > 8 or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2**40 for d in shape):
        return f"has a malformed shape {shape!r:.40}"
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(
            isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets) and offsets[0] <= offsets[1]):
        return f"has malformed data_offsets {offsets!r:.40}"
    return None


def _consistency(tensors: dict, data_bytes: int) -> list[str]:
    """Byte spans against shapes and the file: what a loader would trip over (or silently misread)."""
    out = []
    for name, t in tensors.items():
        numel = 1
        for d in t["shape"]:
            numel *= d
        span, need = t["data_offsets"][1] - t["data_offsets"][0], numel * DTYPE_BYTES[t["dtype"]]
        if span != need:
            out.append(f"tensor {name} spans {span:,} bytes but {t['shape']} x {t['dtype']} needs {need:,}")
    end = 0
    for begin, stop, name in sorted((t["data_offsets"][0], t["data_offsets"][1], n) for n, t in tensors.items()):
        if begin != end:
            out.append(f"tensor {name} starts at byte {begin:,}, expected {end:,} "
                       f"({'overlap' if begin < end else 'gap'} in the data region)")
        end = max(end, stop)
    if end != data_bytes:
        out.append(f"the header describes {end:,} bytes of tensor data but the file holds {data_bytes:,} "
                   "(truncated or padded file)")
    return out


def read_header(path: Path, problems: list[str] | None = None) -> dict[str, dict]:
    """{tensor name: {dtype, shape, data_offsets}} of one safetensors file, validated (metadata dropped).
    Inconsistent byte spans raise, unless a `problems` list is given to collect them (qfit inspect reports all)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise QfitError(f"{path.name} is not a safetensors file (too short)")
            (length,) = struct.unpack("<Q", raw)
            if length > min(MAX_HEADER, size - 8):
                raise QfitError(f"{path.name} is not a safetensors file (header length {length:,} is implausible)")
            header = json.loads(fh.read(length).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise QfitError(f"{path.name} is not a safetensors file (header is not JSON)") from None
    except OSError as exc:
        raise QfitError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not isinstance(header, dict):
        raise QfitError(f"{path.name}: safetensors header is not an object")
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    if not tensors:
        raise QfitError(f"{path.name} holds no tensors")
    for name, t in tensors.items():
        problem = _entry_problem(t)
        if problem:
            raise QfitError(f"{path.name}: tensor {name} {problem}")
    found = [f"{path.name}: {p}" for p in _consistency(tensors, size - 8 - length)]
    if found and problems is None:
        raise QfitError(found[0])
    if problems is not None:
        problems.extend(found)
    return tensors


def shard_files(folder: Path) -> list[Path]:
    """The safetensors files of a checkpoint folder, refused when shards are missing."""
    folder = Path(folder)
    indexes = sorted(folder.glob("*.safetensors.index.json"))
    if indexes:
        weight_map = read_json_object(indexes[0], "index file").get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise QfitError(f"{indexes[0].name} has no weight_map")
        names = sorted({str(v) for v in weight_map.values()})
        missing = [n for n in names if not (folder / n).is_file() or "/" in n]
        if missing:
            raise QfitError(f"{indexes[0].name} names {len(names)} shards but {', '.join(missing[:3])} "
                            f"{'is' if len(missing) == 1 else 'are'} missing from {folder}")
        return [folder / n for n in names]
    files = sorted(folder.glob("*.safetensors"))
    groups: dict[tuple[str, int], set[int]] = {}
    for f in files:
        m = _SHARD.match(f.name)
        if m:
            groups.setdefault((m.group(1), int(m.group(3))), set()).add(int(m.group(2)))
    for (prefix, total), have in groups.items():
        if have != set(range(1, total + 1)):
            gone = sorted(set(range(1, total + 1)) - have)
            raise QfitError(f"{folder}: {prefix} has {len(have)} of {total} shards (missing "
                            f"{', '.join(f'{i:05d}' for i in gone[:3])})")
    return files

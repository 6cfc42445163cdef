#!/usr/bin/env python3
"""Rebuild profiles/models/*.json from the reviewed config copies in ../shared/reference/configs (+ calibration configs).

Each catalog entry keeps the real config.json verbatim under "config", the provenance text under "source", the hub id,
aliases, and the parameter count the source states (when it states one) under "params_reference". Entries that are
not derived from ../shared (hand-added, e.g. Llama-2-70B) live in profiles/models/ with "generated": false and are
left untouched.

Usage: python scripts/build_catalog.py [--shared ../shared]
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HUB_RE = re.compile(r"([A-Za-z0-9_.-]+/[A-Za-z0-9_.()-]+)")
PARAMS_RE = re.compile(r"Parameter count implied[^=]*=\s*([\d,]+)")
# Display names where the slug is not readable enough.
DISPLAY = {"gpt-oss-20b": "gpt-oss-20b", "gpt-oss-120b": "gpt-oss-120b"}
# Same architecture under another hub id (the SOURCE.txt of each says why the config applies).
EXTRA_ALIASES = {
    "qwen3-next-80b-a3b": ["Qwen/Qwen3-Next-80B-A3B-Instruct"],
    "llama-3-8b": ["meta-llama/Meta-Llama-3-8B-Instruct"],
    "llama-3.1-8b": ["meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-8B-Instruct", "meta-llama/Meta-Llama-3.1-8B-Instruct"],
    "llama-3.1-70b": ["meta-llama/Llama-3.1-70B", "meta-llama/Llama-3.1-70B-Instruct", "meta-llama/Meta-Llama-3.1-70B-Instruct"],
    "llama-3.1-405b": ["meta-llama/Llama-3.1-405B", "meta-llama/Llama-3.1-405B-Instruct"],
    "llama-2-7b": ["meta-llama/Llama-2-7b-chat-hf"],
    "llama-2-13b": ["meta-llama/Llama-2-13b-chat-hf"],
    "mistral-7b": ["mistralai/Mistral-7B-Instruct-v0.1"],
    "mixtral-8x7b": ["mistralai/Mixtral-8x7B-Instruct-v0.1"],
    "mixtral-8x22b": ["mistralai/Mixtral-8x22B-Instruct-v0.1"],
    "qwen3-30b-a3b": ["Qwen/Qwen3-30B-A3B-Instruct-2507"],
    "qwen3-235b-a22b": ["Qwen/Qwen3-235B-A22B-Instruct-2507"],
    "smollm2-135m": ["SmolLM2-135M-Instruct"],
}


def hub_ids(first_line: str) -> tuple[str | None, list[str]]:
    m = HUB_RE.search(first_line)
    if not m:
        return None, []
    raw = m.group(1)
    variants = []
    opt = re.search(r"\((-[A-Za-z0-9.-]+)\)", raw)
    if opt:  # "meta-llama/Meta-Llama-3-70B(-Instruct)" -> base and -Instruct
        base = raw.replace(opt.group(0), "")
        variants = [base + opt.group(1)]
        raw = base
    return raw.rstrip(".,"), variants


def build(shared: Path) -> int:
    out = ROOT / "profiles" / "models"
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for base in (shared / "reference" / "configs", shared / "reference" / "calibration" / "configs"):
        for folder in sorted(p for p in base.iterdir() if (p / "config.json").exists()):
            target = out / f"{folder.name}.json"
            if target.exists() and not json.loads(target.read_text()).get("generated", True):
                continue
            source = (folder / "SOURCE.txt").read_text().strip()
            hub, extra = hub_ids(source.splitlines()[0])
            m = PARAMS_RE.search(source)
            entry = {
                "name": DISPLAY.get(folder.name, folder.name),
                "hub_id": hub,
                "aliases": sorted(set(extra) | set(EXTRA_ALIASES.get(folder.name, []))),
                "source": source,
                "source_file": str(folder.relative_to(shared.parent)) + "/config.json",
                "params_reference": (
                    {"value": int(m.group(1).replace(",", "")), "source": "SOURCE.txt: " + m.group(0)} if m else None
                ),
                "generated": True,
                "config": json.loads((folder / "config.json").read_text()),
            }
            target.write_text(json.dumps(entry, indent=1) + "\n")
            written += 1
    return written


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    print(f"wrote {build(ap.parse_args().shared)} catalog entries")

"""docs/json.md is the JSON contract: every key it lists exists, with its stated type, in real output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from qfit.cli import cli

DOC = Path(__file__).resolve().parents[1] / "docs" / "json.md"
COMMANDS = {
    "qfit plan --model M --gpu G --precision P --json": ["plan", "-m", "qwen3-30b-a3b", "--gpu", "a6000", "-p",
                                                          "gptq-int4", "--json"],
    "qfit plan --model M --gpu G --precision P --launch --json": ["plan", "-m", "llama-3.1-70b", "--gpu", "h100", "-p",
                                                                   "bf16", "--nodes", "2", "--gpus-per-node", "8",
                                                                   "--launch", "--json"],
    "qfit plan --model M --gpu G --precision P --ram R --json": ["plan", "-m", "qwen3.5-35b-a3b", "--gpu", "rtx-4090",
                                                                  "-p", "gguf-q8_0", "--ram", "64GB", "--json"],
    "qfit plan --gpu G --json": ["plan", "--gpu", "a6000", "--top", "3", "--json"],
    "qfit size --json": ["size", "-m", "llama-3.1-70b", "-u", "16", "--top", "3", "--json"],
}
TYPES = {"int": int, "float": (int, float), "str": str, "bool": bool, "object": dict, "list": list,
         "list[str]": list, "null": type(None)}


def _sections() -> dict[str, list[tuple[str, str]]]:
    out, current = {}, None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"## `(.+?)`", line)
        if heading:
            current = heading.group(1)
            out[current] = []
        row = re.match(r"\| `([\w.]+)` \| ([^|]+) \|", line)
        if row and current:
            out[current].append((row.group(1), row.group(2).strip()))
    return out


SECTIONS = _sections()


def _get(doc, path: str):
    for part in path.split("."):
        assert isinstance(doc, dict) and part in doc, f"missing {path}"
        doc = doc[part]
    return doc


@pytest.mark.parametrize("section", list(COMMANDS))
def test_every_documented_key_is_in_the_output(section):
    r = CliRunner().invoke(cli, COMMANDS[section])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    first = doc[0] if isinstance(doc, list) else doc
    keys = SECTIONS[section]
    if section == "qfit plan --gpu G --json":      # plan objects, each with its quality
        keys = SECTIONS["qfit plan --model M --gpu G --precision P --json"] + keys
    assert len(keys) >= 10
    for path, kind in keys:
        value = _get(first, path)
        allowed = tuple(TYPES[k.strip()] for k in kind.split(" or "))
        assert isinstance(value, allowed), (path, kind, value)


def test_the_doc_covers_each_command_it_names():
    assert set(COMMANDS) <= set(SECTIONS)


def test_size_keys_hold_for_a_replica_over_several_nodes():
    """The same documented keys when the chosen replica spans nodes (its link is a name there, not null)."""
    r = CliRunner().invoke(cli, ["size", "-m", "llama-3.1-70b", "-u", "4", "-p", "bf16", "--gpus-allowed", "a6000",
                                 "--max-gpus-per-node", "2", "--max-nodes", "2", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    for path, kind in SECTIONS["qfit size --json"]:
        allowed = tuple(TYPES[k.strip()] for k in kind.split(" or "))
        assert isinstance(_get(doc, path), allowed), (path, kind)
    c = doc["chosen"]
    assert (c["nodes_per_replica"], c["internode"], c["layout"]) == (2, "infiniband-ndr", "2 nodes x 2 GPUs (TP2 x PP2)")
    assert doc["search"]["internode"]["key"] == "infiniband-ndr" and doc["search"]["max_nodes_per_replica"] == 2


def test_endpoint_profile_keys_are_in_the_output():
    """`qfit profile --endpoint` against the fake server (tests/endpoint_servers.py): the top-level and per-level keys."""
    from endpoint_servers import FakeConfig, fake_server
    with fake_server(FakeConfig()) as url:
        r = CliRunner().invoke(cli, ["profile", "--endpoint", url, "--text", "pydoc", "--input-len", "32",
                                     "--output-len", "4", "-b", "1", "--requests", "2", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    for section, obj in (("qfit profile --endpoint URL --json", doc),
                         ("levels[] of qfit profile --endpoint URL --json", doc["levels"][0])):
        keys = SECTIONS[section]
        assert len(keys) >= 10
        for path, kind in keys:
            allowed = tuple(TYPES[k.strip()] for k in kind.split(" or "))
            assert isinstance(_get(obj, path), allowed), (path, kind)

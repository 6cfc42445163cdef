#!/usr/bin/env python3
"""Read the serving engines' launch flags from their own code into profiles/engines/launch/<engine>.yaml.

Each file keeps what a person reviewed: `engine`, `command`, every concept's `flag` spelling (and optional `note`),
`absent` and `multi_node` (recipes whose `quotes` must occur in the package and whose engine commands may only use
flags the package defines). Everything else is re-read from the package on every run: version, archive sha256, and
per flag its other spellings, type, default, choices and the first sentence of its help, with the file:line each
came from. A reviewed flag the package no longer defines, or a quote it no longer contains, is an error naming what
to update. Nothing is installed or imported from the engines: wheels are zip files, the llama-cpp-python sdist a
tar.gz (scripts/engine_flags_python.py reads Python with `ast`, scripts/engine_flags_cpp.py llama.cpp's arg.cpp).

Usage: PYTHONPATH=. python scripts/read_engine_flags.py [--cache DIR] [--out profiles/engines/launch]
           [--version vllm=0.34.0 ...] [--engine vllm ...] [--check]
Archives missing from --cache (default $QFIT_ENGINE_SRC, else ~/.cache/qfit/engine-src) are fetched with
`python -m pip download --no-deps` (`--no-binary :all:` for llama-cpp-python: the sdist carries llama.cpp). Newer
versions: `pip index versions vllm`, then --version vllm=X. --check writes nothing and exits 1 when a file would
change (CI has no download cache; tests/test_engine_flags.py runs the same comparison when one is present).
"""

from __future__ import annotations

import argparse
import bisect
import datetime
import functools
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import yaml

from qfit.atomic import write_text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engine_flags_cpp import llama_cpp_options  # noqa: E402
from engine_flags_python import llama_cpp_python_options, sglang_options, vllm_options  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"vllm": "vllm", "sglang": "sglang", "llama.cpp": "llama-cpp-python", "llama-cpp-python": "llama-cpp-python"}
VERSIONS = {"vllm": "0.33.0", "sglang": "0.5.23", "llama-cpp-python": "0.3.36"}   # the versions read last
READERS = {"vllm": vllm_options, "sglang": sglang_options, "llama.cpp": llama_cpp_options,
           "llama-cpp-python": llama_cpp_python_options}
FIELDS = ("aliases", "type", "default", "field_default", "fallback", "choices", "choices_enforced", "negation", "env",
          "help")
PLAIN = re.compile(r"[A-Za-z_][\w.]*")
YAML_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}
HEADER = """\
# {engine} launch flags, read from the engine's own code by scripts/read_engine_flags.py (not from memory or docs).
# Reviewed by hand and kept on every run: `command` and `quotes` (each checked to occur in the package, at `line`),
# each concept's `flag` (the spelling qfit emits) and `note`, `absent`, `multi_node` (quotes checked the same way,
# the engine's own commands checked to use only flags the package defines).
# Re-read from the package on every run: everything else; the comment after each concept is where its definition is.
"""


class Archive:
    """A downloaded wheel or sdist read in place; members by their path inside the package (sdist prefix dropped).
    Wheel members are read when asked for; a tar.gz is streamed once, keeping the text files."""

    def __init__(self, path: Path):
        self.path, self.data, self.zip = path, {}, None
        if path.suffix == ".whl":
            self.zip = zipfile.ZipFile(path)
            self.names = set(self.zip.namelist())
        else:
            with tarfile.open(path) as t:
                members = [(m, m.name.split("/", 1)[-1]) for m in t.getmembers()]
                self.names = {name for _, name in members}
                self.data = {name: t.extractfile(m).read() for m, name in members if m.isfile()
                             and name.endswith((".py", ".cpp", ".h", ".md", ".txt"))}
        self.sha256 = hashlib.sha256(path.read_bytes()).hexdigest()

    def text(self, name: str) -> str:
        if name not in self.data:
            if self.zip is None or name not in self.names:
                sys.exit(f"{self.path.name} has no {name}: the package layout changed, update scripts/engine_flags_*.py")
            self.data[name] = self.zip.read(name)
        return self.data[name].decode("utf-8")

    def line_of(self, name: str, quote: str) -> int | None:
        """Line where `quote` starts in member `name`, whitespace (and line breaks) ignored."""
        flat, starts = "", []
        for line in self.text(name).splitlines():
            starts.append(len(flat))
            flat += " ".join(line.split()) + " "
        at = flat.find(" ".join(quote.split()))
        return None if at < 0 else bisect.bisect_right(starts, at)


def find_archive(package: str, version: str, cache: Path) -> Path | None:
    stem = package.replace("-", "_")
    found = sorted(cache.glob(f"{stem}-{version}-*.whl")) + sorted(cache.glob(f"{stem}-{version}.tar.gz"))
    return found[0] if found else None


def fetch(package: str, version: str, cache: Path) -> Path:
    """The archive from the cache, downloaded first when missing."""
    if find_archive(package, version, cache) is None:
        cache.mkdir(parents=True, exist_ok=True)
        binary = ["--no-binary", ":all:"] if package == "llama-cpp-python" else []
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *binary, "-d", str(cache),
               f"{package}=={version}"]
        if subprocess.run(cmd).returncode != 0 or find_archive(package, version, cache) is None:
            sys.exit(f"could not download {package}=={version} (ran: {' '.join(cmd)})")
    return find_archive(package, version, cache)


@functools.lru_cache(maxsize=4)
def open_archive(path: Path) -> Archive:
    return Archive(path)


def package_version(arc: Archive) -> str:
    meta = next((n for n in arc.names if n.endswith(".dist-info/METADATA")), None)
    if meta:
        return re.search(r"^Version: (\S+)", arc.text(meta), re.M).group(1)
    return re.match(r"[\w]+-([\w.]+)\.tar\.gz", arc.path.name).group(1)


def concept_flags(engine: str, read: dict, reviewed: dict, arc: Archive) -> tuple[dict, dict]:
    """The reviewed spelling of each concept, completed from its definition; comments say where each came from."""
    flags, comments = {}, {}
    for concept, entry in reviewed.items():
        spelling = entry["flag"]
        found = read["options"].get(spelling)
        if found is None or (engine == "llama.cpp" and not found["server"]):
            what = "a llama-server option" if engine == "llama.cpp" else "an option"
            sys.exit(f"{engine}: {spelling} (flags.{concept}.flag) is not {what} in {arc.path.name}; "
                     f"update profiles/engines/launch/{engine}.yaml")
        out = {"flag": spelling, **({"note": entry["note"]} if entry.get("note") else {})}
        found = {**found, "aliases": [f for f in found["flags"] if f != spelling]}
        out.update({k: found[k] for k in FIELDS if k in found and (k != "aliases" or found[k])})
        flags[concept], comments[("flags", concept)] = out, found["at"]
    return flags, comments


def locate(engine: str, where: str, quotes: list, arc: Archive) -> list:
    """Each quote found in its file (its `line` re-read); one that is gone is an error naming where it was used."""
    for quote in quotes:
        line = arc.line_of(quote["file"], quote["text"])
        if line is None:
            sys.exit(f"{engine}: {where} quotes {quote['text']!r}, no longer in {quote['file']} of {arc.path.name}")
        quote["line"] = line
    return quotes


def check_recipes(engine: str, recipes: dict, command: str, options: dict, arc: Archive) -> dict:
    """Quotes located, absences confirmed, the engine's own commands use only flags it defines."""
    prefix = command.split(" MODEL")[0].split(" -")[0]
    for name, recipe in recipes.items():
        locate(engine, f"multi_node.{name}", recipe.get("quotes", []), arc)
        for path in recipe.get("not_in_package", []):
            if path in arc.names:
                sys.exit(f"{engine}: multi_node.{name}: {path} is in {arc.path.name} now; quote it instead")
        for step in recipe.get("steps", []):
            if step["run"].startswith(prefix):
                unknown = [t for t in re.findall(r"(?<!\S)(-{1,2}[A-Za-z][\w-]*)", step["run"]) if t not in options]
                if unknown:
                    sys.exit(f"{engine}: multi_node.{name} runs {', '.join(unknown)}, not defined in {arc.path.name}")
    return recipes


def build(engine: str, arc: Archive, reviewed: dict, today: str) -> tuple[dict, dict]:
    read = READERS[engine](arc)
    version = read.get("version") or package_version(arc)
    same = reviewed.get("version") == version and reviewed.get("source", {}).get("sha256") == arc.sha256
    record = {"engine": engine, "command": reviewed["command"],
              "quotes": locate(engine, "quotes", reviewed.get("quotes", []), arc), "version": version}
    if "version_note" in read:
        record["version_note"] = read["version_note"]
    flags, comments = concept_flags(engine, read, reviewed["flags"], arc)
    recipes = check_recipes(engine, reviewed.get("multi_node", {}), reviewed["command"], read["options"], arc)
    quoted = [q["file"] for r in [record, *recipes.values()] for q in r.get("quotes", [])]
    comments.update({(key,): at for key, at in read.get("at", {}).items()})
    cited = re.findall(r"[\w./-]+\.(?:py|cpp|h|txt|md)\b", " ".join(comments.values()))
    files = sorted(set(cited) | set(quoted) | set(read.get("files", [])))
    record["source"] = {"package": arc.path.name, "sha256": arc.sha256, "files": files,
                        "read_on": reviewed["source"]["read_on"] if same else today}
    record["flags"] = flags
    record["absent"] = reviewed.get("absent", {})
    record.update({key: read[key] for key in ("kv_cache_dtypes", "quantization_methods") if key in read})
    record["multi_node"] = recipes
    return record, comments


def scalar(value) -> str:
    if isinstance(value, str) and PLAIN.fullmatch(value) and value.lower() not in YAML_WORDS:
        return value
    return json.dumps(value, ensure_ascii=False)


def inline(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(scalar(v) for v in value) + "]"
    return "{}" if isinstance(value, dict) else scalar(value)


def emit(value, indent: int, path: tuple, comments: dict) -> list[str]:
    """Block YAML with JSON scalars (JSON strings are valid YAML); flat lists inline; comments keyed by path."""
    pad, lines = " " * indent, []
    if isinstance(value, list):
        for item in value:
            sub = emit(item, indent + 2, path, comments) if isinstance(item, dict) and item else [inline(item)]
            lines += [f"{pad}- {sub[0].lstrip()}", *sub[1:]]
        return lines
    for key, item in value.items():
        note = f"  # {comments[path + (key,)]}" if path + (key,) in comments else ""
        if (isinstance(item, dict) and item) or (isinstance(item, list) and any(isinstance(i, dict) for i in item)):
            lines += [f"{pad}{key}:{note}", *emit(item, indent + 2, path + (key,), comments)]
        else:
            lines.append(f"{pad}{key}: {inline(item)}{note}")
    return lines


def render(record: dict, comments: dict) -> str:
    return HEADER.format(engine=record["engine"]) + "\n".join(emit(record, 0, (), comments)) + "\n"


def run(engine: str, cache: Path, out: Path, version: str, today: str) -> tuple[Path, str]:
    """(target file, its new text) for one engine."""
    target = out / f"{engine}.yaml"
    if not target.is_file():
        sys.exit(f"{target} is missing: write its reviewed part (engine, command, flags: {{concept: {{flag}}}}) first")
    reviewed = yaml.safe_load(target.read_text(encoding="utf-8"))
    arc = open_archive(fetch(PACKAGES[engine], version, cache))
    return target, render(*build(engine, arc, reviewed, today))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("QFIT_ENGINE_SRC", "~/.cache/qfit/engine-src")))
    ap.add_argument("--out", type=Path, default=ROOT / "profiles" / "engines" / "launch")
    ap.add_argument("--version", action="append", default=[], metavar="PACKAGE=VERSION")
    ap.add_argument("--engine", action="append", choices=sorted(PACKAGES), help="default: all")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 when a file would change")
    args = ap.parse_args(argv)
    versions = {**VERSIONS, **dict(v.split("=", 1) for v in args.version)}
    today = datetime.date.today().isoformat()
    stale = []
    for engine in args.engine or sorted(PACKAGES):
        target, text = run(engine, args.cache.expanduser(), args.out, versions[PACKAGES[engine]], today)
        if target.read_text(encoding="utf-8") != text:
            stale.append(str(target))
            if not args.check:
                write_text(target, text)
    print(("stale: " if args.check else "updated: ") + ", ".join(stale) if stale else "up to date")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())

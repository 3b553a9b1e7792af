"""Teacher rationales: verification, filters, provenance records, cache/resume (function teachers, no Ray)."""

import json
import os

import pytest

from fnsft.data.reasoning import load_reasoning_rows
from fnsft.teachers.base import Teacher
from fnsft.teachers.distill_data import DistillSettings, distill
from fnsft.teachers.function import FunctionTeacher

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "examples", "reasoning")
NOISY = os.path.join(EXAMPLES, "teacher.py") + ":noisy_solve"
SOLVE = os.path.join(EXAMPLES, "teacher.py") + ":solve"


@pytest.fixture(scope="module")
def questions():
    return load_reasoning_rows(os.path.join(EXAMPLES, "train.jsonl"))[:40]


def test_wrong_teacher_keeps_only_verified_rationales(tmp_path, questions):
    res = distill(FunctionTeacher(NOISY), questions, DistillSettings(num_samples_per_question=2), str(tmp_path))
    records = [json.loads(line) for line in open(tmp_path / "rationales.jsonl")]
    assert len(records) == 80 == len(res.records)
    gold = {q["id"]: q["answer"] for q in questions}
    kept = [r for r in records if r["verdict"] == "kept"]
    assert kept and all(r["extracted_answer"] == gold[r["question_id"]] and r["reason"] is None for r in kept)
    dropped = [r for r in records if r["verdict"] == "dropped"]
    reasons = {r["reason"] for r in dropped}
    assert {"wrong_answer", "malformed", "truncated", "duplicate"} <= reasons, reasons
    # every wrong rationale really states a wrong answer; provenance on every record
    assert all(r["extracted_answer"] != gold[r["question_id"]] for r in dropped if r["reason"] == "wrong_answer")
    assert all(r["teacher"] == "function:" + NOISY and r["template_hash"] and r["sampling"]["n"] == 2 for r in records)
    m = res.metrics
    assert m["kept_rationales"] == len(kept) and m["dropped/wrong_answer"] > 0
    assert 0 < m["filter_keep_rate/verify"] < 1 and 0 < m["filter_keep_rate/duplicate"] < 1
    assert m["teacher_samples_asked"] == 80 and m["teacher_samples_cached"] == 0


def test_star_rationalisation_recovers_wrong_questions(tmp_path, questions):
    plain = distill(FunctionTeacher(NOISY), questions, DistillSettings(num_samples_per_question=1), str(tmp_path / "a"))
    star = distill(FunctionTeacher(NOISY), questions,
                   DistillSettings(num_samples_per_question=1, rationalize=True), str(tmp_path / "b"))
    assert star.metrics["questions_with_rationale"] > plain.metrics["questions_with_rationale"]
    marked = [r for r in star.kept if r["rationalized"]]
    assert marked and star.metrics["rationalized_kept"] == len(marked)


class Crashing(FunctionTeacher):
    """The solver, but the process 'dies' after answering ``crash_after`` questions."""

    def __init__(self, crash_after=None):
        super().__init__(SOLVE)
        self.crash_after, self.asked = crash_after, []

    def _complete(self, prompts, questions, hints, n, temperature, max_new_tokens):
        if self.crash_after is not None and len(self.asked) >= self.crash_after:
            raise RuntimeError("killed")
        self.asked += questions
        return super()._complete(prompts, questions, hints, n, temperature, max_new_tokens)


def test_resume_asks_only_for_missing_questions(tmp_path, questions):
    s = DistillSettings(num_samples_per_question=3)
    with pytest.raises(RuntimeError, match="killed"):
        distill(Crashing(crash_after=15), questions, s, str(tmp_path))
    again = Crashing()
    res = distill(again, questions, s, str(tmp_path))
    assert len(again.asked) == len(questions) - 15
    assert set(again.asked).isdisjoint({q["question"] for q in questions[:15]})
    assert res.metrics["teacher_samples_asked"] == 3 * 25 and res.metrics["teacher_samples_cached"] == 3 * 15
    third = Crashing()
    distill(third, questions, s, str(tmp_path))
    assert third.asked == []  # a rerun asks nothing
    other = Crashing()
    distill(other, questions, DistillSettings(num_samples_per_question=3, temperature=0.2), str(tmp_path))
    assert len(other.asked) == 40  # other sampling settings are other samples


class Voter(Teacher):
    kind = "test"
    identity = "test:voter"

    def _complete(self, prompts, questions, hints, n, temperature, max_new_tokens):
        # 3 of 4 samples say 7, one says 8: the majority (75%) is kept, the outlier dropped
        return [[{"text": f"so {7 if i < 3 else 8} (v{i})\n#### {7 if i < 3 else 8}", "finish_reason": "stop"}
                 for i in range(n)] for _ in questions]


def test_self_consistency_without_gold(tmp_path):
    rows = [{"id": "a", "question": "q1", "answer": None}]
    res = distill(Voter(), rows, DistillSettings(num_samples_per_question=4), str(tmp_path))
    assert [r["extracted_answer"] for r in res.kept] == ["7"] * 3
    assert res.metrics["dropped/no_consensus"] == 1
    strict = distill(Voter(), rows, DistillSettings(num_samples_per_question=4, min_agreement=0.8), str(tmp_path))
    assert strict.kept == []


def test_function_teacher_gets_only_declared_arguments():
    seen = {}

    def fn(question, hint=None):
        seen.update(question=question, hint=hint)
        return {"text": "x\n#### 1", "finish_reason": "length"}

    import sys
    import types

    mod = types.ModuleType("cot_test_teacher_mod")
    mod.fn = fn
    sys.modules["cot_test_teacher_mod"] = mod
    out = FunctionTeacher("cot_test_teacher_mod:fn").generate(["Q"], n=1, hints=["3"])
    assert out == [[{"text": "x\n#### 1", "finish_reason": "length"}]] and seen == {"question": "Q", "hint": "3"}

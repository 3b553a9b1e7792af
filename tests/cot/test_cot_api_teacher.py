"""The api teacher through the shared OpenAI-compatible client, against the local fake server."""

import json
import os
import re

import pytest

from fnsft.data.reasoning import load_reasoning_rows
from fnsft.teachers.api import ApiTeacher
from fnsft.teachers.distill_data import DistillSettings, distill

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "examples", "reasoning")


def _solver(body):
    import sys

    sys.path.insert(0, EXAMPLES)
    from teacher import solve

    prompt = body["messages"][-1]["content"]
    question = re.search(r"Question: (.*)\nAnswer:", prompt, re.S).group(1)
    n = body.get("n", 1)
    text = solve(question)
    # the first choice is right, the second cut short by max_tokens
    return {"texts": [text] + [text.split("\n")[0]] * (n - 1), "finish_reason": "stop"}


def test_api_teacher_resumes_with_only_the_missing_calls(tmp_path, fake_openai):
    fake_openai.answer = _solver
    rows = load_reasoning_rows(os.path.join(EXAMPLES, "train.jsonl"))[:10]
    s = DistillSettings(num_samples_per_question=2)
    fake_openai.fault_for = lambda body: "500" if "Question: " + rows[7]["question"] in body["messages"][-1]["content"] else None
    teacher = ApiTeacher("fake-model", base_url=fake_openai.base_url, settings={"max_retries": 0, "max_concurrency": 4},
                         cache_dir=str(tmp_path), in_process=True)
    res = distill(teacher, rows, s, str(tmp_path))
    teacher.close()
    assert fake_openai.count == 10  # one request per question, n choices each
    assert all(r["n"] == 2 and r["max_tokens"] == 256 for r in (q["body"] for q in fake_openai.requests))
    errors = [r for r in res.records if r["reason"] == "error"]
    assert len(errors) == 2 and all(r["question_id"] == rows[7]["id"] and r["error"] for r in errors)
    assert res.metrics["kept_rationales"] == 9 and res.metrics["dropped/malformed"] == 9  # second choice: no '####'
    assert all(r["teacher"].startswith("api:http://127.0.0.1") for r in res.records)
    # The rerun asks only for the question that failed (errors are never cached).
    fake_openai.fault_for = lambda body: None
    again = ApiTeacher("fake-model", base_url=fake_openai.base_url, cache_dir=str(tmp_path), in_process=True)
    res2 = distill(again, rows, s, str(tmp_path))
    again.close()
    assert fake_openai.count == 11 and res2.metrics["kept_rationales"] == 10
    assert res2.metrics["teacher_samples_asked"] == 2
    assert "sk-" not in open(tmp_path / "rationales.jsonl").read()
    records = [json.loads(line) for line in open(tmp_path / "rationales.jsonl")]
    assert len(records) == 20


def test_api_teacher_stopped_after_k_calls_rerun_asks_n_minus_k(tmp_path, fake_openai):
    from fnsft.errors import BudgetExhausted

    fake_openai.answer = _solver
    rows = load_reasoning_rows(os.path.join(EXAMPLES, "train.jsonl"))[:12]
    s = DistillSettings(num_samples_per_question=1)
    teacher = ApiTeacher("fake-model", base_url=fake_openai.base_url, settings={"max_calls": 5, "max_concurrency": 2},
                         cache_dir=str(tmp_path), in_process=True)
    with pytest.raises(BudgetExhausted, match="teacher_api.max_calls"):
        distill(teacher, rows, s, str(tmp_path))
    teacher.close()
    assert fake_openai.count == 5
    again = ApiTeacher("fake-model", base_url=fake_openai.base_url, cache_dir=str(tmp_path), in_process=True)
    res = distill(again, rows, s, str(tmp_path))
    again.close()
    assert fake_openai.count == 12 and res.metrics["kept_rationales"] == 12


@pytest.mark.slow
def test_api_teacher_against_real_vllm_server(tmp_path, request):
    """SmolLM2 served by vLLM's OpenAI server on 127.0.0.1 (the api branch's ``vllm_server`` fixture; slow)."""
    try:
        server = request.getfixturevalue("vllm_server")
    except pytest.FixtureLookupError:
        pytest.skip("no vllm_server fixture in this checkout")
    rows = load_reasoning_rows(os.path.join(EXAMPLES, "train.jsonl"))[:4]
    s = DistillSettings(num_samples_per_question=2, max_new_tokens=96)
    teacher = ApiTeacher(server.model, base_url=server.base_url, cache_dir=str(tmp_path), in_process=True)
    res = distill(teacher, rows, s, str(tmp_path))
    stats = teacher.stats()
    teacher.close()
    # 4 requests of n=2 choices; every retry (a slow server under load times out) is paid again.
    assert stats["calls"] == 2 * (4 + stats["retries"]) and stats["completion_tokens"] > 0 and stats["errors"] == 0
    assert len(res.records) == 8 and all(r["text"] for r in res.records)
    again = ApiTeacher(server.model, base_url=server.base_url, cache_dir=str(tmp_path), in_process=True)
    res2 = distill(again, rows, s, str(tmp_path))
    assert again.stats().get("calls", 0) == 0 and res2.metrics["teacher_samples_asked"] == 0
    again.close()


_KILLABLE_RUN = """
import json, sys
from fnsft.data.reasoning import load_reasoning_rows
from fnsft.teachers.api import ApiTeacher
from fnsft.teachers.distill_data import DistillSettings, distill
rows = load_reasoning_rows(sys.argv[1])[:int(sys.argv[2])]
t = ApiTeacher(sys.argv[3], base_url=sys.argv[4], settings={"max_concurrency": 1}, cache_dir=sys.argv[5],
               in_process=True)
distill(t, rows, DistillSettings(num_samples_per_question=1, max_new_tokens=48), sys.argv[5])
"""


@pytest.mark.slow
def test_api_teacher_killed_after_k_of_n_against_real_vllm_rerun_asks_n_minus_k(tmp_path, request):
    """A run against vLLM on 127.0.0.1 is SIGKILLed after k of N questions were answered; the
    rerun pays for exactly N - k calls (the client's cache keeps every answer it paid for, even
    inside a batch the teacher cache had not written yet)."""
    import signal
    import subprocess
    import sys
    import time

    try:
        server = request.getfixturevalue("vllm_server")
    except pytest.FixtureLookupError:
        pytest.skip("no vllm_server fixture in this checkout")
    n_questions = 8
    train = os.path.join(EXAMPLES, "train.jsonl")
    api_cache = tmp_path / "api_cache.jsonl"
    from fnsft.testing import REPO

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen([sys.executable, "-c", _KILLABLE_RUN, train, str(n_questions), server.model,
                             server.base_url, str(tmp_path)], env=env)
    deadline = time.time() + 600
    try:
        # one request at a time (max_concurrency 1): kill once 3 answers are on disk, mid-batch
        while time.time() < deadline and proc.poll() is None:
            if api_cache.exists() and sum(1 for _ in open(api_cache)) >= 3:
                break
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the first run finished before it could be killed"
    k = sum(1 for line in open(api_cache) if line.strip())
    assert 3 <= k < n_questions
    rows = load_reasoning_rows(train)[:n_questions]
    again = ApiTeacher(server.model, base_url=server.base_url, settings={"max_concurrency": 1},
                       cache_dir=str(tmp_path), in_process=True)
    res = distill(again, rows, DistillSettings(num_samples_per_question=1, max_new_tokens=48), str(tmp_path))
    stats = again.stats()
    again.close()
    assert stats["calls"] == n_questions - k and stats["cache_hits"] == k, (k, stats)
    assert len(res.records) == n_questions and all(r["text"] for r in res.records)

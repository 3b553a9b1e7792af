"""Ask a teacher for rationales, verify and filter them, and record every one with its provenance.

For each question the teacher writes ``num_samples_per_question`` rationales. Each passes the
filters in order, and the first it fails is its recorded reason:

``error`` (the backend produced no text) -> ``truncated`` (``finish_reason: length``) ->
``malformed`` (no final answer by ``answer_extraction``) -> ``duplicate`` (same text as an
earlier sample of the question) -> ``wrong_answer`` (does not verify against the gold answer),
or without a gold answer ``no_consensus`` (its answer is not the majority's, or the majority
holds less than ``min_agreement`` of the well-formed samples).

With ``rationalize: true`` (STaR), a question with a gold answer and no kept rationale is asked
once more with the answer as a hint; what that yields is marked ``rationalized``.

Every teacher reply is cached in ``<stage output>/teacher_cache.jsonl`` under a hash of
(teacher identity, template hash, question, hint, sample index, sampling), so a rerun, or a run
restarted after a crash, asks the teacher only for what is missing.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

from fnsft.actors.call_cache import CallCache, cache_key
from fnsft.data.answers import answer_key, answers_match, extract_answer, normalize_answer

log = logging.getLogger("fnsft")

FILTERS = ("error", "truncated", "malformed", "duplicate", "verify")


@dataclass
class DistillSettings:
    """The sampling and filtering keys of ``stage_configs.cot_distillation``."""

    num_samples_per_question: int = 4
    temperature: float = 0.7
    max_new_tokens: int = 256
    answer_extraction: str = "hash_marks"
    answer_regex: Optional[str] = None
    numeric_tolerance: float = 1e-4
    verify_answers: bool = True
    min_agreement: float = 0.5
    rationalize: bool = False
    max_rationales_per_question: int = 0


@dataclass
class DistillResult:
    kept: list[dict] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    records_path: str = ""


def _key(teacher, question: str, hint: Optional[str], index: int, s: DistillSettings) -> str:
    return cache_key(teacher.identity, teacher.template_hash, question, hint, index,
                     s.temperature, s.max_new_tokens)


def _ask(teacher, cache: CallCache, questions: list[str], hints: list[Optional[str]], n: int,
         s: DistillSettings, say: Callable[[str], None], what: str) -> tuple[list[list[dict]], int]:
    """``n`` samples per question, from the cache where present; ``(samples, samples asked)``."""
    keys = [[_key(teacher, q, h, i, s) for i in range(n)] for q, h in zip(questions, hints)]
    missing = [j for j, ks in enumerate(keys) if any(k not in cache for k in ks)]
    if len(missing) < len(questions):
        say(f"[cot_distillation] {what}: {len(questions) - len(missing)} of {len(questions)} questions from the cache")
    failed: dict[str, dict] = {}  # errors are not cached: a rerun asks again
    step = max(1, teacher.batch_size)
    for start in range(0, len(missing), step):
        chunk = missing[start:start + step]
        replies = teacher.generate([questions[j] for j in chunk], n, s.temperature, s.max_new_tokens,
                                   hints=[hints[j] for j in chunk])
        for j, samples in zip(chunk, replies):
            for k, sample in zip(keys[j], samples):
                if sample.get("text") is None:
                    failed[k] = sample
                else:
                    cache.put(k, sample)  # after every batch: a crash loses at most this batch
        done = min(start + step, len(missing))
        if done == len(missing) or (start // step) % 10 == 0:
            say(f"[cot_distillation] {what}: teacher answered {done}/{len(missing)} questions")
    return [[failed.get(k) or cache.get(k) for k in ks] for ks in keys], len(missing) * n


def _judge(row: dict, samples: list[dict], s: DistillSettings) -> list[dict]:
    """One verdict per sample: ``{"answer", "reason"}`` (reason None = kept)."""
    out, seen = [], set()
    for sample in samples:
        text = sample.get("text")
        answer = extract_answer(text, s.answer_extraction, s.answer_regex) if text else None
        reason = None
        if text is None:
            reason = "error"
        elif sample.get("finish_reason") == "length":
            reason = "truncated"
        elif answer is None:
            reason = "malformed"
        elif normalize_answer(text) in seen:
            reason = "duplicate"
        if text is not None:
            seen.add(normalize_answer(text))
        out.append({"answer": answer, "reason": reason})
    candidates = [v for v in out if v["reason"] is None]
    if row.get("answer") is not None and s.verify_answers:
        for v in candidates:
            if not answers_match(v["answer"], row["answer"], s.numeric_tolerance):
                v["reason"] = "wrong_answer"
    elif candidates:  # no gold answer: self-consistency over the well-formed samples
        votes = Counter(answer_key(v["answer"]) for v in candidates)
        top, count = votes.most_common(1)[0]
        share = count / len(candidates)
        for v in candidates:
            v["agreement"] = share
            if answer_key(v["answer"]) != top or share < s.min_agreement:
                v["reason"] = "no_consensus"
    if s.max_rationales_per_question > 0:
        kept = [v for v in out if v["reason"] is None]
        for v in kept[s.max_rationales_per_question:]:
            v["reason"] = "over_limit"
    return out


def distill(teacher, rows: list[dict], s: DistillSettings, out_dir: str,
            say: Callable[[str], None] = log.info, records_name: str = "rationales.jsonl") -> DistillResult:
    """Rationales for ``rows`` (``{"id", "question", "answer"}``): kept ones, all records, metrics."""
    import json

    os.makedirs(out_dir, exist_ok=True)
    cache = CallCache(os.path.join(out_dir, "teacher_cache.jsonl"))
    n = s.num_samples_per_question
    questions = [r["question"] for r in rows]
    samples, asked = _ask(teacher, cache, questions, [None] * len(rows), n, s, say, "rationales")
    verdicts = [_judge(r, smp, s) for r, smp in zip(rows, samples)]
    hinted: dict[int, tuple[list[dict], list[dict]]] = {}
    if s.rationalize:
        wrong = [j for j, (r, vs) in enumerate(zip(rows, verdicts))
                 if r.get("answer") is not None and not any(v["reason"] is None for v in vs)]
        if wrong:
            extra, asked_h = _ask(teacher, cache, [questions[j] for j in wrong], [rows[j]["answer"] for j in wrong],
                                  1, s, say, "STaR rationalisation")
            asked += asked_h
            for j, smp in zip(wrong, extra):
                hinted[j] = (smp, _judge(rows[j], smp, s))

    base = {"teacher": teacher.identity, "teacher_type": teacher.kind, "template_hash": teacher.template_hash,
            "sampling": {"n": n, "temperature": s.temperature, "max_new_tokens": s.max_new_tokens},
            "answer_extraction": s.answer_extraction}
    result = DistillResult(records_path=os.path.join(out_dir, records_name))
    for j, row in enumerate(rows):
        groups = [(samples[j], verdicts[j], False)] + ([(*hinted[j], True)] if j in hinted else [])
        for smp, vs, rationalized in groups:
            for i, (sample, v) in enumerate(zip(smp, vs)):
                rec = {"question_id": row["id"], "question": row["question"], "gold_answer": row.get("answer"),
                       "sample_index": i, "text": sample.get("text"), "finish_reason": sample.get("finish_reason"),
                       "extracted_answer": v["answer"], "verdict": "kept" if v["reason"] is None else "dropped",
                       "reason": v["reason"], "rationalized": rationalized, **base}
                if "agreement" in v:
                    rec["agreement"] = round(v["agreement"], 4)
                if sample.get("error"):
                    rec["error"] = sample["error"]
                result.records.append(rec)
                if v["reason"] is None:
                    result.kept.append(rec)
    with open(result.records_path, "w", encoding="utf-8") as f:
        for rec in result.records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    result.metrics = _metrics(rows, result, asked, s)
    return result


def _metrics(rows: list[dict], result: DistillResult, asked: int, s: DistillSettings) -> dict:
    reasons = Counter(r["reason"] for r in result.records if r["reason"])
    total = len(result.records)
    m = {"questions": len(rows), "rationales": total, "kept_rationales": len(result.kept),
         "kept_rate": len(result.kept) / total if total else 0.0,
         "questions_with_rationale": len({r["question_id"] for r in result.kept}),
         "rationalized_kept": sum(r["rationalized"] for r in result.kept),
         "teacher_samples_asked": asked, "teacher_samples_cached": total - asked,
         "gold_answers": sum(r.get("answer") is not None for r in rows)}
    remaining = total
    for name, reason in (("error", "error"), ("truncated", "truncated"), ("malformed", "malformed"),
                         ("duplicate", "duplicate")):
        dropped = reasons.get(reason, 0)
        m[f"filter_keep_rate/{name}"] = (remaining - dropped) / remaining if remaining else 0.0
        remaining -= dropped
    dropped = reasons.get("wrong_answer", 0) + reasons.get("no_consensus", 0)
    m["filter_keep_rate/verify"] = (remaining - dropped) / remaining if remaining else 0.0
    for reason, count in sorted(reasons.items()):
        m[f"dropped/{reason}"] = count
    return m


def teacher_accuracy(teacher, rows: list[dict], s: DistillSettings, out_dir: str) -> tuple[float, list[dict]]:
    """The teacher's greedy exact-match accuracy on held-out ``rows``, and its verified rationales.

    One greedy sample per question (cached like the rest), judged by the same filters; the
    verified ones also give the student's held-out loss something to measure.
    """
    from dataclasses import replace

    greedy = replace(s, num_samples_per_question=1, temperature=0.0, rationalize=False, verify_answers=True,
                     max_rationales_per_question=0)
    rows = [r for r in rows if r.get("answer") is not None]
    if not rows:
        return 0.0, []
    res = distill(teacher, rows, greedy, out_dir, say=lambda m: log.debug(m), records_name="teacher_eval.jsonl")
    return len(res.kept) / len(rows), res.kept


def settings_from(config) -> DistillSettings:
    """The :class:`DistillSettings` of a stage config (same field names)."""
    return DistillSettings(**{k: getattr(config, k) for k in asdict(DistillSettings()) if hasattr(config, k)})

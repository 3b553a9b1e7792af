"""Reasoning evaluation of the CoT stage: held-out exact-match accuracy, greedy, and the stage's plot.

The student is served by one :class:`~fnsft.actors.generation.GenerationActor` (the RL stage's
generation role), asked each held-out question as its ``output_format`` prescribes (the bare
question by default), and its answer is read with the same extraction the training targets use.
"""

from __future__ import annotations

import json
import os
from typing import Optional

from fnsft.actors.group import ActorGroup, RoleResources
from fnsft.data.answers import answers_match
from fnsft.data.cot_format import student_answer, student_prompt


def student_accuracy(handle, rows: list[dict], c, dtype: str, out_path: Optional[str] = None) -> dict:
    """``{"accuracy", "answered"}`` of the model in ``handle`` on ``rows`` (``{"question", "answer"}``)."""
    from fnsft.actors.generation import GenerationActor

    rows = [r for r in rows if r.get("answer") is not None]
    if not rows:
        return {}
    group = ActorGroup(GenerationActor, eval_resources(c.eval_num_cpus), args=(handle,),
                       kwargs={"dtype": dtype, "apply_chat_template": True, "chat_template": c.chat_template,
                               "batch_size": c.per_device_eval_batch_size, "engine": "hf"},
                       name="cot-student-eval")
    try:
        prompts = [student_prompt(r["question"], c.output_format) for r in rows]
        out = group.split(prompts, lambda actor, chunk: actor.generate.remote(
            chunk, {"max_new_tokens": c.eval_max_new_tokens, "temperature": 0.0}))
    finally:
        group.kill()
    answers = [student_answer(t, c.output_format) for t in out["texts"]]
    correct = [answers_match(a, r["answer"], c.numeric_tolerance) for a, r in zip(answers, rows)]
    if out_path:
        with open(out_path, "w", encoding="utf-8") as f:
            for r, text, a, ok in zip(rows, out["texts"], answers, correct):
                f.write(json.dumps({"question": r["question"], "gold_answer": r["answer"], "completion": text,
                                    "answer": a, "correct": ok}, ensure_ascii=False) + "\n")
    return {"accuracy": sum(correct) / len(rows), "answered": sum(a is not None for a in answers) / len(rows),
            "questions": len(rows)}


def eval_resources(num_cpus: Optional[float]) -> RoleResources:
    """The evaluation actor's share: ``num_cpus`` when set; else, on a Ray this pipeline started
    (one node, nothing else running while it evaluates: it runs before and after the Train job,
    never beside it), every CPU free now — a 1-CPU actor would leave the other cores idle — and
    on a shared cluster (other jobs, Tune trials, several nodes) 1 CPU. One GPU where one is free."""
    import ray

    from fnsft.runtime.placement import machine_cores
    from fnsft.runtime.ray_start import started_here

    free = ray.available_resources()
    if num_cpus is None:
        num_cpus = max(1, min(int(free.get("CPU", 1)), machine_cores())) if started_here() else 1
    return RoleResources(num_replicas=1, num_cpus=num_cpus, num_gpus=1 if free.get("GPU", 0) >= 1 else 0)


def plot_cot(metrics: dict, path: str) -> Optional[str]:
    """Bars: student accuracy before/after (and the teacher's); the filters' keep rates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acc = [(name, metrics[k]) for name, k in (("student before", "student_accuracy_before"),
                                               ("student after", "student_accuracy_after"),
                                               ("teacher", "teacher_accuracy")) if k in metrics]
    rates = [(k.split("/", 1)[1], v) for k, v in metrics.items() if k.startswith("filter_keep_rate/")]
    if not acc and not rates:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, items, title in ((axes[0], acc, "held-out exact-match accuracy"),
                             (axes[1], rates, "rationales kept by each filter")):
        if items:
            ax.bar([n for n, _ in items], [v for _, v in items], color="#4c72b0")
            for i, (_, v) in enumerate(items):
                ax.text(i, v + 0.02, f"{v:.0%}", ha="center")
        ax.set_ylim(0, 1.1)
        ax.set_title(title)
    fig.suptitle("cot_distillation")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path

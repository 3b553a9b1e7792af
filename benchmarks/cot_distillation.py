"""CoT distillation on SmolLM2-135M-Instruct: does the student learn to reason, and how fast are teachers?

    python benchmarks/cot_distillation.py --part accuracy   # -> results/cot_distillation_accuracy.json
    python benchmarks/cot_distillation.py --part teacher    # -> results/cot_teacher_throughput.json

``accuracy``: held-out exact-match accuracy (60 shipped word problems, greedy, the bare question)
of (1) the student before training, (2) after fnsft's ``cot_distillation`` stage from
``configs/cot_distillation.yaml`` (``--arms fnsft``), (3) after a plain TRL ``SFTTrainer`` on the
same kept rationales with the same settings (LoRA r16, lr, steps, batch, max_length, float32, seed
42, random batch order; ``trl``), (3b) the same with length-grouped batches (``trl_grouped``: why
the stage keeps random order), and (4) after a label-only SFT (question -> ``#### answer``) with
the same settings (``label``). The TRL arms are read by this script's greedy reader; the fnsft model is read
by the stage and again by that reader. ``--arms ... --merge`` adds arms to an earlier result file.

``teacher``: rationales per second of a local SmolLM2 teacher: fnsft's actor pool
(``teacher_resources.num_replicas`` actors of 1 CPU) vs plain HF ``generate`` in one process,
same prompts, batch and ``max_new_tokens``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import RESULTS, plain_training_args, start_ray, write_result  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(REPO, "configs", "cot_distillation.yaml")


def greedy_accuracy(model, tok, rows: list[dict], max_new_tokens: int, batch: int = 30) -> float:
    """The stage's own reading: chat-formatted bare question, greedy, answer after '####'."""
    import torch

    from fnsft.models.tokens import encode_prompts
    from fnsft.data.answers import answers_match
    from fnsft.data.cot_format import student_answer

    tok.padding_side = "left"
    correct = 0
    model.eval()
    for start in range(0, len(rows), batch):
        chunk = rows[start:start + batch]
        ids = encode_prompts(tok, [r["question"] for r in chunk], True)
        width = max(map(len, ids))
        pad = tok.pad_token_id
        x = torch.tensor([[pad] * (width - len(i)) + i for i in ids])
        mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])
        with torch.no_grad():
            out = model.generate(input_ids=x, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=pad)
        texts = tok.batch_decode(out[:, width:], skip_special_tokens=True)
        correct += sum(answers_match(student_answer(t), r["answer"]) for t, r in zip(texts, chunk))
    return correct / len(rows)


def plain_sft(model_dir: str, rows: list[dict], stage: dict, sampling: str, seed: int) -> tuple:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    torch.manual_seed(seed)
    out = tempfile.mkdtemp(prefix="trl_cot_")
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    peft = LoraConfig(r=stage["lora_r"], lora_alpha=stage["lora_alpha"], lora_dropout=0.05,
                      target_modules="all-linear", task_type="CAUSAL_LM")
    args = plain_training_args(out, stage["max_steps"], stage["per_device_train_batch_size"], float(stage["learning_rate"]),
                               sampling=sampling)
    args.update(lr_scheduler_type="linear", warmup_steps=0, optim="adamw_torch", seed=seed)
    trainer = SFTTrainer(model=model, args=SFTConfig(**args, max_length=stage["max_length"]),
                         train_dataset=Dataset.from_list(rows), processing_class=tok, peft_config=peft)
    t0 = time.time()
    trainer.train()
    seconds = time.time() - t0
    shutil.rmtree(out, ignore_errors=True)
    return trainer.model.merge_and_unload(), tok, seconds


def _load() -> list[float]:
    return [round(x, 1) for x in os.getloadavg()]


ARMS = ("fnsft", "trl", "trl_grouped", "label")


def _kept_rationales(records, cfg: dict) -> list[dict]:
    """The kept rationales: from the fnsft run's records, or (its arm not run) asked again of the
    shipped function teacher (deterministic) through the stage's own distil-and-verify step."""
    if records is None:
        from fnsft.stages.cot_distillation import CoTDistillationConfig
        from fnsft.teachers.distill_data import distill, settings_from
        from fnsft.teachers.factory import make_teacher

        from fnsft.data.reasoning import load_reasoning_rows

        stage = dict(cfg["stage_configs"]["cot_distillation"], output_dir=tempfile.mkdtemp(prefix="cot_teacher_"))
        c = CoTDistillationConfig(**stage)
        teacher = make_teacher(c)
        try:
            kept = distill(teacher, load_reasoning_rows(c.reasoning_dataset_path), settings_from(c), c.output_dir).kept
        finally:
            teacher.close()
        shutil.rmtree(c.output_dir, ignore_errors=True)
        return kept
    return [r for r in map(json.loads, open(records)) if r["verdict"] == "kept"]


def part_accuracy(a) -> None:
    from fnsft.data.cot_format import student_rows
    from fnsft.data.reasoning import load_reasoning_rows
    from fnsft.models.spec import resolve_model_path
    from fnsft.pipeline import Pipeline

    cfg = yaml.safe_load(open(CONFIG))
    out = tempfile.mkdtemp(prefix="cot_bench_")
    cfg["output_dir"] = out
    stage = cfg["stage_configs"]["cot_distillation"]
    if a.steps:
        stage["max_steps"] = a.steps
    os.chdir(REPO)
    held = load_reasoning_rows(stage["eval_dataset_path"])
    model_dir = resolve_model_path(cfg["model_name_or_path"])
    doc = {"config": "configs/cot_distillation.yaml", "steps": stage["max_steps"],
           "learning_rate": float(stage["learning_rate"]), "lora_r": stage["lora_r"],
           "batch": stage["per_device_train_batch_size"], "eval_questions": len(held), "results": {}}
    path = os.path.join(RESULTS, "cot_distillation_accuracy.json")
    if a.merge and os.path.exists(path):  # add arms to an earlier run's results
        with open(path) as f:
            doc["results"] = json.load(f).get("results", {})
    results = doc["results"]
    # The stage's own settings: seed 42 and random batch order (CoTDistillationStage.random_order_reason).
    seed, sampling = 42, "random"
    if "fnsft" in a.arms:
        load0 = _load()
        t0 = time.time()
        summary = Pipeline.from_dict(cfg).run()
        fnsft_s = time.time() - t0
        res = summary["stages"]["cot_distillation"]
        m = res["metrics"]
        from transformers import AutoModelForCausalLM, AutoTokenizer

        final = res["model_path"]  # the stage's trained model, read again with this script's reader (as the TRL arms)
        same_reader = greedy_accuracy(AutoModelForCausalLM.from_pretrained(final), AutoTokenizer.from_pretrained(final),
                                      held, stage["eval_max_new_tokens"])
        results["fnsft_cot"] = {
            "accuracy_before": m.get("student_accuracy_before"), "accuracy_after": m.get("student_accuracy_after"),
            "correct_before": round(m.get("student_accuracy_before", 0) * len(held)),
            "correct_after": round(m.get("student_accuracy_after", 0) * len(held)),
            "accuracy_after_script_reader": same_reader, "batching": m.get("batching"), "seed": seed,
            "kept_rationales": m.get("kept_rationales"), "wall_s": round(fnsft_s, 1), "stage_s": round(res["seconds"], 1),
            "train_s": round(m.get("train_runtime", 0), 1), "loadavg_start": load0, "loadavg_end": _load()}
        write_result("cot_distillation_accuracy", doc)  # after each arm: a cut-short run keeps what it measured
        records = os.path.join(res["output_dir"], "rationales.jsonl")
    else:
        records = None
    kept = _kept_rationales(records, cfg)
    cot_rows = [x for r in kept for x in student_rows(r["question"], r["text"], r["extracted_answer"])]
    label_rows = [{"prompt": [{"role": "user", "content": r["question"]}],
                   "completion": [{"role": "assistant", "content": f"#### {r['extracted_answer']}"}]} for r in kept]
    arms = {"trl": ("trl_sft_same_rationales", cot_rows, sampling),
            "trl_grouped": ("trl_sft_same_rationales_length_grouped", cot_rows, "group_by_length"),
            "label": ("label_only_sft", label_rows, sampling)}
    for arm in a.arms:
        if arm == "fnsft":
            continue
        name, rows, order = arms[arm]
        load0 = _load()
        model, tok, seconds = plain_sft(model_dir, rows, stage, order, seed)
        acc = greedy_accuracy(model, tok, held, stage["eval_max_new_tokens"])
        results[name] = {"accuracy_after": acc, "correct_after": round(acc * len(held)), "train_rows": len(rows),
                         "sampling": order, "seed": seed, "train_s": round(seconds, 1), "loadavg_start": load0,
                         "loadavg_end": _load()}
        del model
        write_result("cot_distillation_accuracy", doc)
    shutil.rmtree(out, ignore_errors=True)


def part_teacher(a) -> None:
    import ray
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fnsft.actors.group import RoleResources
    from fnsft.models.tokens import encode_prompts
    from fnsft.data.reasoning import load_reasoning_rows
    from fnsft.models.spec import resolve_model_path
    from fnsft.teachers.local import LocalTeacher

    model_dir = resolve_model_path("builtin:smollm2-135m-instruct")
    rows = load_reasoning_rows(os.path.join(REPO, "examples", "reasoning", "train.jsonl"))[:a.questions]
    questions = [r["question"] for r in rows]
    start_ray()  # as a user's local run starts it
    teacher = LocalTeacher(model_dir, resources=RoleResources(num_replicas=a.replicas, num_cpus=1),
                           batch_size=a.questions)
    teacher.start()
    t0 = time.time()
    teacher.generate(questions, a.n, 0.7, a.max_new_tokens)
    pool_s = time.time() - t0
    prompts = [teacher.prompt(q) for q in questions]
    teacher.close()
    ray.shutdown()

    torch.set_num_threads(os.cpu_count())
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = [i for i in encode_prompts(tok, prompts, True) for _ in range(a.n)]
    width = max(map(len, ids))
    x = torch.tensor([[tok.pad_token_id] * (width - len(i)) + i for i in ids])
    mask = (x != tok.pad_token_id).long()
    t0 = time.time()
    with torch.no_grad():
        model.generate(input_ids=x, attention_mask=mask, max_new_tokens=a.max_new_tokens, do_sample=True,
                       temperature=0.7, top_k=0, pad_token_id=tok.pad_token_id)
    hf_s = time.time() - t0
    total = a.questions * a.n
    write_result("cot_teacher_throughput", {
        "questions": a.questions, "samples_per_question": a.n, "max_new_tokens": a.max_new_tokens,
        "replicas": a.replicas, "fnsft_pool_rationales_per_s": total / pool_s, "hf_generate_rationales_per_s": total / hf_s,
        "speedup": hf_s / pool_s})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["accuracy", "teacher"], required=True)
    p.add_argument("--steps", type=int, default=0, help="accuracy: override the config's max_steps")
    p.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS),
                   help="accuracy: fnsft (the stage), trl (same settings), trl_grouped (length-grouped batches), label")
    p.add_argument("--merge", action="store_true", help="accuracy: keep the other arms of an earlier result file")
    p.add_argument("--questions", type=int, default=16)
    p.add_argument("--n", type=int, default=4)
    p.add_argument("--max_new_tokens", type=int, default=96)
    p.add_argument("--replicas", type=int, default=2)
    a = p.parse_args()
    (part_accuracy if a.part == "accuracy" else part_teacher)(a)


if __name__ == "__main__":
    main()

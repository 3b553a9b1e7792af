"""CoT distillation on SmolLM2-135M-Instruct: does the student learn to reason, and how fast are teachers?

    python benchmarks/cot_distillation.py --part accuracy   # -> results/cot_distillation_accuracy.json
    python benchmarks/cot_distillation.py --part teacher    # -> results/cot_teacher_throughput.json

``accuracy``: held-out exact-match accuracy (60 shipped word problems, greedy, the bare question)
of (1) the student before training, (2) after fnsft's ``cot_distillation`` stage from
``configs/cot_distillation.yaml`` (``--arms fnsft``; ``torch_dtype`` set to ``float32`` instead of the
config's ``auto``), (3) after a plain TRL ``SFTTrainer`` on the same kept rationales with the same
settings (LoRA r16, lr, steps, batch, max_length, float32, random batch order; ``trl``), (3b) the
same with length-grouped batches (``trl_grouped``: why the stage keeps random order), and (4) after
a label-only SFT (question -> ``#### answer``) with the same settings (``label``). Every arm trains
in float32 and once per seed of ``--seeds`` (default 0 1 2; the stage's ``seed`` and the trainer's);
per arm the JSON gives each seed's accuracy, their mean and min-max. The TRL arms are read by this
script's greedy reader; the fnsft model is read by the stage and again by that reader.
``--arms ... --merge`` adds arms to an earlier result file.

``teacher``: rationales per second of a local SmolLM2 teacher: fnsft's actor pool
(``teacher_resources.num_replicas`` actors of 1 CPU) vs plain HF ``generate`` in one process
(all the CPUs' threads), same prompts, samples, float32, temperature and ``max_new_tokens``. Both
loaded once (not timed) and warmed up; then ``--rounds`` (default 3) timed passes each, the order
alternating (pool first in round 0); median and min-max of rationales/s, and the new tokens
(the decoded texts re-tokenized, the same count on both sides) and tokens/s beside them, as sampled
lengths differ. The pool splits the batch across its replicas; the HF side generates it at once.
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
from common import RESULTS, plain_training_args, run_alternating, spread, start_ray, write_result  # noqa: E402

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


def _summarise(arm: dict, keys: tuple) -> None:
    """Each key over the seeds: ``<key>`` (the mean), ``<key>_spread`` (median, min, max, n) and
    ``<key>_per_seed``."""
    per = arm["per_seed"]
    for key in keys:
        values = {seed: r[key] for seed, r in per.items() if r.get(key) is not None}
        arm[key] = round(sum(values.values()) / len(values), 4) if values else None
        arm[key + "_spread"] = spread(values.values())
        arm[key + "_per_seed"] = values


def _record(results: dict, name: str, seed: int, entry: dict, keys: tuple) -> None:
    arm = results.get(name)
    if not isinstance(arm, dict) or "per_seed" not in arm:  # absent, or an earlier one-seed result
        arm = results[name] = {"per_seed": {}}
    arm["per_seed"][str(seed)] = entry
    _summarise(arm, keys)


def part_accuracy(a) -> None:
    from fnsft.data.cot_format import student_rows
    from fnsft.data.reasoning import load_reasoning_rows
    from fnsft.models.spec import resolve_model_path
    from fnsft.pipeline import Pipeline

    cfg = yaml.safe_load(open(CONFIG))
    cfg["torch_dtype"] = "float32"  # the config's `auto` is bf16 on AMX-BF16 CPUs; the TRL arms train in float32
    stage = cfg["stage_configs"]["cot_distillation"]
    if a.steps:
        stage["max_steps"] = a.steps
    os.chdir(REPO)
    held = load_reasoning_rows(stage["eval_dataset_path"])
    model_dir = resolve_model_path(cfg["model_name_or_path"])
    doc = {"config": "configs/cot_distillation.yaml", "steps": stage["max_steps"],
           "learning_rate": float(stage["learning_rate"]), "lora_r": stage["lora_r"],
           "batch": stage["per_device_train_batch_size"], "eval_questions": len(held), "torch_dtype": "float32",
           "seeds": a.seeds, "results": {}}
    path = os.path.join(RESULTS, "cot_distillation_accuracy.json")
    if a.merge and os.path.exists(path):  # add arms to an earlier run's results
        with open(path) as f:
            doc["results"] = json.load(f).get("results", {})
    results = doc["results"]
    sampling = "random"  # the stage's random batch order (CoTDistillationStage.random_order_reason)
    arms = {"trl": "trl_sft_same_rationales", "trl_grouped": "trl_sft_same_rationales_length_grouped",
            "label": "label_only_sft"}
    for seed in a.seeds:
        print(f"seed {seed}", flush=True)
        out = tempfile.mkdtemp(prefix="cot_bench_")
        if "fnsft" in a.arms:
            run_cfg = {**cfg, "output_dir": out, "stage_configs": {"cot_distillation": {**stage, "seed": seed}}}
            load0 = _load()
            t0 = time.time()
            summary = Pipeline.from_dict(run_cfg).run()
            fnsft_s = time.time() - t0
            res = summary["stages"]["cot_distillation"]
            m = res["metrics"]
            from transformers import AutoModelForCausalLM, AutoTokenizer

            final = res["model_path"]  # the stage's trained model, read again with this script's reader (as the TRL arms)
            same_reader = greedy_accuracy(AutoModelForCausalLM.from_pretrained(final), AutoTokenizer.from_pretrained(final),
                                          held, stage["eval_max_new_tokens"])
            _record(results, "fnsft_cot", seed, {
                "accuracy_before": m.get("student_accuracy_before"), "accuracy_after": m.get("student_accuracy_after"),
                "correct_before": round(m.get("student_accuracy_before", 0) * len(held)),
                "correct_after": round(m.get("student_accuracy_after", 0) * len(held)),
                "accuracy_after_script_reader": same_reader, "batching": m.get("batching"), "seed": seed,
                "torch_dtype": run_cfg["torch_dtype"], "kept_rationales": m.get("kept_rationales"),
                "wall_s": round(fnsft_s, 1), "stage_s": round(res["seconds"], 1),
                "train_s": round(m.get("train_runtime", 0), 1), "loadavg_start": load0, "loadavg_end": _load()},
                ("accuracy_before", "accuracy_after", "accuracy_after_script_reader", "correct_after"))
            write_result("cot_distillation_accuracy", doc)  # after each run: a cut-short run keeps what it measured
            records = os.path.join(res["output_dir"], "rationales.jsonl")
        else:
            records = None
        kept = _kept_rationales(records, cfg)
        cot_rows = [x for r in kept for x in student_rows(r["question"], r["text"], r["extracted_answer"])]
        label_rows = [{"prompt": [{"role": "user", "content": r["question"]}],
                       "completion": [{"role": "assistant", "content": f"#### {r['extracted_answer']}"}]} for r in kept]
        rows_of = {"trl": (cot_rows, sampling), "trl_grouped": (cot_rows, "group_by_length"), "label": (label_rows, sampling)}
        for arm in a.arms:
            if arm == "fnsft":
                continue
            rows, order = rows_of[arm]
            load0 = _load()
            model, tok, seconds = plain_sft(model_dir, rows, stage, order, seed)
            acc = greedy_accuracy(model, tok, held, stage["eval_max_new_tokens"])
            _record(results, arms[arm], seed, {
                "accuracy_after": acc, "correct_after": round(acc * len(held)), "train_rows": len(rows),
                "sampling": order, "seed": seed, "torch_dtype": str(next(model.parameters()).dtype).split(".")[-1],
                "train_s": round(seconds, 1), "loadavg_start": load0, "loadavg_end": _load()},
                ("accuracy_after", "correct_after"))
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
    total = a.questions * a.n
    start_ray()  # as a user's local run starts it
    teacher = LocalTeacher(model_dir, resources=RoleResources(num_replicas=a.replicas, num_cpus=1),
                           batch_size=a.questions, dtype="float32")  # float32 like the HF side
    t0 = time.time()
    teacher.start()
    pool_start_s = time.time() - t0
    prompts = [teacher.prompt(q) for q in questions]

    torch.set_num_threads(os.cpu_count())
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    t0 = time.time()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    hf_load_s = time.time() - t0
    ids = [i for i in encode_prompts(tok, prompts, True) for _ in range(a.n)]
    width = max(map(len, ids))
    x = torch.tensor([[tok.pad_token_id] * (width - len(i)) + i for i in ids])
    mask = torch.tensor([[0] * (width - len(i)) + [1] * len(i) for i in ids])

    def new_tokens(texts: list[str]) -> int:  # the same count on both sides: the decoded texts re-tokenized
        return sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)

    def figures(seconds: float, texts: list[str]) -> dict:
        n_tok = new_tokens(texts)
        return {"seconds": round(seconds, 3), "rationales_per_s": round(total / seconds, 4), "new_tokens": n_tok,
                "new_tokens_per_s": round(n_tok / seconds, 2)}

    def pool_once(max_new_tokens: int = a.max_new_tokens) -> dict:
        t0 = time.time()
        out = teacher.generate(questions, a.n, 0.7, max_new_tokens)
        return figures(time.time() - t0, [s["text"] for per in out for s in per])

    def hf_once(max_new_tokens: int = a.max_new_tokens) -> dict:
        t0 = time.time()
        with torch.no_grad():
            out = model.generate(input_ids=x, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=True,
                                 temperature=0.7, top_k=0, pad_token_id=tok.pad_token_id)
        seconds = time.time() - t0
        return figures(seconds, tok.batch_decode(out[:, width:], skip_special_tokens=True))

    pool_once(4), hf_once(4)  # warm-up, untimed: first-call costs on both sides
    try:
        runs, order = run_alternating({"fnsft_pool": pool_once, "hf_generate": hf_once}, a.rounds,
                                      lambda m: f"{m['rationales_per_s']:.2f} rationales/s, {m['new_tokens_per_s']:.1f} tokens/s")
    finally:
        teacher.close()
        ray.shutdown()
    doc = {"questions": a.questions, "samples_per_question": a.n, "max_new_tokens": a.max_new_tokens,
           "replicas": a.replicas, "rounds": a.rounds, "dtype": "float32", "temperature": 0.7, "order": order,
           "hf_torch_threads": torch.get_num_threads(),
           "startup_s": {"fnsft_pool": round(pool_start_s, 2), "hf_generate": round(hf_load_s, 2)}}
    for side, rs in runs.items():
        doc[side] = {"rationales_per_s": spread(r["rationales_per_s"] for r in rs),
                     "new_tokens_per_s": spread(r["new_tokens_per_s"] for r in rs), "runs": rs}
    doc["fnsft_pool_rationales_per_s"] = doc["fnsft_pool"]["rationales_per_s"]["median"]
    doc["hf_generate_rationales_per_s"] = doc["hf_generate"]["rationales_per_s"]["median"]
    doc["speedup"] = round(doc["fnsft_pool_rationales_per_s"] / doc["hf_generate_rationales_per_s"], 3)
    doc["speedup_per_round"] = spread(p["rationales_per_s"] / h["rationales_per_s"]
                                      for p, h in zip(runs["fnsft_pool"], runs["hf_generate"]))
    write_result("cot_teacher_throughput", doc)


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
    p.add_argument("--rounds", type=int, default=3, help="teacher: timed passes per side, the order alternating")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="accuracy: one training run per arm and seed")
    a = p.parse_args()
    (part_accuracy if a.part == "accuracy" else part_teacher)(a)


if __name__ == "__main__":
    main()

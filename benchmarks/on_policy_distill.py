"""On-policy distillation vs SFT on a teacher's rationales, SmolLM2-135M-Instruct, equal teacher cost.

    python benchmarks/on_policy_distill.py            # -> results/on_policy_distill.json (~40 min)
    python benchmarks/on_policy_distill.py --arms sft_then_on_policy --merge   # one arm more

1. **The teacher**: SmolLM2 after ``configs/cot_distillation.yaml`` (the function teacher's verified
   rationales of the shipped word problems, LoRA, float32, ``--teacher_steps``), merged; its greedy
   held-out accuracy is measured with the reader of ``benchmarks/cot_distillation.py``.
2. **SFT on rationales** (``cot_distillation``, ``teacher_model_type: local`` = that teacher): the
   teacher writes one rationale for each of ``--budget`` training questions, the verified ones are
   the student's SFT rows (LoRA r16, the config's lr, steps and batch).
3. **On-policy distillation** (``rl.algorithm: on_policy_distill``): the student samples one answer to
   each of ``--budget`` training questions (``--budget / --prompts`` iterations), the same teacher
   scores the student's tokens (a forward pass, no decoding), LoRA r16.
4. **SFT, then on-policy** (``sft_then_on_policy``): half the budget as arm 2 (rationales for
   ``--budget / 2`` questions), then arm 3 from that student on the other half — distillation as
   it is run in practice, SFT on the teacher's samples bringing the student close enough for the
   teacher's per-token signal to be informative.

Equal teacher cost: every arm gets the teacher's work on ``--budget`` completions (arm 2: it decodes
them; arm 3: it scores the student's). The JSON records each arm's teacher tokens (and arm 3's scoring seconds), and
the held-out accuracy of each student (60 problems, greedy, bare question, answer after ``####``;
the same reader for every model), the base model's from the teacher's stage. One run per seed of
``--seeds``; each arm's accuracy per seed, and their median and min-max.
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
from common import RESULTS, machine, spread, write_result  # noqa: E402
from cot_distillation import CONFIG, REPO, greedy_accuracy  # noqa: E402


def _load() -> list[float]:
    return [round(x, 1) for x in os.getloadavg()]


def _accuracy(model_dir: str, held: list[dict], max_new_tokens: int) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return greedy_accuracy(AutoModelForCausalLM.from_pretrained(model_dir), AutoTokenizer.from_pretrained(model_dir),
                           held, max_new_tokens)


def _run(cfg: dict) -> dict:
    from fnsft.pipeline import Pipeline

    t0 = time.time()
    summary = Pipeline.from_dict(cfg).run()
    stage = next(iter(summary["stages"].values()))
    stage["wall_s"] = round(time.time() - t0, 1)
    return stage


def train_teacher(cfg: dict, stage: dict, steps: int, seed: int, keep: str) -> dict:
    """The config's CoT stage (function teacher), its merged model copied to ``keep``."""
    run = {**cfg, "output_dir": tempfile.mkdtemp(prefix="opd_teacher_"),
           "stage_configs": {"cot_distillation": {**stage, "max_steps": steps, "seed": seed}}}
    res = _run(run)
    shutil.copytree(res["model_path"], keep)
    shutil.rmtree(run["output_dir"], ignore_errors=True)
    m = res["metrics"]
    return {"accuracy_before": m.get("student_accuracy_before"), "accuracy_after_stage": m.get("student_accuracy_after"),
            "steps": steps, "wall_s": res["wall_s"]}


def sft_arm(cfg: dict, stage: dict, teacher: str, budget: int, seed: int, held: list[dict],
            keep: str | None = None) -> dict:
    """cot_distillation with the model teacher on ``budget`` questions; the student's accuracy
    (its merged model copied to ``keep`` when given)."""
    from transformers import AutoTokenizer

    arm = {**stage, "teacher_model_type": "local", "teacher_model_path": teacher, "max_questions": budget,
           "teacher_prompt_template": "{question}",  # the bare question, as the teacher was trained (and the student is asked)
           "num_samples_per_question": 1, "evaluate_teacher": False, "eval_before_training": False, "seed": seed,
           "teacher_resources": {"num_replicas": 1, "num_cpus": 2}}
    run = {**cfg, "output_dir": tempfile.mkdtemp(prefix="opd_sft_"), "stage_configs": {"cot_distillation": arm}}
    load0, t0 = _load(), time.time()
    res = _run(run)
    m = res["metrics"]
    tok = AutoTokenizer.from_pretrained(teacher)
    with open(res["artifacts"]["rationales"]) as f:
        records = [json.loads(line) for line in f]
    teacher_tokens = sum(len(tok(r["text"], add_special_tokens=False)["input_ids"]) for r in records)
    out = {"accuracy": _accuracy(res["model_path"], held, stage["eval_max_new_tokens"]),
           "accuracy_stage_reader": m.get("student_accuracy_after"), "kept_rationales": m.get("kept_rationales"),
           "teacher_completions": len(records), "teacher_tokens": teacher_tokens,
           "train_s": round(m.get("train_runtime", 0), 1),
           "wall_s": round(time.time() - t0, 1), "loadavg_start": load0, "loadavg_end": _load()}
    if keep:
        shutil.copytree(res["model_path"], keep)
    shutil.rmtree(run["output_dir"], ignore_errors=True)
    return out


def opd_arm(cfg: dict, stage: dict, teacher: str, a, seed: int, held: list[dict], budget: int,
            student: str | None = None) -> dict:
    """The RL stage with on_policy_distill on ``budget`` samples of the student (the config's
    model, or the one in ``student``); the student's accuracy after."""
    rl = {"dataset_name_or_path": stage["reasoning_dataset_path"], "algorithm": "on_policy_distill",
          "reference": {"model_name_or_path": teacher, "num_cpus": 0.5},
          "num_iterations": budget // a.prompts, "prompts_per_iteration": a.prompts, "num_generations": 1,
          "max_new_tokens": stage["eval_max_new_tokens"], "temperature": 1.0, "learning_rate": a.opd_lr,
          "ppo_epochs": a.ppo_epochs, "num_mini_batches": 2, "use_peft": True, "lora_r": stage["lora_r"],
          "lora_alpha": stage["lora_alpha"], "seed": seed, "save_steps": 0, "logging_steps": 100,
          "report_to": ["none"], "generation": {"num_cpus": 1}}
    run = {**{k: v for k, v in cfg.items() if k not in ("resources",)}, "output_dir": tempfile.mkdtemp(prefix="opd_rl_"),
           "stages": ["rl"], "stage_configs": {"rl": rl}, "resources": {"num_workers": 1}}
    if student:
        run["model_name_or_path"] = student
    load0, t0 = _load(), time.time()
    res = _run(run)
    with open(res["artifacts"]["rl_history"]) as f:
        history = json.load(f)
    rows = a.prompts
    out = {"accuracy": _accuracy(res["model_path"], held, stage["eval_max_new_tokens"]),
           "iterations": len(history), "student_samples": rows * len(history),
           "teacher_tokens": round(sum(h["response_length"] * rows for h in history)),
           "scoring_s": round(sum(h.get("time/scoring_s", 0) for h in history), 1),  # teacher log-probs (+ rewards: none)
           "reverse_kl_first": history[0]["kl"], "reverse_kl_last": history[-1]["kl"],
           "reverse_kl": [round(h["kl"], 2) for h in history], "train_s": round(res["seconds"], 1),
           "wall_s": round(time.time() - t0, 1), "loadavg_start": load0, "loadavg_end": _load()}
    shutil.rmtree(run["output_dir"], ignore_errors=True)
    return out


ARMS = ("sft", "on_policy", "sft_then_on_policy")


def run_arm(arm: str, cfg: dict, stage: dict, teacher: str, a, seed: int, held: list[dict]) -> dict:
    if arm == "sft":
        return sft_arm(cfg, stage, teacher, a.budget, seed, held)
    if arm == "on_policy":
        return opd_arm(cfg, stage, teacher, a, seed, held, a.budget)
    # half the teacher's completions as SFT rows, the other half scoring the SFT student's samples
    student = os.path.join(tempfile.mkdtemp(prefix="opd_student_"), "model")
    try:
        first = sft_arm(cfg, stage, teacher, a.budget // 2, seed, held, keep=student)
        second = opd_arm(cfg, stage, teacher, a, seed, held, a.budget - a.budget // 2, student=student)
    finally:
        shutil.rmtree(os.path.dirname(student), ignore_errors=True)
    return {"accuracy": second["accuracy"], "accuracy_after_sft_part": first["accuracy"],
            "sft_part": first, "on_policy_part": second}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=int, default=128, help="Teacher completions per arm (decoded or scored).")
    p.add_argument("--prompts", type=int, default=8, help="On-policy: prompts per iteration.")
    p.add_argument("--ppo_epochs", type=int, default=2, help="On-policy: passes over each batch.")
    p.add_argument("--opd_lr", type=float, default=5e-4, help="On-policy: learning rate (LoRA).")
    p.add_argument("--teacher_steps", type=int, default=60, help="The teacher's CoT SFT steps.")
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    p.add_argument("--merge", action="store_true", help="Add these arms to the results file's earlier ones.")
    p.add_argument("--tag", default="", help="Suffix of the arms' names in the results (other settings, merged).")
    a = p.parse_args()
    from fnsft.data.reasoning import load_reasoning_rows

    os.chdir(REPO)
    cfg = yaml.safe_load(open(CONFIG))
    cfg["torch_dtype"] = "float32"
    stage = cfg["stage_configs"]["cot_distillation"]
    held = load_reasoning_rows(stage["eval_dataset_path"])
    from fnsft.config.schema import RayConfig
    from fnsft.runtime.ray_start import ensure_ray

    # The RL arm's role actors (generation 1 CPU, teacher 0.5, reward 0.25) beside its 1-CPU learner:
    # they take turns (the synchronous loop), so Ray counts 2 more CPUs than the cores, as in
    # rollout_engines.py and async_rl.py.
    ensure_ray(RayConfig(num_cpus=(os.cpu_count() or 2) + 2))
    doc = {"machine": machine(), "budget": a.budget, "prompts_per_iteration": a.prompts, "ppo_epochs": a.ppo_epochs,
           "opd_learning_rate": a.opd_lr, "sft_learning_rate": float(stage["learning_rate"]),
           "sft_steps": stage["max_steps"], "eval_questions": len(held), "seeds": a.seeds, "per_seed": {}}
    path = os.path.join(RESULTS, "on_policy_distill.json")
    if a.merge and os.path.exists(path):
        with open(path) as f:
            earlier = json.load(f)
        doc["per_seed"] = earlier.get("per_seed", {})
        if a.tag:  # the file's settings stay those of its untagged arms; this run's are in its entries
            doc.update({k: earlier[k] for k in ("budget", "prompts_per_iteration", "ppo_epochs", "opd_learning_rate")
                        if k in earlier})
    for seed in a.seeds:
        teacher = tempfile.mkdtemp(prefix="opd_teacher_model_")
        shutil.rmtree(teacher)
        entry = doc["per_seed"].setdefault(str(seed), {})
        # the same seed trains the same teacher (a merged run retrains it: its earlier one is gone)
        entry["teacher"] = {**train_teacher(cfg, stage, a.teacher_steps, seed, teacher),
                            **({"earlier": entry["teacher"]} if "teacher" in entry else {})}
        entry["teacher"]["accuracy"] = _accuracy(teacher, held, stage["eval_max_new_tokens"])
        write_result("on_policy_distill", doc)
        for arm in a.arms:
            print(f"seed {seed}: {arm}", flush=True)
            entry[arm + a.tag] = {**run_arm(arm, cfg, stage, teacher, a, seed, held),
                                  **({"settings": {"opd_learning_rate": a.opd_lr, "ppo_epochs": a.ppo_epochs}}
                                     if a.tag else {})}
            write_result("on_policy_distill", doc)  # after each arm: a cut-short run keeps what it measured
        shutil.rmtree(teacher, ignore_errors=True)
    names = {name for e in doc["per_seed"].values() for name in e}
    for arm in sorted(names):
        doc[arm + "_accuracy"] = spread(e[arm]["accuracy"] for e in doc["per_seed"].values() if arm in e)
    doc["base_accuracy"] = spread(e["teacher"]["accuracy_before"] for e in doc["per_seed"].values())
    print(json.dumps({k: v for k, v in doc.items() if k.endswith("accuracy")}, indent=1))
    write_result("on_policy_distill", doc)


if __name__ == "__main__":
    main()

"""A run folder written by hand (no Ray): what SFT, DPO and RL stages leave on disk."""

from __future__ import annotations

import json
import os

import yaml


def make_run(root) -> str:
    out = str(root)
    os.makedirs(out, exist_ok=True)
    cfg = {"model_name_or_path": "builtin:tiny-llama", "output_dir": out, "stages": ["sft", "dpo", "rl"],
           "resources": {"num_workers": 2, "cpus_per_worker": 1},
           "stage_configs": {
               "sft": {"dataset_name_or_path": "examples/sample_data.jsonl", "learning_rate": 3e-3, "use_peft": True},
               "dpo": {"preference_dataset_path": "examples/preferences.jsonl", "beta": 0.1,
                       "judge": {"api_key": "sk-should-not-show", "api_key_env": "OPENAI_API_KEY"}},
               "rl": {"dataset_name_or_path": "examples/arithmetic/train.jsonl", "algorithm": "grpo",
                      "resources": {"num_workers": 1, "cpus_per_worker": 2}}}}
    with open(os.path.join(out, "resolved_config.yaml"), "w") as f:
        yaml.safe_dump(cfg, f)
    stages = {}
    for i, name in enumerate(["sft", "dpo", "rl"], start=1):
        folder = os.path.join(out, f"{i:02d}_{name}")
        os.makedirs(os.path.join(folder, "model"), exist_ok=True)
        with open(os.path.join(folder, "model", "config.json"), "w") as f:
            f.write("{}")
        stages[name] = {"status": "completed", "output_dir": folder, "model_path": os.path.join(folder, "model"),
                        "seconds": 30.0 * i}
    sft_hist = [{"step": s, "loss": 3.0 - 0.1 * s, "total_flos": 1e13 * s, "learning_rate": 1e-3, "epoch": s / 10}
                for s in range(1, 11)]
    sft_hist.append({"step": 10, "eval_loss": 2.2, "epoch": 1.0})
    sft_hist.append({"step": 10, "train_runtime": 12.0, "train_loss": 2.5, "total_flos": 1e14})
    json.dump(sft_hist, open(os.path.join(out, "01_sft", "log_history.json"), "w"))
    stages["sft"]["metrics"] = {"before_eval_loss": 3.1, "eval_loss": 2.2, "train_loss": 2.5, "truncated_examples": 3,
                                "strategy": "deepspeed-zero2", "global_step": 10, "total_flos": 1e14}
    dpo_hist = [{"step": s, "loss": 0.69 - 0.02 * s, "rewards/margins": 0.05 * s, "rewards/accuracies": min(1, 0.5 + 0.1 * s)}
                for s in range(1, 6)]
    json.dump(dpo_hist, open(os.path.join(out, "02_dpo", "log_history.json"), "w"))
    stages["dpo"]["metrics"] = {"before_eval_rewards/accuracies": 0.5, "eval_rewards/accuracies": 0.8,
                                "before_eval_rewards/margins": 0.0, "eval_rewards/margins": 0.3,
                                "strategy": "deepspeed-zero2", "unusable_pairs_dropped": 2}
    rl_hist = [{"iteration": s, "reward_mean": 0.2 + 0.05 * s, "kl": 0.01 * s, "time/generation_s": 1.0,
                "weight_sync_mb": 0.5} for s in range(1, 9)]
    json.dump(rl_hist, open(os.path.join(out, "03_rl", "rl_history.json"), "w"))
    json.dump([{"iteration": 0, "eval/reward": 0.1, "eval_s": 1.0}, {"iteration": 8, "eval/reward": 0.4, "eval_s": 1.0}],
              open(os.path.join(out, "03_rl", "rl_eval.json"), "w"))
    stages["rl"]["metrics"] = {"reward_start": 0.25, "reward_end": 0.6, "eval_reward_start": 0.1,
                               "eval_reward_end": 0.4, "strategy": "torch", "algorithm": "grpo"}
    json.dump({"output_dir": out, "stages": stages, "stage_order": ["sft", "dpo", "rl"], "status": "completed",
               "total_seconds": 190.0, "final_model": None}, open(os.path.join(out, "pipeline_summary.json"), "w"))
    json.dump({"prompts": ["What is 2 + 2?", "Name a colour <b>bold</b>"], "inputs": ["a", "b"],
               "format": "chat template", "prompt_source": "report.prompts", "max_new_tokens": 16,
               "columns": [{"stage": "base", "label": "builtin:tiny-llama", "answers": ["fish fish", "blue"]},
                           {"stage": "sft", "answers": ["4", "red"]}, {"stage": "dpo", "answers": ["four", "green"]},
                           {"stage": "rl", "answers": ["4!", "ANSWER-RL-7"]}]},
              open(os.path.join(out, "report_answers.json"), "w"))
    return out

"""Tool use before and after RL: SmolLM2-135M-Instruct with the python_expression tool on the
shipped arithmetic problems (configs/rl_tools.yaml's settings).

    python benchmarks/tool_use.py [--iterations 30] [--eval_prompts 50] [--model builtin:smollm2-135m-instruct]
    python benchmarks/tool_use.py --quick          # the tiny model, 1 iteration, 4 held-out prompts
    python benchmarks/tool_use.py --cold_start 64 --iterations 20   # SFT on 64 tool-call demonstrations first

``--cold_start N`` puts an SFT stage before RL (``stages: [sft, rl]``), the recipe tool-use RL
work starts from (a model that never calls the tool gives RL nothing to reinforce): N problems
of the training prompts solved the tool's way, each as two SFT rows (the call, then the answer
after the tool's result: SFT trains a row's last assistant turn), in the RL stage's own system
message. The RL stage's held-out evaluation before its first iteration is then the model after
SFT; the base model's figures are those of the run without ``--cold_start`` (greedy, same
prompts: deterministic). Writes tool_use_cold_start.json.

Writes benchmarks/results/tool_use.json: on the held-out prompts (greedy episodes, up to
``max_turns`` replies, tools allowed), before and after training, the accuracy (``exact_match`` of
the final reply) and the tool-call rate (``tool_success``: an episode in which a tool answered
without an error), with the CPU model (``lscpu``) and the machine's load. Not run by CI (it takes
tens of minutes on a CPU); the figures in docs/environments.md come from it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, REPO)
from async_rl import cpu_model  # noqa: E402
from common import SMOLLM2, TINY, write_result  # noqa: E402

from fnsft.pipeline.driver import Pipeline  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=SMOLLM2)
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--eval_prompts", type=int, default=50)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cold_start", type=int, default=0, help="SFT on this many tool-call demonstrations first")
    ap.add_argument("--sft_steps", type=int, default=24)
    ap.add_argument("--prompts", type=int, default=None, help="prompts per RL iteration (default: the config's)")
    args = ap.parse_args()
    if args.quick:
        args.model, args.iterations, args.eval_prompts = TINY, 1, 4
    with open(os.path.join(REPO, "configs", "rl_tools.yaml")) as f:
        cfg = yaml.safe_load(f)
    out = tempfile.mkdtemp(prefix="fnsft_tool_use_")
    rows = [json.loads(ln) for ln in open(os.path.join(REPO, "examples", "arithmetic", "eval.jsonl"))]
    eval_path = os.path.join(out, "eval.jsonl")
    with open(eval_path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows[:args.eval_prompts])
    rl = cfg["stage_configs"]["rl"]
    rl.update(num_iterations=args.iterations, eval_dataset_path=eval_path,
              dataset_name_or_path=os.path.join(REPO, rl["dataset_name_or_path"]))
    if args.prompts:
        rl.update(prompts_per_iteration=args.prompts)
    if args.quick:
        rl.update(prompts_per_iteration=2, num_generations=2, max_new_tokens=8)
    cfg.update(model_name_or_path=args.model, output_dir=out)
    if args.cold_start:
        cfg["stages"] = ["sft", "rl"]
        cfg["stage_configs"]["sft"] = {
            "dataset_name_or_path": demonstrations(rl, args.cold_start, os.path.join(out, "cold_start.jsonl")),
            "max_steps": args.sft_steps, "learning_rate": 2e-4, "per_device_train_batch_size": 4,
            "use_peft": True, "lora_r": 16, "lora_dropout": 0.0, "eval_split": 0, "report_to": ["none"]}
    metrics = Pipeline.from_dict(cfg).run()["stages"]["rl"]["metrics"]
    result = {"model": args.model, "iterations": args.iterations, "prompts_per_iteration": rl["prompts_per_iteration"],
              "num_generations": rl["num_generations"], "eval_prompts": len(rows[:args.eval_prompts]),
              "cpu_model": cpu_model(), "output_dir": out, "cold_start_demonstrations": args.cold_start,
              "sft_steps": args.sft_steps if args.cold_start else 0}
    for name in ("exact_match", "tool_success"):
        result[f"{name}_before"] = metrics.get(f"eval_{name}_start")
        result[f"{name}_after"] = metrics.get(f"eval_{name}_end")
    name = "tool_use" + ("_cold_start" if args.cold_start else "") + ("_quick" if args.quick else "")
    write_result(name, result)


def demonstrations(rl: dict, n: int, path: str) -> str:
    """``n`` training problems solved with the tool, as SFT rows in the RL stage's chat layout."""
    from fnsft.envs.builtin_tools import python_expression
    from fnsft.envs.tools import load_tools, tool_system_prompt

    system = tool_system_prompt([t.schema for t in load_tools(rl["environment"]["tools"], "tools")])
    with open(rl["dataset_name_or_path"]) as f:
        rows = [json.loads(ln) for ln in f][:n]
    with open(path, "w") as f:
        for r in rows:
            expression = r["prompt"].split("What is ", 1)[1].split("?", 1)[0].replace("×", "*").replace("÷", "/")
            call = "<tool_call>\n" + json.dumps({"name": "python_expression", "arguments": {"expression": expression}}) \
                + "\n</tool_call>"
            turns = [{"role": "system", "content": system}, {"role": "user", "content": r["prompt"]},
                     {"role": "assistant", "content": call}]
            f.write(json.dumps({"messages": turns}) + "\n")
            f.write(json.dumps({"messages": turns + [{"role": "tool", "content": python_expression(expression)},
                                                     {"role": "assistant", "content": r["answer"]}]}) + "\n")
    return path


if __name__ == "__main__":
    main()

"""Tool use before and after RL: SmolLM2-135M-Instruct with the python_expression tool on the
shipped arithmetic problems (configs/rl_tools.yaml's settings).

    python benchmarks/tool_use.py [--iterations 30] [--eval_prompts 50] [--model builtin:smollm2-135m-instruct]
    python benchmarks/tool_use.py --quick          # the tiny model, 1 iteration, 4 held-out prompts

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
    if args.quick:
        rl.update(prompts_per_iteration=2, num_generations=2, max_new_tokens=8)
    cfg.update(model_name_or_path=args.model, output_dir=out)
    metrics = Pipeline.from_dict(cfg).run()["stages"]["rl"]["metrics"]
    result = {"model": args.model, "iterations": args.iterations, "eval_prompts": len(rows[:args.eval_prompts]),
              "cpu_model": cpu_model(), "output_dir": out}
    for name in ("exact_match", "tool_success"):
        result[f"{name}_before"] = metrics.get(f"eval_{name}_start")
        result[f"{name}_after"] = metrics.get(f"eval_{name}_end")
    write_result("tool_use_quick" if args.quick else "tool_use", result)


if __name__ == "__main__":
    main()

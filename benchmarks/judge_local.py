"""Judgements per second: the local judge pool (Ray actors, batched next-token probabilities) vs a
plain HF loop in one process (one ``generate`` call per judgement, parsing the reply), same model.

    PYTHONPATH=. python benchmarks/judge_local.py [--model builtin:smollm2-135m-instruct] [--n 64] [--replicas 2]

Writes benchmarks/results/judge_local.json. Numbers from a shared, loaded machine say little:
rerun on an idle one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import write_result  # noqa: E402


def items(n: int) -> tuple[list[str], list[str]]:
    prompts = [f"What is {i} + {i + 1}? Answer briefly." for i in range(n)]
    answers = [f"{2 * i + 1}." if i % 2 else "I am not sure." for i in range(n)]
    return prompts, answers


def plain_hf(model_dir: str, prompts: list[str], answers: list[str]) -> dict:
    """What one would write without fnsft: chat template, greedy generate of a few tokens, parse."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fnsft.judges.parsing import from_text
    from fnsft.judges.templates import render, shipped_template

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    template = shipped_template("helpfulness", "pointwise")
    t0 = time.perf_counter()
    parsed = 0
    for p, a in zip(prompts, answers):
        text = render(template, {"prompt": p, "response": a, "score_min": "1", "score_max": "9"})
        ids = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
        reply = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        parsed += from_text("pointwise", reply, [1, 9]) is not None
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "judgements_per_s": len(prompts) / seconds, "parsed_share": parsed / len(prompts)}


def pool(model_dir: str, prompts: list[str], answers: list[str], replicas: int) -> dict:
    import ray

    from fnsft.judges import JudgeSettings, build_judge

    ray.init(address="local", num_cpus=max(2, replicas), include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        s = JudgeSettings(type="local", kind="pointwise", score_range=[1, 9], model_name_or_path=model_dir,
                          num_replicas=replicas, num_cpus=1, batch_size=16)
        judge = build_judge(s)
        judge.backend.pool.wait_ready()
        t0 = time.perf_counter()
        scores = judge.pointwise(prompts, answers)
        seconds = time.perf_counter() - t0
        judge.backend.pool.kill()
    finally:
        ray.shutdown()
    return {"seconds": seconds, "judgements_per_s": len(prompts) / seconds,
            "parsed_share": sum(v is not None for v in scores) / len(scores), "replicas": replicas}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="builtin:smollm2-135m-instruct")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--replicas", type=int, default=2)
    args = ap.parse_args()
    from fnsft.models.spec import resolve_model_path

    model_dir = resolve_model_path(args.model)
    prompts, answers = items(args.n)
    import os

    hf = {"loadavg_start": list(os.getloadavg())}
    hf.update(plain_hf(model_dir, prompts, answers))
    ours = {"loadavg_start": list(os.getloadavg())}
    ours.update(pool(model_dir, prompts, answers, args.replicas))
    ours["loadavg_end"] = list(os.getloadavg())
    write_result("judge_local", {"model": args.model, "judgements": args.n, "plain_hf_generate_loop": hf,
                                 "fnsft_local_judge_pool": ours,
                                 "speedup": ours["judgements_per_s"] / hf["judgements_per_s"]})


if __name__ == "__main__":
    main()

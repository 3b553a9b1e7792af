"""Judgements per second: the local judge pool (Ray actors, batched next-token probabilities) vs a
plain HF loop in one process (batched ``generate`` at the pool's batch size, parsing the replies),
same model, same dtype, same judge prompts and tokens.

    PYTHONPATH=. python benchmarks/judge_local.py [--model builtin:smollm2-135m-instruct] [--n 64]
        [--replicas 2] [--batch_size 16] [--rounds 3]

Both sides are loaded once (start-up not timed) and warmed up on one batch; then ``--rounds``
(default 3) timed passes over the ``--n`` judgements each, the order alternating (round 0: pool
then HF, round 1: HF then pool, ...). Reported per side: judgements/s and the parsed share,
median and min-max over the rounds, each run beside it; the CPU model and load with them.

The same judge prompts (rendered by the pool's own :class:`~fnsft.judges.base.Judge`) and the same
token ids (:func:`fnsft.models.tokens.encode_prompts`, left padding) on both sides; the HF loop
runs ``generate`` on ``--batch_size`` prompts at a time (the pool's ``batch_size``), greedy,
``--max_new_tokens`` (default 4), and parses each reply with :func:`fnsft.judges.parsing.from_text`.
What cannot be the same: the pool reads one next-token distribution (one forward pass, no new
tokens sampled) and its verdict is "parsed" when the answer options hold any probability; the HF
loop must generate and find the score in the text. Each pool round uses a fresh judge (no cache
hits); Ray is started as a user's local run starts it (workers at the driver's priority).
Writes ``results/judge_local.json``. Numbers from a shared, loaded machine say little.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import run_alternating, spread, write_result  # noqa: E402

KIND, SCORE_RANGE = "pointwise", [1, 9]


def items(n: int) -> tuple[list[str], list[str]]:
    prompts = [f"What is {i} + {i + 1}? Answer briefly." for i in range(n)]
    answers = [f"{2 * i + 1}." if i % 2 else "I am not sure." for i in range(n)]
    return prompts, answers


def settings(model_dir: str, replicas: int, batch_size: int):
    from fnsft.judges import JudgeSettings

    return JudgeSettings(type="local", kind=KIND, score_range=SCORE_RANGE, model_name_or_path=model_dir,
                         num_replicas=replicas, num_cpus=1, batch_size=batch_size)


class PlainHF:
    """What one would write without fnsft: chat template, batched greedy ``generate``, parse."""

    def __init__(self, model_dir: str, dtype: str, batch_size: int, max_new_tokens: int):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(model_dir)
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype)).eval()
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens

    def judge(self, texts: list[str]) -> dict:
        import torch

        from fnsft.judges.parsing import from_text
        from fnsft.models.tokens import encode_prompts, pad_sequences

        t0 = time.perf_counter()
        all_ids = encode_prompts(self.tok, texts, True)  # as the judge actor encodes them
        parsed = 0
        for start in range(0, len(texts), self.batch_size):
            ids, mask = pad_sequences(all_ids[start:start + self.batch_size], self.tok.pad_token_id, "left")
            ids_t, mask_t = torch.as_tensor(ids), torch.as_tensor(mask)
            with torch.no_grad():
                out = self.model.generate(input_ids=ids_t, attention_mask=mask_t, max_new_tokens=self.max_new_tokens,
                                          do_sample=False, pad_token_id=self.tok.pad_token_id)
            for reply in self.tok.batch_decode(out[:, ids_t.shape[1]:], skip_special_tokens=True):
                parsed += from_text(KIND, reply, SCORE_RANGE) is not None
        seconds = time.perf_counter() - t0
        return {"seconds": round(seconds, 3), "judgements_per_s": round(len(texts) / seconds, 4),
                "parsed_share": round(parsed / len(texts), 4), "torch_threads": torch.get_num_threads()}


def pool_round(s, pool, prompts: list[str], answers: list[str]) -> dict:
    """One pass of the fnsft judge over the items: a fresh judge on the started pool (so the
    judge's in-memory cache starts empty), rendering, Ray calls and parsing timed."""
    from fnsft.judges import build_judge

    t0 = time.perf_counter()
    scores = build_judge(s, pool=pool).pointwise(prompts, answers)
    seconds = time.perf_counter() - t0
    return {"seconds": round(seconds, 3), "judgements_per_s": round(len(prompts) / seconds, 4),
            "parsed_share": round(sum(v is not None for v in scores) / len(scores), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="builtin:smollm2-135m-instruct")
    ap.add_argument("--n", type=int, default=64, help="judgements per round")
    ap.add_argument("--replicas", type=int, default=2)
    ap.add_argument("--batch_size", type=int, default=16, help="judge prompts per forward pass (both sides)")
    ap.add_argument("--max_new_tokens", type=int, default=4, help="HF side: reply length")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="both sides")
    ap.add_argument("--rounds", type=int, default=3, help="timed passes per side, the order alternating")
    ap.add_argument("--name", default="judge_local", help="results file name")
    args = ap.parse_args()
    import ray

    from fnsft.actors.judge import start_judge_pool
    from fnsft.config.schema import RayConfig
    from fnsft.judges import build_judge
    from fnsft.models.spec import resolve_model_path
    from fnsft.runtime.ray_start import ensure_ray

    model_dir = resolve_model_path(args.model)
    prompts, answers = items(args.n)
    s = settings(model_dir, args.replicas, args.batch_size)
    # A local Ray as a user's run starts it: its workers at the driver's priority (Ray's own default,
    # nice 15, would handicap the pool against the HF loop in this process), a retry on a busy machine.
    ensure_ray(RayConfig(num_cpus=max(2, args.replicas)))
    try:
        t0 = time.perf_counter()
        pool = start_judge_pool(model_dir, s, dtype=args.dtype)
        pool.wait_ready()
        pool_start_s = time.perf_counter() - t0
        judge = build_judge(s, pool=pool)
        texts = [judge._item(p, a, None)["text"] for p, a in zip(prompts, answers)]  # the pool's own prompts
        t0 = time.perf_counter()
        hf = PlainHF(model_dir, args.dtype, args.batch_size, args.max_new_tokens)
        hf_load_s = time.perf_counter() - t0
        warm = min(args.n, args.batch_size)  # one batch each, untimed (first-call costs)
        pool_round(s, pool, prompts[:warm], answers[:warm])
        hf.judge(texts[:warm])
        runs, order = run_alternating(
            {"fnsft_local_judge_pool": lambda: pool_round(s, pool, prompts, answers),
             "plain_hf_generate_batched": lambda: hf.judge(texts)},
            args.rounds, lambda m: f"{m['judgements_per_s']:.2f} judgements/s, parsed {m['parsed_share']:.0%}")
        pool.kill()
    finally:
        ray.shutdown()

    out = {"model": args.model, "judgements": args.n,
           "settings": {"rounds": args.rounds, "batch_size": args.batch_size, "replicas": args.replicas,
                        "max_new_tokens_hf": args.max_new_tokens, "dtype": args.dtype, "kind": KIND,
                        "score_range": SCORE_RANGE,
                        "parsed_means": {"fnsft_local_judge_pool": "the answer options hold probability mass",
                                         "plain_hf_generate_batched": "from_text finds a score in the reply"}},
           "order": order, "startup_s": {"fnsft_local_judge_pool": round(pool_start_s, 2),
                                         "plain_hf_generate_batched": round(hf_load_s, 2)}}
    for side, rs in runs.items():
        out[side] = {"judgements_per_s": spread(r["judgements_per_s"] for r in rs),
                     "parsed_share": spread(r["parsed_share"] for r in rs), "runs": rs}
    ratios = [p["judgements_per_s"] / h["judgements_per_s"]
              for p, h in zip(runs["fnsft_local_judge_pool"], runs["plain_hf_generate_batched"])]
    out["speedup"] = round(out["fnsft_local_judge_pool"]["judgements_per_s"]["median"]
                           / out["plain_hf_generate_batched"]["judgements_per_s"]["median"], 3)
    out["speedup_per_round"] = spread(ratios)
    write_result(args.name, out)


if __name__ == "__main__":
    main()

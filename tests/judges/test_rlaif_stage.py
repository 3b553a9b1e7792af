"""The RLAIF stage, mode reward: a function judge's score is the RL reward; the policy learns it.

The judge scores the share of answer characters in {t, h, e} (dense; FACTS.md: sparse rewards do
not move the tiny model in tens of iterations). The held-out judged score (greedy, before and
after) must rise clearly, and the trained policy must beat its input in the judged win rate.
"""

import json
import os

import pytest

from fnsft.pipeline.driver import Pipeline
from fnsft.testing import EXAMPLES, TINY

FNS = os.path.join(os.path.dirname(__file__), "judge_fns.py")
PROMPTS = os.path.join(EXAMPLES, "arithmetic", "train.jsonl")


def rlaif_config(out, **stage):
    s = {"dataset_name_or_path": PROMPTS, "algorithm": "rloo", "num_iterations": 20, "prompts_per_iteration": 8,
         "num_generations": 4, "max_new_tokens": 10, "learning_rate": 1e-2, "kl_coef": 0.01,
         "judge": {"type": "function", "function": f"{FNS}:the_share", "score_range": [0, 1]},
         "eval_dataset_path": os.path.join(EXAMPLES, "arithmetic", "eval.jsonl"),
         "report_to": ["none"], "save_intermediate": False, "logging_steps": 100,
         "generation": {"num_cpus": 1}, "reward": {"num_cpus": 0.25}, "reference": {"num_cpus": 0.5}}
    s.update(stage)
    return {"model_name_or_path": TINY, "output_dir": str(out), "stages": ["rlaif"],
            "resources": {"num_workers": 1}, "deepspeed": {"zero_stage": 2}, "stage_configs": {"rlaif": s}}


@pytest.mark.slow
def test_reward_mode_raises_the_held_out_judged_score(ray_session, tmp_path):
    summary = Pipeline.from_dict(rlaif_config(tmp_path / "run")).run()
    st = summary["stages"]["rlaif"]
    m = st["metrics"]
    start, end = m["eval_judge_start"], m["eval_judge_end"]
    print(f"rlaif reward mode: held-out judged score {start:.3f} -> {end:.3f}, win rate {m['win_rate']:.3f}")
    assert end > start + 0.15, f"held-out judged score {start:.3f} -> {end:.3f}"
    assert m["win_rate"] > 0.6 and m["win_rate_n"] == 50
    with open(st["artifacts"]["rl_history"]) as f:
        history = json.load(f)
    for key in ("judge/score_mean", "judge/score_std", "judge/masked_share", "judge/calls", "judge/cache_hits",
                "judge/latency_s"):
        assert all(key in h for h in history), key
    assert history[0]["judge/calls"] == 32 and m["judge_masked_share"] == 0.0
    assert os.path.getsize(os.path.join(tmp_path / "run", "01_rlaif", "judge_cache.jsonl")) > 0


@pytest.mark.slow
def test_preference_mode_raises_the_held_out_judged_score(ray_session, tmp_path):
    """Online DPO on the judge's best/worst completion per prompt, in the loop's one Train job."""
    cfg = rlaif_config(tmp_path / "run", mode="preference", algorithm="online_dpo", learning_rate=3e-3, beta=0.1)
    summary = Pipeline.from_dict(cfg).run()
    st = summary["stages"]["rlaif"]
    m = st["metrics"]
    start, end = m["eval_judge_start"], m["eval_judge_end"]
    print(f"rlaif preference mode: held-out judged score {start:.3f} -> {end:.3f}, win rate {m['win_rate']:.3f}, "
          f"dpo accuracy {m.get('final_dpo_accuracy')}")
    assert m["algorithm"] == "online_dpo" and m["reference"] == "actor"
    assert end > start + 0.15, f"held-out judged score {start:.3f} -> {end:.3f}"
    assert m["win_rate"] > 0.6
    with open(st["artifacts"]["preference_pairs"]) as f:
        pairs = [json.loads(line) for line in f]
    assert len(pairs) == m["preference_pairs"] > 20
    assert all(p["score_chosen"] > p["score_rejected"] and {"prompt", "chosen", "rejected"} <= set(p) for p in pairs)


@pytest.mark.slow
def test_judge_budget_stops_the_stage_in_one_line_and_keeps_the_judgements(ray_session, tmp_path):
    from fnsft.errors import BudgetExhausted

    cfg = rlaif_config(tmp_path / "run", num_iterations=4, max_judge_calls=40, eval_dataset_path=None,
                       resources={"max_failures": 0})
    with pytest.raises(BudgetExhausted) as e:
        Pipeline.from_dict(cfg).run()
    msg = str(e.value)
    assert msg.startswith("stage_configs.rlaif.judge.max_judge_calls: the budget of 40") and "\n" not in msg
    with open(os.path.join(tmp_path / "run", "01_rlaif", "judge_cache.jsonl")) as f:
        assert sum(1 for _ in f) == 40  # the first iteration's 32 and 8 of the second: nothing lost

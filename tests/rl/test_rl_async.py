"""Asynchronous rollouts (``rl.async_rollout``) end to end on Ray, tiny model, GRPO.

Two tests, each paying the Train job's start-up once or twice:

- ``max_staleness: 0`` reproduces the synchronous loop exactly (same losses, rewards and samples
  per iteration) while the async machinery runs: every sample records version = the learner's,
  and the sampler's log-probs equal the learner's old log-probs (the behaviour policy is right);
- ``max_staleness: 1`` with truncated IS, its worker SIGKILLed after the first checkpoint: the
  recorded versions never lag more than one, the run resumes and continues with every iteration
  exactly once, and the held-out greedy reward rises as the other learning tests require.
"""

import json
import os

import pytest

from fnsft.pipeline.driver import Pipeline
from fnsft.testing import EXAMPLES, TINY

pytestmark = pytest.mark.slow

PROMPTS = os.path.join(EXAMPLES, "arithmetic", "train.jsonl")


def _config(out, **rl):
    stage = {
        "dataset_name_or_path": PROMPTS, "algorithm": "grpo", "num_iterations": 4, "prompts_per_iteration": 8,
        "num_generations": 4, "max_new_tokens": 10, "learning_rate": 3e-3, "kl_coef": 0.0,
        "rewards": [{"type": "target_chars", "chars": "the"}], "report_to": ["none"], "save_intermediate": False,
        "logging_steps": 100, "save_steps": 0, "generation": {"num_cpus": 1}, "reward": {"num_cpus": 0.25},
    }
    stage.update(rl)
    return {"model_name_or_path": TINY, "output_dir": str(out), "stages": ["rl"],
            "resources": {"num_workers": 1}, "deepspeed": {"enabled": False}, "stage_configs": {"rl": stage}}


def _history(summary):
    rl = summary["stages"]["rl"]
    with open(rl["artifacts"]["rl_history"]) as f:
        return rl["metrics"], json.load(f)


def test_staleness_zero_reproduces_the_synchronous_loop(ray_session, tmp_path):
    _, sync = _history(Pipeline.from_dict(_config(tmp_path / "sync")).run())
    _, zero = _history(Pipeline.from_dict(_config(tmp_path / "async0", async_rollout={
        "enabled": True, "max_staleness": 0})).run())
    assert len(sync) == len(zero) == 4
    for a, b in zip(sync, zero):
        for key in ("policy_loss", "reward_mean", "reward_std", "clip_fraction", "response_length",
                    "sample_completion"):
            assert a[key] == b[key], (a["iteration"], key, a[key], b[key])
        assert "rollout/staleness_0" not in a  # the synchronous loop records nothing new
        assert b["rollout/staleness_0"] == 32 and b["rollout/staleness_max"] == 0
        # The generation actor's log-probs of its samples are the learner's for the same weights.
        assert b["rollout/logprob_diff_max"] < 1e-3 and abs(b["rollout/is_ratio_mean"] - 1) < 1e-4


def test_async_staleness_one_learns_and_resumes_after_a_kill(ray_session, tmp_path):
    from fnsft.testing import KillAfterCheckpoint

    out = tmp_path / "out"
    cfg = _config(out, num_iterations=20, save_steps=3, async_rollout={"enabled": True, "max_staleness": 1},
                  behavior_correction={"type": "tis", "cap": 2.0}, verify_weight_sync=True,
                  eval_dataset_path=os.path.join(EXAMPLES, "arithmetic", "eval.jsonl"))
    cfg["resources"]["max_failures"] = 1
    with KillAfterCheckpoint(out, "01_rl", "rl", rank=0) as killer:
        metrics, history = _history(Pipeline.from_dict(cfg).run())
    assert killer.pid, "the worker was never killed (the stage ended before its checkpoints?)"
    resumed = metrics["resumed_from_iteration"]
    assert resumed >= 3 and resumed % 3 == 0, metrics
    assert [h["iteration"] for h in history] == list(range(1, 21))  # none lost, none doubled
    for h in history:
        assert h["rollout/staleness_max"] <= 1, h["iteration"]  # from the versions the actors recorded
        assert h["rollout/staleness_0"] + h["rollout/staleness_1"] == 32
        assert h["rollout/is_ratio_max"] > 0 and 0 <= h["rollout/is_clipped_share"] <= 1
    # After the start (and after the resume) the actors ran one version ahead: every sample lagged one.
    lagged = [h["iteration"] for h in history if h["rollout/staleness_1"] == 32]
    assert set(range(2, resumed + 1)) <= set(lagged) and set(range(resumed + 2, 21)) <= set(lagged)
    assert history[0]["rollout/staleness_0"] == 32 and history[resumed]["rollout/staleness_0"] == 32
    assert max(h["rollout/logprob_diff_max"] for h in history) > 0  # stale samples: the policies differ
    assert metrics["weight_sync_mismatches"] == 0 and metrics["rollout_staleness_max"] == 1
    start, end = metrics["eval_reward_start"], metrics["eval_reward_end"]
    print(f"async grpo: held-out greedy reward {start:.3f} -> {end:.3f}, resumed at {resumed}")
    assert end > start + 0.15, f"held-out greedy reward {start:.3f} -> {end:.3f}"

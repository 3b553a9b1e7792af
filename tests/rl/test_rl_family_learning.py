"""Each GRPO-family algorithm learns on the tiny model in the real RL stage, end to end on Ray.

Same task and settings as ``test_rl_stage_learning.py`` (the share of completion characters in
{t, h, e}: a dense reward, a random policy scores ≈0.16): the run fails if the mean reward of the
last iterations is not clearly above the first ones. One Ray Train job per algorithm; between
them they cover DeepSpeed ZeRO-2 (the engine on one worker, and two workers with the batch
broadcast), plain torch, a reference actor (KL in the reward), and each algorithm's own numbers
in ``rl_history.json``. A last, short case covers LoRA (adapters synced, the adapter-free policy
as reference) under CISPO.
"""

import pytest

from fnsft.testing import tiny_rl_run

pytestmark = pytest.mark.slow

ZERO2_ENGINE = {"deepspeed": {"zero_stage": 2, "on_single_worker": True}}


def _run(tmp_path, algorithm, top=None, **rl):
    return tiny_rl_run(tmp_path / algorithm, algorithm, top, **rl)[:2]


# algorithm -> (extra stage keys, top-level keys, stats every iteration must carry, expected strategy)
CASES = {
    # A light overlong penalty (it is in every iteration's numbers; a strong one outweighs this reward and
    # the policy learns short answers first); lr as gspo's, so groups reach all-perfect rewards and are dropped.
    "dapo": ({"dynamic_sampling": True, "max_resample": 2, "overlong_buffer": 3, "overlong_penalty_factor": 0.1,
              "kl_coef": 0.0, "learning_rate": 5e-3},
             {"resources": {"num_workers": 2}},
             ("clip_fraction_low", "clip_fraction_high", "dynamic_sampling/dropped_groups",
              "dynamic_sampling/resample_rounds", "overlong_penalty_mean", "overlong_share"), "deepspeed-zero2"),
    "dr_grpo": ({}, {"deepspeed": {"enabled": False}}, ("clip_fraction_high", "kl_loss"), "torch"),
    "gspo": ({"learning_rate": 5e-3}, ZERO2_ENGINE, ("seq_ratio_mean", "seq_ratio_max", "clip_fraction"),
             "deepspeed-zero2"),
    "cispo": ({}, None, ("is_clip_share", "is_weight_mean"), "torch"),
    "reinforce_pp": ({}, None, ("clip_fraction_high", "kl"), "torch"),
    "reinforce_pp_baseline": ({}, None, ("clip_fraction_high", "kl"), "torch"),
}


# CI runs one case per distinct code path; dr_grpo (GRPO's loss, other normalisation: unit-tested
# in tests/rl) and reinforce_pp_baseline (reinforce_pp's path) run with FNSFT_LONG_TESTS=1.
LONG = {"dr_grpo", "reinforce_pp_baseline"}


@pytest.mark.parametrize("algorithm", [pytest.param(a, marks=pytest.mark.long) if a in LONG else a for a in CASES])
def test_family_algorithm_learns(ray_session, tmp_path, algorithm):
    rl, top, stats, strategy = CASES[algorithm]
    metrics, history = _run(tmp_path, algorithm, top=top, **rl)
    assert len(history) == metrics["iterations"] == 20 and metrics["algorithm"] == algorithm
    start, end = metrics["reward_start"], metrics["reward_end"]
    print(f"{algorithm}: reward {start:.3f} -> {end:.3f}")
    assert end > start + 0.15, f"{algorithm} did not learn: reward {start:.3f} -> {end:.3f}"
    assert metrics["weight_sync_mismatches"] == 0 and metrics["strategy"] == strategy
    for key in stats:
        assert all(key in h for h in history), key
    if algorithm == "dapo":  # groups of equal reward (all perfect, late on) were dropped, and the counts add up
        assert metrics["dynamic_sampling/dropped_groups"] == sum(h["dynamic_sampling/dropped_groups"] for h in history)
        assert all(h["dynamic_sampling/resample_rounds"] <= 2 for h in history)
        assert metrics["dynamic_sampling/dropped_groups"] > 0
    if algorithm == "reinforce_pp":  # KL in the reward: the reference actor scored every batch
        assert metrics["reference"] == "actor"


@pytest.mark.long  # CI: test_rl_stage_learning's LoRA test (the same sync path under GRPO's loss)
def test_cispo_with_lora_syncs_adapters(ray_session, tmp_path):
    """LoRA mechanics under the family's loss (no learning claim: see test_rl_stage_learning's LoRA test)."""
    metrics, history = _run(tmp_path, "cispo", num_iterations=4, use_peft=True, lora_r=8, lora_alpha=16,
                            lora_dropout=0.0, learning_rate=2e-2)
    assert metrics["reference"] == "adapters" and metrics["weight_sync_mismatches"] == 0
    assert all(h["weight_sync_mb"] < 0.25 and "is_clip_share" in h and "kl_loss" in h for h in history)
    assert history[-1]["kl"] > 0  # the adapters moved the policy away from the adapter-free reference

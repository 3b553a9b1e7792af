"""How the GRPO family plugs in, without Ray: knob resolution from the config, the loop's dispatch
(compute_advantages / policy_objective per algorithm) and rank 0's rollout filter (dynamic sampling)."""

import numpy as np
import pytest
import torch

from fnsft.actors.rollout import Rollout
from fnsft.errors import ConfigError
from fnsft.rl import get_algorithm
from fnsft.rl.knobs import AlgoKnobs, resolve_knobs
from fnsft.rl.loop import LossSettings, compute_advantages, policy_objective
from fnsft.stages.rl import RLConfig
from fnsft.workers.rl.rollout_filter import filter_rollout


def _cfg(algorithm="grpo", **kw):
    return RLConfig(dataset_name_or_path="x.jsonl", algorithm=algorithm, **kw)


def test_algorithm_defaults_and_old_keys():
    assert resolve_knobs(_cfg("ppo")) == AlgoKnobs(max_new_tokens=64)  # nothing changes for the old ones
    dapo = resolve_knobs(_cfg("dapo"))
    assert (dapo.epsilon, dapo.epsilon_high, dapo.loss_agg_mode, dapo.dynamic_sampling) == (0.2, 0.28, "token_mean", True)
    dr = resolve_knobs(_cfg("dr_grpo"))
    assert (dr.scale_rewards, dr.loss_agg_mode) == ("none", "seq_mean_token_sum")
    gspo = resolve_knobs(_cfg("gspo"))
    assert (gspo.importance_sampling_level, gspo.epsilon, gspo.epsilon_high) == ("sequence", 3e-4, 4e-4)
    assert resolve_knobs(_cfg("cispo")).epsilon_high == 4.0
    # clip_range is epsilon; loss_agg: sequence is seq_mean_token_mean; a user's low clip lifts the high one.
    k = resolve_knobs(_cfg("dapo", clip_range=0.3, loss_agg="sequence"))
    assert (k.epsilon, k.epsilon_high, k.loss_agg_mode) == (0.3, 0.3, "seq_mean_token_mean")
    assert resolve_knobs(_cfg("ppo", epsilon=0.1)).epsilon == 0.1
    assert resolve_knobs(_cfg("gspo", clip_range=0.01)).epsilon_high == 0.01
    assert not _cfg("dapo").kl_in_reward_resolved and _cfg("reinforce_pp").kl_in_reward_resolved


@pytest.mark.parametrize("algorithm, kw, fragment", [
    ("dapo", {"epsilon": 0.1, "clip_range": 0.3}, "rl.epsilon: 0.1 contradicts rl.clip_range: 0.3"),
    ("dapo", {"epsilon": 0.3, "epsilon_high": 0.2}, "rl.epsilon_high: 0.2 is below rl.epsilon 0.3"),
    ("dapo", {"loss_agg": "sequence", "loss_agg_mode": "token_mean"}, "contradicts rl.loss_agg: sequence"),
    ("ppo", {"epsilon_high": 0.3}, "rl.epsilon_high: applies to the GRPO family"),
    ("gspo", {"importance_sampling_level": "token"}, "gspo is defined by its sequence-level ratio"),
    ("cispo", {"importance_sampling_level": "sequence"}, "cispo weights every token"),
    ("reinforce_pp", {"scale_rewards": "group"}, "whitens its returns over the whole batch"),
    ("reinforce_pp", {"dynamic_sampling": True}, "samples no groups"),
    ("dapo", {"overlong_buffer": 64}, "must be below max_new_tokens (64)"),
    ("dapo", {"loss_agg_mode": "seq_sum"}, "expected one of token_mean, seq_mean_token_sum, seq_mean_token_mean"),
])
def test_bad_knobs_one_line(algorithm, kw, fragment):
    with pytest.raises(ConfigError, match=None) as e:
        resolve_knobs(_cfg(algorithm, **kw))
    assert fragment in str(e.value) and "\n" not in str(e.value)


def _batch(b=8, t=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, t)
    mask[1, 3:] = 0
    logp = -torch.rand(b, t, generator=g) - 0.1
    return mask, logp


@pytest.mark.parametrize("algorithm", ["dapo", "dr_grpo", "gspo", "cispo", "reinforce_pp", "reinforce_pp_baseline"])
def test_loop_dispatch_gives_a_gradient_that_raises_good_sequences(algorithm):
    """One step of each algorithm on the loop's path raises the log-prob of the best-scored
    completion of a group and lowers the worst's (the sign of the update is right)."""
    spec = get_algorithm(algorithm)
    knobs = resolve_knobs(_cfg(algorithm, max_new_tokens=5, kl_coef=0.0))
    s = LossSettings(num_generations=4, kl_in_reward=not spec.kl_in_loss, knobs=knobs, clip_range=knobs.epsilon)
    mask, old = _batch()
    scores = torch.tensor([1.0, 0.0, 0.5, 0.2, 0.3, 0.3, 0.9, 0.1])
    adv = compute_advantages(spec, s, scores, mask, old, None, None, 0.0)
    logp = old.clone().requires_grad_()
    mb = {"completion_mask": mask, "old_logprobs": old, "advantages": adv["advantages"]}
    loss, stats = policy_objective(spec, s, logp, mb, 0.0)
    loss.backward()
    step = -(logp.grad * mask).sum(dim=1)  # gradient descent's change of each sequence's log-likelihood
    assert step[0] > 0 and step[1] < 0 and step[6] > 0 and step[7] < 0
    assert "policy_loss" in stats
    assert ("is_clip_share" in stats) == (algorithm == "cispo")
    assert ("seq_ratio_mean" in stats) == (algorithm == "gspo")
    assert ("clip_fraction_high" in stats) == (algorithm != "cispo")


def test_overlong_penalty_reaches_the_advantages():
    spec = get_algorithm("dapo")
    knobs = resolve_knobs(_cfg("dapo", max_new_tokens=5, overlong_buffer=2))
    s = LossSettings(num_generations=2, kl_in_reward=False, knobs=knobs)
    mask = torch.tensor([[1.0, 1, 1, 0, 0], [1, 1, 1, 1, 1]])  # 3 tokens free, 5 tokens: penalty -1
    adv = compute_advantages(spec, s, torch.tensor([1.0, 1.0]), mask, None, None, None, 0.0)
    assert adv["advantages"][0] > 0 > adv["advantages"][1]  # equal scores, the overlong one loses
    assert adv["overlong_penalty_mean"].item() == pytest.approx(-0.5)
    assert adv["overlong_share"].item() == pytest.approx(0.5)


def _rollout(scores, width, truncated=None, tag="a"):
    n = len(scores)
    arrays = {"prompt_ids": np.full((n, 3), 7, np.int64), "prompt_mask": np.ones((n, 3), np.int64),
              "completion_ids": np.full((n, width), 5, np.int64), "completion_mask": np.ones((n, width), np.int64),
              "scores": np.asarray(scores, np.float32)}
    return Rollout(arrays=arrays, prompts=[f"{tag}{i // 2}" for i in range(n)],
                   completions=[f"{tag}c{i}" for i in range(n)], components={"r": list(scores)},
                   truncated=truncated or [False] * n, timings={"generation_s": 1.0})


def test_dynamic_sampling_drops_equal_groups_and_refills():
    knobs = AlgoKnobs(dynamic_sampling=True, max_resample=3)
    asked = []

    def more(n, r):
        asked.append(n)
        return _rollout([0, 1, 1, 1][:2 * n], 6, tag=f"m{r}-")  # one useful group, then a constant one

    out, st = filter_rollout(_rollout([1, 1, 0, 1, 0, 0], 4), knobs, 2, 0, more)
    # 3 groups, 2 constant: round 1 asks for 2 prompts (1 useful, 1 constant), round 2 for the last one.
    assert asked == [2, 1]
    assert len(out) == 6 and out.arrays["completion_ids"].shape == (6, 6)
    assert out.completions[:2] == ["ac2", "ac3"] and out.completions[2:4] == ["m1-c0", "m1-c1"]
    assert out.arrays["completion_mask"][:2, 4:].sum() == 0  # re-padded on the right
    assert not constant_rows(out) and st["dynamic_sampling/filler_groups"] == 0
    assert st["dynamic_sampling/dropped_groups"] == 2 + 1 + 0  # first rollout, round 1's 2nd group, round 2
    assert st["dynamic_sampling/resample_rounds"] == 2 and out.timings["generation_s"] == 3.0


def constant_rows(r):
    s = r.arrays["scores"].reshape(-1, 2)
    return bool((s[:, 0] == s[:, 1]).any())


def test_dynamic_sampling_out_of_budget_keeps_shape_with_masked_fillers():
    knobs = AlgoKnobs(dynamic_sampling=True, max_resample=1, mask_truncated_completions=True)
    out, st = filter_rollout(_rollout([1, 1, 0, 1], 4, truncated=[False, False, True, False]), knobs, 2, 0,
                             lambda n, r: _rollout([0, 0], 4, tag="m"))
    assert len(out) == 4 and st["dynamic_sampling/filler_groups"] == 1
    assert out.arrays["completion_mask"][2:].sum() == 0  # the filler group leaves the loss
    assert out.arrays["completion_mask"][0, 0] == 0 and out.arrays["completion_mask"][1].sum() == 4  # truncated row
    assert st["truncated_masked"] == 1

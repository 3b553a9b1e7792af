"""On-policy distillation (rl.algorithm: on_policy_distill): its advantage and loss on a hand-made
batch against the formula written out here, and its config checked before Ray with one line."""

import os

import pytest
import torch

from fnsft.errors import ConfigError
from fnsft.pipeline.plan import build_plan
from fnsft.rl import get_algorithm
from fnsft.rl.knobs import AlgoKnobs
from fnsft.rl.loop import LossSettings, compute_advantages, policy_objective
from fnsft.stages.rl_reference import reference_mode
from fnsft.testing import EXAMPLES, TINY

PROMPTS = os.path.join(EXAMPLES, "arithmetic", "train.jsonl")

# Two samples: row 0 has 3 response tokens, row 1 has 2 (then padding with a wild teacher value).
STUDENT = torch.tensor([[-1.0, -2.0, -0.5], [-3.0, -0.2, 0.0]], dtype=torch.float64)
TEACHER = torch.tensor([[-0.5, -4.0, -0.5], [-1.0, -0.7, -99.0]], dtype=torch.float64)
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]], dtype=torch.float64)


def test_advantage_is_the_teachers_logprob_minus_the_students_per_token():
    spec = get_algorithm("on_policy_distill")
    out = compute_advantages(spec, LossSettings(), torch.zeros(2), MASK, STUDENT, TEACHER, None, kl_coef=0.5)
    for i in range(2):
        for t in range(3):
            expect = (TEACHER[i, t] - STUDENT[i, t]).item() if MASK[i, t] else 0.0
            assert out["advantages"][i, t].item() == pytest.approx(expect)
    # the sequence's total is minus its sampled reverse KL; the score (and kl_coef) play no part
    assert out["sequence_rewards"].tolist() == pytest.approx([(-0.5 + 1.0) + (-4.0 + 2.0) + 0.0, (-1.0 + 3.0) + (-0.7 + 0.2)])
    with pytest.raises(ValueError, match="teacher"):
        compute_advantages(spec, LossSettings(), torch.zeros(2), MASK, STUDENT, None, None, kl_coef=0.0)


def test_loss_is_the_clipped_surrogate_with_per_token_advantages():
    """Per token max(-A_t r_t, -A_t clip(r_t, 1 - eps, 1 + eps)), averaged over the response tokens,
    with A_t = log p_teacher - log p_student (old) and r_t = p_new / p_old; the gradient matches."""
    spec = get_algorithm("on_policy_distill")
    s = LossSettings(knobs=AlgoKnobs(epsilon=0.2, epsilon_high=0.2, loss_agg_mode="token_mean"))
    adv = compute_advantages(spec, s, torch.zeros(2), MASK, STUDENT, TEACHER, None, 0.0)["advantages"]
    ratios = torch.tensor([[1.1, 1.5, 0.7], [0.9, 0.6, 3.0]], dtype=torch.float64)
    new = (STUDENT + ratios.log()).clone().requires_grad_()
    mb = {"completion_mask": MASK, "old_logprobs": STUDENT, "advantages": adv, "ref_logprobs": TEACHER}
    loss, stats = policy_objective(spec, s, new, mb, kl_coef=0.5)
    tokens = [(i, t) for i in range(2) for t in range(3) if MASK[i, t]]
    expect, grad = 0.0, torch.zeros_like(ratios)
    for i, t in tokens:
        a, r = (TEACHER[i, t] - STUDENT[i, t]).item(), ratios[i, t].item()
        clipped = min(max(r, 0.8), 1.2)
        expect += max(-a * r, -a * clipped) / len(tokens)
        if -a * r >= -a * clipped:  # the unclipped term is the max: it carries the gradient
            grad[i, t] = -a * r / len(tokens)
    assert loss.item() == pytest.approx(expect)  # no KL penalty on top: the KL is the objective
    assert "kl_loss" not in stats
    loss.backward()
    torch.testing.assert_close(new.grad, grad)


def _cfg(tmp_path, **rl):
    stage = {"dataset_name_or_path": PROMPTS, "algorithm": "on_policy_distill",
             "reference": {"model_name_or_path": TINY}}
    stage.update(rl)
    return {"model_name_or_path": TINY, "output_dir": str(tmp_path), "stages": ["rl"], "stage_configs": {"rl": stage}}


def test_plan_without_rewards_and_with_a_teacher(tmp_path):
    stage = build_plan(data=_cfg(tmp_path)).stages[0].stage
    assert stage.config.needs_reference and reference_mode(stage.config) == "actor"
    assert stage.parse_rewards() == []  # the teacher is the signal; rewards would only be measured
    stage = build_plan(data=_cfg(tmp_path, use_peft=True)).stages[0].stage
    assert reference_mode(stage.config) == "actor"  # a teacher is not the policy without its adapters


@pytest.mark.parametrize("rl, key, match", [
    ({"reference": {}}, "stage_configs.rl.reference.model_name_or_path", "needs the teacher"),
    ({"reference": {"model_name_or_path": "/no/such/teacher"}}, "stage_configs.rl.reference.model_name_or_path",
     "not found"),
    ({"reference": {"model_name_or_path": TINY, "mode": "none"}}, "stage_configs.rl.reference.mode", "auto or actor"),
    ({"kl_target": 6.0}, "stage_configs.rl.kl_target", "no KL penalty to adapt"),
    ({"scale_rewards": "group"}, "stage_configs.rl.scale_rewards", "scale_rewards applies to group"),
])
def test_bad_distillation_config_names_the_key(tmp_path, rl, key, match):
    with pytest.raises(ConfigError, match=match) as e:
        build_plan(data=_cfg(tmp_path, **rl))
    assert str(e.value).startswith(key) and "\n" not in str(e.value)


def test_teacher_with_another_tokenizer_is_one_line(tmp_path):
    from fnsft.models.spec import resolve_model_path
    from fnsft.models.tokens import same_vocabulary
    from transformers import AutoTokenizer

    tiny = AutoTokenizer.from_pretrained(resolve_model_path(TINY))
    assert same_vocabulary(tiny, resolve_model_path(TINY)) == ""
    other = tmp_path / "other"
    tiny.save_pretrained(other)
    vocab = tiny.get_vocab()
    swapped = dict(vocab)
    a, b = sorted(vocab)[:2]
    swapped[a], swapped[b] = vocab[b], vocab[a]

    class Stub:  # a tokenizer whose two tokens trade ids
        def get_vocab(self):
            return swapped

    assert "has id" in same_vocabulary(Stub(), str(other))

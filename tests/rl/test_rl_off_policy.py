"""Off-policy correction (``rl.behavior_correction``) against the formulas computed by hand, and
the async schedule's staleness bound on a simulated generation actor (no Ray, no model)."""

import math
import threading
import time

import pytest
import torch

from fnsft.rl.loop import LossSettings, policy_objective
from fnsft.rl.algorithms import get_algorithm
from fnsft.rl.off_policy import (behavior_correction, correction_weights, importance_ratio, staleness_counts,
                                 weight_advantages)

OLD = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -1.2, 0.0]])
BEHAVIOR = torch.tensor([[-1.5, -1.0, -0.5], [-0.1, -3.0, 0.0]])
MASK = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # row 1's last token is padding


def test_token_ratios_and_weights_match_the_formula():
    ratio = importance_ratio(OLD, BEHAVIOR, MASK, "token")
    expected = [[math.exp(0.5), math.exp(-1.0), 1.0], [math.exp(-0.2), math.exp(1.8), 1.0]]
    assert torch.allclose(ratio, torch.tensor(expected))
    tis = correction_weights(ratio, "tis", 2.0)
    assert torch.allclose(tis, torch.tensor([[math.exp(0.5), math.exp(-1.0), 1.0], [math.exp(-0.2), 2.0, 1.0]]))
    mis = correction_weights(ratio, "mis", 2.0)
    assert torch.allclose(mis, torch.tensor([[math.exp(0.5), math.exp(-1.0), 1.0], [math.exp(-0.2), 0.0, 1.0]]))
    assert torch.equal(correction_weights(ratio, "none", 2.0), torch.ones_like(ratio))
    with pytest.raises(ValueError, match="unknown behavior_correction type"):
        correction_weights(ratio, "pis", 2.0)


def test_sequence_ratio_is_the_product_over_response_tokens():
    ratio = importance_ratio(OLD, BEHAVIOR, MASK, "sequence")
    assert torch.allclose(ratio, torch.tensor([math.exp(0.5 - 1.0), math.exp(-0.2 + 1.8)]))
    adv = torch.tensor([1.0, -2.0])
    out, stats = behavior_correction(adv, OLD, BEHAVIOR, MASK, "mis", 2.0, "sequence")
    assert torch.allclose(out, torch.tensor([math.exp(-0.5), 0.0]))  # e^1.6 ≈ 4.95 > cap: masked
    assert stats["rollout/is_clipped_share"] == 0.5


def test_stats_and_none_leave_advantages_alone():
    adv = torch.tensor([1.0, -2.0])
    out, stats = behavior_correction(adv, OLD, BEHAVIOR, MASK, "none", 2.0)
    assert out is adv
    ratios = [math.exp(0.5), math.exp(-1.0), 1.0, math.exp(-0.2), math.exp(1.8)]  # the 5 response tokens
    assert stats["rollout/is_ratio_mean"] == pytest.approx(sum(ratios) / 5)
    assert stats["rollout/is_ratio_max"] == pytest.approx(math.exp(1.8))
    assert stats["rollout/is_clipped_share"] == pytest.approx(1 / 5)
    assert stats["rollout/logprob_diff_mean"] == pytest.approx((0.5 + 1.0 + 0 + 0.2 + 1.8) / 5)
    assert stats["rollout/logprob_diff_max"] == pytest.approx(1.8)


def test_tis_weights_each_token_of_a_sequence_advantage():
    adv = torch.tensor([1.0, -2.0])
    out, _ = behavior_correction(adv, OLD, BEHAVIOR, MASK, "tis", 2.0)
    expected = torch.tensor([[math.exp(0.5), math.exp(-1.0), 1.0], [-2 * math.exp(-0.2), -4.0, -2.0]])
    assert torch.allclose(out, expected)
    # (B, T) advantages times (B,) weights broadcast the other way
    assert torch.allclose(weight_advantages(expected, torch.tensor([2.0, 0.5]), MASK),
                          expected * torch.tensor([[2.0], [0.5]]))


def test_weighted_advantages_equal_the_weighted_clipped_loss():
    """veRL's form: the per-token clipped GRPO term times w. Scaling the advantages by w (w >= 0)
    gives the same loss value and gradient."""
    torch.manual_seed(0)
    new = (OLD + 0.3 * torch.randn(OLD.shape)).requires_grad_(True)
    adv = torch.tensor([1.0, -2.0])
    weights = correction_weights(importance_ratio(OLD, BEHAVIOR, MASK), "tis", 2.0)
    spec, s = get_algorithm("grpo"), LossSettings(clip_range=0.2, kl_in_reward=True)
    out, _ = behavior_correction(adv, OLD, BEHAVIOR, MASK, "tis", 2.0)
    loss, _ = policy_objective(spec, s, new, {"completion_mask": MASK, "old_logprobs": OLD, "advantages": out}, 0.0)
    grad = torch.autograd.grad(loss, new)[0]

    new2 = new.detach().clone().requires_grad_(True)
    r = torch.exp(new2 - OLD)
    a = adv[:, None].expand_as(MASK)
    per_token = torch.maximum(-a * r, -a * torch.clamp(r, 0.8, 1.2)) * weights
    by_hand = (per_token * MASK).sum() / MASK.sum()
    assert torch.allclose(loss, by_hand)
    assert torch.allclose(grad, torch.autograd.grad(by_hand, new2)[0])


def test_staleness_histogram():
    out = staleness_counts([3, 3, 4, 4, 4], learner_version=4, max_staleness=2)
    assert out == {"rollout/staleness_0": 3.0, "rollout/staleness_1": 2.0, "rollout/staleness_2": 0.0,
                   "rollout/staleness_mean": 0.4, "rollout/staleness_max": 1.0}
    assert staleness_counts([0], 3, 1)["rollout/staleness_3"] == 1.0  # a broken bound shows


class FakeGenerationActor:
    """Runs calls in the order they were sent, as a Ray actor with max_concurrency 1 does."""

    def __init__(self):
        self.version, self.lock = 0, threading.Lock()
        self.queue: list = []  # (kind, payload, event, box), executed in order by a worker thread
        self.cv = threading.Condition()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        while True:
            with self.cv:
                while not self.queue:
                    self.cv.wait()
                kind, payload, done, box = self.queue.pop(0)
            if kind == "generate":
                time.sleep(0.02)  # sampling takes a while: the learner goes on meanwhile
                box.append(self.version)
            else:
                self.version = payload
            done.set()

    def send(self, kind, payload=None):
        done, box = threading.Event(), []
        with self.cv:
            self.queue.append((kind, payload, done, box))
            self.cv.notify()
        return done, box


@pytest.mark.parametrize("max_staleness", [0, 1, 2])
def test_async_schedule_keeps_the_staleness_bound(max_staleness):
    from fnsft.workers.rl.async_rollouts import AsyncRollouts

    actor = FakeGenerationActor()
    drawn: list[int] = []

    def draw(it):
        drawn.append(it)
        return [{"prompt": f"p{it}"}], ("state", it)

    def collect(it, rows, sent):
        done, box = actor.send("generate")
        sent.set()
        done.wait()
        return {"iteration": it, "rows": rows, "version": box[0]}

    queue = AsyncRollouts(max_staleness, 8, draw, collect, redo=None)
    lags = []
    for it in range(8):
        rollout = queue.take(it)[0]
        assert rollout["iteration"] == it and rollout["rows"] == [{"prompt": f"p{it}"}]
        lags.append(it - rollout["version"])  # the learner holds version `it` here
        if it + 1 < 8:
            assert queue.draw_state(it + 1) == (("state", it + 1) if max_staleness else None)
        time.sleep(0.03)  # "training"
        actor.send("load_weights", it + 1)  # the push, not waited for
    queue.close()
    assert drawn == list(range(8))  # every iteration's prompts drawn once, in order
    assert max(lags) <= max_staleness
    assert lags[max_staleness:] == [max_staleness] * (8 - max_staleness)  # steady state runs s ahead


def test_generation_logprobs_are_the_learners_on_the_same_weights(tiny_model_dir):
    """The behaviour log-probs the actor returns with its samples equal the learner's scoring of
    the same tokens with the same weights (temperature and top-k applied on both sides); asking
    for them does not change what is sampled."""
    import json
    import os

    from fnsft.actors.generation import GenerationActor
    from fnsft.models.forward import completion_forward
    from fnsft.models.handle import ModelHandle
    from fnsft.models.tokens import rollout_arrays, to_torch
    from fnsft.testing import EXAMPLES

    with open(os.path.join(EXAMPLES, "arithmetic", "train.jsonl")) as f:
        prompts = [json.loads(line)["prompt"] for line in f][:3]
    grouped = [p for p in prompts for _ in range(3)]  # the shared-prefill path
    actor = GenerationActor(ModelHandle(source=tiny_model_dir))
    sampling = {"max_new_tokens": 8, "temperature": 0.7, "top_k": 20}
    plain = actor.generate(grouped, sampling, seed=5)
    out = actor.generate(grouped, {**sampling, "return_logprobs": True}, seed=5)
    assert out["completion_ids"] == plain["completion_ids"] and "logprobs" not in plain
    assert out["version"] == 0
    assert [len(x) for x in out["logprobs"]] == [len(c) for c in out["completion_ids"]]
    arrays = rollout_arrays(out["prompt_ids"], out["completion_ids"], actor.tokenizer.pad_token_id)
    batch = to_torch(arrays)
    with torch.no_grad():
        learner = completion_forward(actor.model, batch, 0.7, top_k=20)["logprobs"]
    for row, lps in enumerate(out["logprobs"]):
        assert torch.allclose(torch.tensor(lps), learner[row, :len(lps)].float(), atol=1e-4), row

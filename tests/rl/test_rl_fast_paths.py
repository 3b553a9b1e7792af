"""The RL loop's shortcuts give the same numbers as the plain computation.

- shared prefill: each distinct prompt of a group is prefilled once and its KV cache copied
  to every generation of it; greedy completions must equal generating every row separately;
- ``logits_to_keep``: log-probs from the last C + 1 positions' logits equal those sliced out
  of the full logits;
- the separate old-log-prob pass is skipped exactly when one on-policy step uses the batch.
"""

import json
import os
from types import SimpleNamespace

import pytest
import torch

from fnsft.actors.generation import GenerationActor
from fnsft.models.forward import accepts_logits_to_keep, completion_forward
from fnsft.models.tokens import rollout_arrays, to_torch
from fnsft.models.handle import ModelHandle
from fnsft.testing import EXAMPLES


def _prompts(n):
    with open(os.path.join(EXAMPLES, "arithmetic", "train.jsonl")) as f:
        return [json.loads(line)["prompt"] for line in f][:n]


def test_shared_prefill_matches_separate_generation(tiny_model_dir):
    actor = GenerationActor(ModelHandle(source=tiny_model_dir))
    # Groups of 3, plus a lone prompt and prompts of different lengths (left padding differs).
    base = _prompts(3) + ["Hi"]
    grouped = [p for p in base[:3] for _ in range(3)] + [base[3]]
    greedy = {"max_new_tokens": 8, "temperature": 0.0}
    shared = actor.generate(grouped, greedy)
    calls = []
    real_prefill = actor._prefill

    def counting_prefill(ids, mask, index):
        calls.append((ids.shape[0], len(index)))
        return real_prefill(ids, mask, index)

    actor._prefill = counting_prefill
    actor.generate(grouped, greedy)
    assert calls == [(4, 10)]  # 4 distinct prompts prefilled once, expanded to 10 rows
    # Each row alone (no two neighbours equal: nothing shared).
    alone = [actor.generate([p], greedy)["completion_ids"][0] for p in grouped]
    assert shared["completion_ids"] == alone
    assert shared["prompt_ids"][0] == shared["prompt_ids"][2] != shared["prompt_ids"][3]
    # Sampling works through the shared cache too, and a seed makes it repeatable.
    sampled = {"max_new_tokens": 8, "temperature": 1.0}
    a, b = actor.generate(grouped, sampled, seed=3), actor.generate(grouped, sampled, seed=3)
    assert a["completion_ids"] == b["completion_ids"]
    assert len({tuple(c) for c in a["completion_ids"][:3]}) > 1  # the copies of a prompt differ


def test_logits_to_keep_matches_full_logits(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from fnsft.models.loading import load_tokenizer

    tok = load_tokenizer(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    prompts = [tok(p)["input_ids"] for p in _prompts(4)]
    completions = [[5, 6, 7], [8], [9, 10, 11, 12], [13, 14]]
    batch = to_torch(rollout_arrays(prompts, completions, tok.pad_token_id))
    for m in (model, get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))):
        assert accepts_logits_to_keep(m)
        kept = completion_forward(m, batch, 0.7, need_logits=True)
        m._fnsft_logits_to_keep = False  # force the full-logits path
        full = completion_forward(m, batch, 0.7, need_logits=True)
        m._fnsft_logits_to_keep = True
        assert kept["logits"].shape == full["logits"].shape == (4, 4, model.config.vocab_size)
        torch.testing.assert_close(kept["logprobs"], full["logprobs"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("algorithm, kw, needed", [
    ("grpo", {}, False),                                  # one epoch, one minibatch, KL in the loss
    ("grpo", {"epochs": 2}, True),                        # the 2nd epoch's ratio needs the old log-probs
    ("grpo", {"minibatches": 2}, True),                   # so does the 2nd minibatch's
    ("rloo", {"epochs": 4, "minibatches": 4}, False),     # rloo: one pass whatever ppo_epochs says
    ("rloo", {"kl_in_reward": True, "ref": "actor", "kl": 0.1}, True),   # advantages need KL first
    ("rloo", {"kl_in_reward": True, "ref": "actor", "kl": 0.0}, False),  # ... unless its coefficient is 0
    ("ppo", {}, True),                                    # critic: old values
    ("a2c", {}, True),
    ("trpo", {}, True),
])
def test_old_pass_skipped_only_for_one_on_policy_step(algorithm, kw, needed):
    from fnsft.workers.rl.worker import RLTrainer
    from fnsft.rl import get_algorithm

    trainer = SimpleNamespace(
        c=SimpleNamespace(ppo_epochs=kw.get("epochs", 1), num_mini_batches=kw.get("minibatches", 1)),
        spec=get_algorithm(algorithm), settings=SimpleNamespace(kl_in_reward=kw.get("kl_in_reward", False)),
        ref_mode=kw.get("ref"), kl_ctl=SimpleNamespace(value=kw.get("kl", 0.0)))
    trainer.passes = lambda: RLTrainer.passes(trainer)
    assert RLTrainer._needs_old_pass(trainer) is needed

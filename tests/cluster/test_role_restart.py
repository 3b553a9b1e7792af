"""A generation actor that Ray restarts (its process killed, as on a lost node) never samples from
stale weights: it refuses until the RL loop's ``rollout_with_recovery`` re-sends the policy's
current weights, and the redone rollout equals greedy decoding with the trainer's model.

Real Ray, one local node (the multi-node version is tests/cluster/test_rl_node_loss.py).
"""

from __future__ import annotations

import pytest
import ray
import torch

from fnsft.actors.generation import GenerationActor
from fnsft.actors.group import ActorGroup, RoleResources
from fnsft.actors.roles import Roles
from fnsft.actors.serving import StaleWeightsError, WeightPusher
from fnsft.models.handle import ModelHandle
from fnsft.testing import version_after_restart
from fnsft.workers.rl.recovery import rollout_with_recovery

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

GREEDY = {"temperature": 0, "max_new_tokens": 8}


def _greedy(model, tokenizer, prompts):
    from fnsft.models.tokens import cut_at_eos, encode_prompts, eos_token_ids, pad_sequences

    ids, mask = pad_sequences(encode_prompts(tokenizer, prompts), tokenizer.pad_token_id, "left")
    with torch.no_grad():
        out = model.generate(input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask), do_sample=False,
                             max_new_tokens=8, pad_token_id=tokenizer.pad_token_id)
    eos = eos_token_ids(model, tokenizer)
    return [cut_at_eos(r, eos, tokenizer.pad_token_id) for r in out[:, ids.shape[1]:].tolist()]


def test_restarted_generation_actor_gets_current_weights_before_it_samples(ray_session, tiny_model_dir):
    handle = ModelHandle(source=tiny_model_dir)
    group = ActorGroup(GenerationActor, RoleResources(num_replicas=1, num_cpus=0.5), args=(handle,),
                       kwargs={"engine": "hf", "follows_policy": True}, name="gen-restart")
    try:
        group.wait_ready()
        trainer = handle.load().eval()
        tok = handle.load_tokenizer()
        prompts = ["What is 2 + 3?", "Say hello"]
        with torch.no_grad():
            for p in trainer.parameters():  # stand-in for an update: the pushed weights differ from the handle's
                p.add_(torch.randn_like(p) * 0.05)
        pusher = WeightPusher(group, lora_only=False, verify=True)
        assert pusher.push(trainer, 1)["weight_sync_mismatches"] == 0
        expected = _greedy(trainer, tok, prompts)
        first = group.split(prompts, lambda a, chunk: a.generate.remote(chunk, GREEDY))["completion_ids"]
        assert first == expected

        ray.kill(group.actors[0], no_restart=False)  # the process dies; Ray restarts the actor
        group.wait_ready(120)
        assert version_after_restart(group.actors[0]) == {"replica": 0, "version": 0, "restarted": True}
        with pytest.raises(StaleWeightsError):  # it holds the handle's weights: it must not sample
            ray.get(group.actors[0].generate.remote(prompts, GREEDY))

        calls = []

        def collect():
            calls.append(1)
            return group.split(prompts, lambda a, chunk: a.generate.remote(chunk, GREEDY))["completion_ids"]

        out, stats = rollout_with_recovery(collect, Roles(generation=group), pusher, "rl", timeout_s=120)
        assert out == expected and len(calls) == 2
        assert stats == {"role_recoveries": 1.0, "weight_resyncs": 1.0, "weight_sync_mismatches": 0.0}
        assert ray.get(group.actors[0].weights_version.remote()) == {"replica": 0, "version": 1, "restarted": False}
    finally:
        group.kill()

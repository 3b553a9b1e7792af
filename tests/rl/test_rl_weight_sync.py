"""After a sync, the generation actor holds exactly the trainer's weights (full, and LoRA-only)."""

import pytest
import ray
import torch

from fnsft.actors.generation import GenerationActor
from fnsft.actors.serving import push_policy_weights
from fnsft.actors.group import ActorGroup, RoleResources
from fnsft.models.weights import policy_weights, weights_checksum
from fnsft.models.handle import ModelHandle
from fnsft.models.weights import numpy_to_state_dict

pytestmark = pytest.mark.slow


def _perturb(model, seed: int) -> None:
    """Stand-in for an optimizer step: change every trainable tensor."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)


def _greedy(model, tokenizer, prompts):
    from fnsft.models.tokens import cut_at_eos, encode_prompts, eos_token_ids, pad_sequences

    ids, mask = pad_sequences(encode_prompts(tokenizer, prompts), tokenizer.pad_token_id, "left")
    with torch.no_grad():
        out = model.generate(input_ids=torch.as_tensor(ids), attention_mask=torch.as_tensor(mask), do_sample=False,
                             max_new_tokens=8, pad_token_id=tokenizer.pad_token_id)
    eos = eos_token_ids(model, tokenizer)
    return [cut_at_eos(r, eos, tokenizer.pad_token_id) for r in out[:, ids.shape[1]:].tolist()]


def _assert_same(actor, local_state):
    remote = numpy_to_state_dict(ray.get(actor.get_weights.remote()))
    assert set(remote) == set(local_state)
    for name, t in local_state.items():
        assert torch.equal(remote[name], t.detach()), name


def test_full_weight_sync(ray_session, tiny_model_dir):
    handle = ModelHandle(source=tiny_model_dir)
    group = ActorGroup(GenerationActor, RoleResources(num_replicas=2, num_cpus=0.5), args=(handle,),
                       kwargs={"engine": "hf"}, name="gen")
    try:
        group.wait_ready()
        trainer_model = handle.load()
        _perturb(trainer_model, 0)
        local = policy_weights(trainer_model, lora_only=False)
        before = group.all(lambda a: a.weights_checksum.remote())
        assert all(c != weights_checksum(local) for c in before)  # really changed

        out = push_policy_weights(group, trainer_model, lora_only=False, version=1, verify=True)
        assert out["weight_sync_mismatches"] == 0 and out["weight_sync_s"] > 0
        assert out["weight_sync_mb"] == pytest.approx(sum(t.numel() * 4 for t in local.values()) / 2**20)
        for actor in group.actors:
            _assert_same(actor, local)
        # And it generates what the trainer's model would (greedy).
        tok = handle.load_tokenizer()
        prompts = ["What is 2 + 3?", "Say hello"]
        gen = ray.get(group.actors[1].generate.remote(prompts, {"temperature": 0, "max_new_tokens": 8}))
        assert gen["completion_ids"] == _greedy(trainer_model.eval(), tok, prompts)
    finally:
        group.kill()


def test_lora_sync_sends_only_adapters(ray_session, tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    handle = ModelHandle(source=tiny_model_dir)
    group = ActorGroup(GenerationActor, RoleResources(num_replicas=1, num_cpus=0.5), args=(handle,),
                       kwargs={"engine": "hf", "lora": lora}, name="gen-lora")
    try:
        group.wait_ready()
        trainer_model = get_peft_model(handle.load(), lora)
        _perturb(trainer_model, 1)  # lora_B starts at 0: make the adapters matter
        adapters = policy_weights(trainer_model, lora_only=True)
        assert adapters and all("lora_" in n for n in adapters)
        out = push_policy_weights(group, trainer_model, lora_only=True, version=3, verify=True)
        assert out["weight_sync_mismatches"] == 0
        full_mb = sum(t.numel() * 4 for t in handle.load().state_dict().values()) / 2**20
        assert out["weight_sync_mb"] < full_mb / 2  # adapters only
        _assert_same(group.actors[0], adapters)
        tok = handle.load_tokenizer()
        prompts = ["What is 4 + 4?"]
        gen = ray.get(group.actors[0].generate.remote(prompts, {"temperature": 0, "max_new_tokens": 8}))
        assert gen["completion_ids"] == _greedy(trainer_model.eval(), tok, prompts)
    finally:
        group.kill()


def test_pipelined_pushes_keep_actors_in_sync(ray_session, tiny_model_dir):
    """WeightPusher does not wait for acks: the next generate (same caller) still sees the pushed
    weights, every push in turn, and settle() leaves every actor holding the last one."""
    from fnsft.actors.serving import WeightPusher

    handle = ModelHandle(source=tiny_model_dir)
    group = ActorGroup(GenerationActor, RoleResources(num_replicas=2, num_cpus=0.5), args=(handle,),
                       kwargs={"engine": "hf"}, name="gen-pipelined")
    try:
        group.wait_ready()
        trainer_model = handle.load().eval()
        tok = handle.load_tokenizer()
        prompts = ["What is 2 + 3?", "Say hello"]
        pusher = WeightPusher(group, lora_only=False)
        outputs = []
        for version in (1, 2, 3):
            _perturb(trainer_model, version)
            stats = pusher.push(trainer_model, version)
            assert pusher.pending and "weight_sync_mismatches" not in stats  # not waited for
            gen = group.split(prompts, lambda a, chunk: a.generate.remote(chunk, {"temperature": 0, "max_new_tokens": 8}))
            assert gen["completion_ids"] == _greedy(trainer_model, tok, prompts), version
            outputs.append(gen["completion_ids"])
        assert outputs[0] != outputs[-1]  # the pushes changed what is generated
        acks = pusher.settle()
        assert [a["version"] for a in acks] == [3, 3] and not pusher.pending
        local = policy_weights(trainer_model, lora_only=False)
        for actor in group.actors:
            _assert_same(actor, local)
    finally:
        group.kill()

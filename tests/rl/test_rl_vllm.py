"""vLLM as the RL generation engine, on vLLM's CPU build in its own virtualenv (real Ray, real vLLM).

The generation actors run under the venv's interpreter (Ray ``runtime_env`` ``py_executable``),
take weight pushes through ``collective_rpc`` + the worker's ``reload_weights``, and after every
verified push the engine is checked against the pushed weights (checksum of what it keeps
readable, and its log-probs of a probe: :func:`fnsft.actors.vllm_engine.matches`).

The model is ``builtin:tiny-llama-hd32`` (tiny-llama with heads of 32: vLLM's CPU attention has
no kernel for head_dim 16). Skipped, with the reason, where the venv is absent; a failure under CI.
"""

from __future__ import annotations

import json
import os

import pytest

from fnsft.testing import EXAMPLES, tiny_rl_run, version_after_restart

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

TINY_HD32 = "builtin:tiny-llama-hd32"


def _gpus() -> float:
    """A share of a GPU for each vLLM actor where one exists (scripts/gpu_check.sh runs this file)."""
    import torch

    return 0.3 if torch.cuda.is_available() else 0.0


@pytest.fixture(scope="module")
def vllm_choice():
    """The engine choice for the vLLM venv (skips where it is absent or unusable)."""
    from fnsft.actors.vllm_runtime import choose_engine
    from fnsft.errors import ConfigError
    from fnsft.models.builtin import materialize_builtin

    try:
        return choose_engine("vllm", materialize_builtin(TINY_HD32), use_gpu=_gpus() > 0)
    except ConfigError as e:
        if os.environ.get("CI"):
            pytest.fail(str(e))
        pytest.skip(str(e))


@pytest.mark.parametrize("algorithm", ["grpo", "ppo"])
def test_rl_on_vllm_learns_and_the_engine_holds_every_push(ray_session, vllm_choice, tmp_path, algorithm):
    """GRPO and PPO (value model, GAE over the vLLM-sampled tokens) with ``engine: vllm`` learn the
    dense rule reward as the HF engine does (tests/rl/test_rl_stage_learning.py), every push
    reaches the engine, and the behaviour log-probs vLLM returns agree with the learner's old
    log-probs (same weights, fp32)."""
    metrics, history, _ = tiny_rl_run(
        tmp_path / algorithm, algorithm, top={"model_name_or_path": TINY_HD32, "deepspeed": {"enabled": False}},
        eval_dataset_path=os.path.join(EXAMPLES, "arithmetic", "eval.jsonl"),
        generation={"num_cpus": 1, "num_gpus": _gpus(), "engine": "vllm"})
    start, end = metrics["reward_start"], metrics["reward_end"]
    print(f"{algorithm} on vLLM: reward {start:.3f} -> {end:.3f}; greedy held-out "
          f"{metrics['eval_reward_start']:.3f} -> {metrics['eval_reward_end']:.3f}")
    assert metrics["generation_engine"] == "vllm"
    assert end > start + 0.15, f"did not learn: reward {start:.3f} -> {end:.3f}"
    # Greedy completions (vLLM, temperature 0) of held-out prompts improved: the policy itself did.
    assert metrics["eval_reward_end"] > metrics["eval_reward_start"] + 0.15
    assert metrics["weight_sync_mismatches"] == 0  # every push: engine == pushed weights
    if algorithm == "ppo":
        assert all("value_loss" in h and "clip_fraction" in h for h in history)
    diffs = [h["rollout/logprob_diff_max"] for h in history]
    print(f"behaviour vs learner log-prob gap: max {max(diffs):.2e}, "
          f"mean {sum(h['rollout/logprob_diff_mean'] for h in history) / len(history):.2e}")
    # Both sides hold the same fp32 weights: the sampler's log-probs are the learner's to rounding
    # (a missed push or raw instead of temperature-processed log-probs would be off by > 0.1).
    assert len(diffs) == len(history) and max(diffs) < 1e-2


def test_lora_push_changes_the_engine_and_a_killed_actor_comes_back_with_it(ray_session, vllm_choice):
    """Adapters pushed to a vLLM generation actor change what it generates (merged into full
    weights for the engine); after Ray restarts the killed actor it refuses to sample until the
    RL loop re-sends the adapters, then generates exactly what it did before the kill."""
    import ray
    import torch
    from peft import get_peft_model

    from fnsft.actors.generation import GenerationActor
    from fnsft.actors.group import ActorGroup, RoleResources
    from fnsft.actors.roles import Roles
    from fnsft.actors.serving import StaleWeightsError, WeightPusher
    from fnsft.models.builtin import materialize_builtin
    from fnsft.models.handle import ModelHandle
    from fnsft.models.loading import lora_config
    from fnsft.stages.rl import RLConfig
    from fnsft.workers.rl.recovery import rollout_with_recovery

    lora = lora_config(RLConfig(dataset_name_or_path="unused", use_peft=True, lora_r=8, lora_alpha=16, lora_dropout=0.0))
    handle = ModelHandle(source=materialize_builtin(TINY_HD32))
    group = ActorGroup(GenerationActor, RoleResources(num_replicas=1, num_cpus=1, num_gpus=_gpus()), args=(handle,),
                       kwargs={"engine": "vllm", "follows_policy": True, "lora": lora},
                       runtime_env=vllm_choice.runtime_env(1), name="gen-vllm")
    prompts, greedy = ["What is 2 + 3?", "Say hello"], {"temperature": 0, "max_new_tokens": 8}

    def collect():
        return ray.get(group.actors[0].generate.remote(prompts, greedy))["completion_ids"]

    try:
        group.wait_ready()
        before = collect()
        trainer = get_peft_model(handle.load(), lora)
        torch.manual_seed(0)
        with torch.no_grad():
            for name, p in trainer.named_parameters():
                if "lora_" in name:  # a trained adapter: B no longer zero
                    p.copy_(torch.randn_like(p) * 0.5)
        pusher = WeightPusher(group, lora_only=True, verify=True)
        stats = pusher.push(trainer, 1)
        assert stats["weight_sync_mismatches"] == 0 and stats["weight_sync_mb"] < 0.1  # adapters only
        after = collect()
        assert after != before, "the LoRA push did not change the engine's greedy completions"

        ray.kill(group.actors[0], no_restart=False)  # the process (and its in-process engine) dies
        group.wait_ready(300)
        assert version_after_restart(group.actors[0], timeout_s=300) == {"replica": 0, "version": 0, "restarted": True}
        with pytest.raises(StaleWeightsError):  # holds the handle's weights: must not sample
            collect()
        out, rec = rollout_with_recovery(collect, Roles(generation=group), pusher, "rl", timeout_s=300)
        assert out == after
        assert rec == {"role_recoveries": 1.0, "weight_resyncs": 1.0, "weight_sync_mismatches": 0.0}
    finally:
        group.kill()

"""The episodes of one RL iteration: multi-turn rollouts against the environment actors.

:func:`collect_episodes` takes the place of :func:`fnsft.actors.rollout.collect_rollout` when
``rl.environment`` is set (:func:`rollout_collector` picks) and returns the same
:class:`~fnsft.actors.rollout.Rollout`. One event loop on the trainer's rank 0 drives every
episode at once:

- every idle generation replica gets the episodes waiting for a reply, as one batch
  (``generate_ids`` on the transcript's tokens);
- each reply goes to its episode's environment actor (``step``), without waiting;
- an answered step queues the episode for its next reply (its observation appended as the
  next user / ``tool`` turn) or ends it (``terminated``/``truncated``/``max_turns``).

So an episode waiting on its environment never holds up the others: they keep generating.
A reset or step that raises, or runs past ``step_timeout_s``, ends its episode with reward 0
and is counted (``env/step_errors``, ``env/step_timeouts``). The episode's reward is the sum of
its step rewards plus the ``rewards:`` terms on the final transcript (its last reply is the
completion; reward functions also get the ``transcript`` column, the messages).
"""

from __future__ import annotations

import functools
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from fnsft.actors.rollout import (ROLE_TIMEOUT_S, Rollout, bounded_get, collect_rollout, merge_scores,
                                  role_timeout, submit_scores)
from fnsft.envs.transcript import ChatFormat, Transcript, as_messages


@dataclass
class Episode:
    """One episode's state in the loop (``failure``: ``error``/``timeout`` when it failed)."""

    key: str
    row: dict
    actor: Any
    transcript: Optional[Transcript] = None
    reward: float = 0.0
    turns: int = 0
    truncated: bool = False
    failure: Optional[str] = None
    info: dict = field(default_factory=dict)


def rollout_collector(roles, tokenizer, transcripts_path: Optional[str] = None):
    """What collects a rollout for ``roles``: :func:`collect_episodes` (bound to ``tokenizer``,
    writing ``transcripts_path`` when given) with environment actors, else ``collect_rollout``."""
    if getattr(roles, "environment", None) is None:
        return collect_rollout
    return functools.partial(collect_episodes, tokenizer=tokenizer, transcripts_path=transcripts_path)


def transcripts_path(output_dir: str, iteration: int, num_iterations: int) -> Optional[str]:
    """Where the first and the last iteration's sampled episodes go (None for the others)."""
    if iteration not in (0, num_iterations - 1):
        return None
    return os.path.join(output_dir, "transcripts", f"iteration-{iteration + 1:04d}.json")


def collect_episodes(roles, rows: list[dict], *, num_generations: int, sampling: dict, pad_id: int, tokenizer,
                     seed: Optional[int] = None, reference_temperature: float = 1.0,
                     use_reference_actor: bool = True, score_chunks: int = 1,
                     timeout_s: float = ROLE_TIMEOUT_S, transcripts_path: Optional[str] = None) -> Rollout:
    """Run ``num_generations`` episodes per row to the end, score them, and lay them out as a
    batch (``completion_mask`` on the model's tokens, ``completion_attention`` on all)."""
    from fnsft.models.tokens import eos_token_ids

    spec = roles.environment.spec
    fmt = ChatFormat(tokenizer, spec.schemas)
    eos = eos_token_ids(None, tokenizer)
    t0 = time.perf_counter()
    episodes, stats = _run_episodes(roles, rows, num_generations, sampling, seed, fmt, eos, timeout_s)
    timings = {"generation_s": time.perf_counter() - t0}
    rollout = _score(roles, episodes, pad_id, timings, reference_temperature, use_reference_actor, timeout_s)
    rollout.metrics.update(stats)
    if transcripts_path and spec.transcripts:
        save_transcripts(transcripts_path, episodes[:spec.transcripts], rollout.arrays["scores"])
    return rollout


def _run_episodes(roles, rows, num_generations, sampling, seed, fmt: ChatFormat, eos: set[int],
                  timeout_s: float) -> tuple[list[Episode], dict[str, float]]:
    """The event loop (module docstring); every episode ends here, failed or not."""
    import ray

    spec = roles.environment.spec
    env_actors, gen_actors = roles.environment.group.actors, roles.generation.actors
    tag = uuid.uuid4().hex[:8]
    episodes = [Episode(f"{tag}-{i}", row, env_actors[i % len(env_actors)])
                for i, row in enumerate(r for r in rows for _ in range(num_generations))]
    counts = {"step_errors": 0, "step_timeouts": 0}
    pending: dict[Any, tuple[str, Any, Optional[float]]] = {}  # ref -> (kind, episode or batch, deadline)

    def end(ep: Episode, failure: Optional[str] = None) -> None:
        if failure:
            ep.failure, ep.reward = failure, 0.0
            counts["step_timeouts" if failure == "timeout" else "step_errors"] += 1
        if ep.transcript is None:  # reset failed: the row's prompt, no reply
            ep.transcript = fmt.first_prompt(ep.row.get("prompt", ""))
        ep.actor.close.remote(ep.key)

    for i, ep in enumerate(episodes):
        ref = ep.actor.reset.remote(ep.key, None if seed is None else seed + i, ep.row)
        pending[ref] = ("reset", i, time.monotonic() + spec.step_timeout_s)
    ready: list[int] = []
    idle = list(range(len(gen_actors)))
    calls = 0
    deadline = time.monotonic() + timeout_s  # rl.role_timeout_s bounds the whole rollout
    while pending or ready:
        while ready and idle:  # the waiting episodes, shared over the idle replicas
            take = math.ceil(len(ready) / len(idle))
            batch, ready = ready[:take], ready[take:]
            r = idle.pop(0)
            ref = gen_actors[r].generate_ids.remote([episodes[i].transcript.context() for i in batch], sampling,
                                                    None if seed is None else seed + 7919 * (calls + 1))
            calls += 1
            pending[ref] = ("generate", (r, batch), None)
        now = time.monotonic()
        wait = min([d for _, _, d in pending.values() if d is not None] + [deadline]) - now
        done, _ = ray.wait(list(pending), num_returns=1, timeout=max(0.0, wait))
        now = time.monotonic()
        if not done:
            if now >= deadline:
                raise role_timeout("generation", f"to finish {len(episodes)} episodes", timeout_s)
            for ref, (kind, i, d) in list(pending.items()):
                if d is not None and now >= d:  # a hung reset/step: its thread stays, the episode ends
                    del pending[ref]
                    end(episodes[i], "timeout")
            continue
        ref = done[0]
        kind, what, _ = pending.pop(ref)
        out = ray.get(ref)  # a generation error (a restarted replica) propagates: the caller recovers
        if kind == "generate":
            r, batch = what
            idle.append(r)
            for j, i in enumerate(batch):
                ep = episodes[i]
                ep.transcript.add_reply(out["completion_ids"][j], out["texts"][j])
                ep.turns += 1
                ep.truncated = out["truncated"][j]
                pending[ep.actor.step.remote(ep.key, out["texts"][j])] = ("step", i, now + spec.step_timeout_s)
            continue
        ep = episodes[what]
        if "error" in out:
            ep.info["error"] = out["error"]
            end(ep, "error")
        elif kind == "reset":
            ep.transcript = fmt.first_prompt(out["observation"])
            ready.append(what)
        else:
            ep.reward += out["reward"]
            for k, v in out["info"].items():
                if k in ("tool_calls", "tool_errors"):
                    ep.info[k] = ep.info.get(k, 0) + v
            observation = out["observation"]
            if out["terminated"] or out["truncated"] or observation is None or ep.turns >= spec.max_turns:
                end(ep)
            else:
                messages = as_messages(observation)
                ep.transcript.add_turns(fmt.bridge(messages, ep.transcript.replies[-1], eos), messages)
                ready.append(what)
    n = len(episodes)
    stats = {"env/step_errors": float(counts["step_errors"]), "env/step_timeouts": float(counts["step_timeouts"]),
             "env/failed_share": sum(ep.failure is not None for ep in episodes) / n,
             "env/turns_mean": sum(ep.turns for ep in episodes) / n,
             "env/reward_mean": sum(ep.reward for ep in episodes) / n,
             "env/episode_tokens": sum(len(ep.transcript.ids) for ep in episodes) / n}
    if spec.factory.tools:
        stats["tool/calls"] = float(sum(ep.info.get("tool_calls", 0) for ep in episodes))
        stats["tool/errors"] = float(sum(ep.info.get("tool_errors", 0) for ep in episodes))
    return episodes, stats


def _score(roles, episodes: list[Episode], pad_id: int, timings: dict, reference_temperature: float,
           use_reference_actor: bool, timeout_s: float) -> Rollout:
    """The batch: arrays, ``rewards:`` terms on the final replies plus the environment's reward
    (0 for a failed episode), reference log-probs."""
    from fnsft.models.tokens import pad_sequences, prompt_text, rollout_arrays

    arrays = rollout_arrays([ep.transcript.prompt_ids for ep in episodes], [ep.transcript.ids for ep in episodes],
                            pad_id)
    width = arrays["completion_ids"].shape[1]
    arrays["completion_mask"] = pad_sequences([ep.transcript.mask for ep in episodes], 0, "right", width)[0]
    arrays["completion_attention"] = pad_sequences([[1] * len(ep.transcript.ids) for ep in episodes], 0, "right",
                                                   width)[0]
    prompts = [prompt_text([m for m in ep.transcript.messages if m["role"] == "user"][:1]) for ep in episodes]
    finals = [ep.transcript.messages[-1]["content"] if ep.transcript.replies else "" for ep in episodes]
    scores = np.asarray([ep.reward for ep in episodes], np.float32)
    components: dict[str, Any] = {"environment": [float(x) for x in scores]}
    metrics: dict[str, float] = {}
    masked: list[bool] = []
    t0 = time.perf_counter()
    ref_refs = None
    if use_reference_actor and roles.reference is not None:
        from fnsft.actors.rollout import chunk_bounds

        ref_refs = [actor.logprobs.remote({k: v[a:b] for k, v in arrays.items()}, reference_temperature)
                    for actor, (a, b) in zip(roles.reference.actors,
                                             chunk_bounds(len(episodes), len(roles.reference.actors)))]
    if roles.reward is not None and roles.reward.actors:
        keys = sorted({k for ep in episodes for k in ep.row if k != "prompt"})
        columns = {k: [ep.row.get(k) for ep in episodes] for k in keys}
        columns["transcript"] = [ep.transcript.messages for ep in episodes]
        refs = submit_scores(roles.reward, prompts, finals, columns,
                             [ep.transcript.replies[-1] if ep.transcript.replies else [] for ep in episodes])
        out = merge_scores(bounded_get(refs, "reward", f"to score {len(episodes)} episodes", timeout_s))
        scores = scores + np.asarray(out["rewards"], np.float32)
        components.update(out["components"])
        metrics, masked = dict(out["metrics"]), list(out["masked"])
        if any(masked):
            arrays["completion_mask"][np.asarray(masked, bool)] = 0
        timings["reward_s"] = time.perf_counter() - t0
    failed = np.asarray([ep.failure is not None for ep in episodes], bool)
    scores[failed] = 0.0  # a failed episode is worth 0, whatever its transcript would score
    from fnsft.rl.reward_terms import check_some_scored

    # every episode failed or unscored (an environment outage): stop, as a one-turn batch would
    check_some_scored([f or (bool(masked[i]) if masked else False) for i, f in enumerate(failed)],
                      {**metrics, "episode_errors": float(failed.sum())}, f"these {len(episodes)} episodes")
    if ref_refs is not None:
        parts = bounded_get(ref_refs, "reference", "for reference log-probs", timeout_s)
        arrays["ref_logprobs"] = np.concatenate(parts, axis=0)
    timings["scoring_s"] = time.perf_counter() - t0
    arrays["scores"] = scores
    return Rollout(arrays=arrays, prompts=prompts, completions=finals, components=components,
                   truncated=[ep.truncated for ep in episodes], timings=timings, metrics=metrics, masked=masked)


def save_transcripts(path: str, episodes: list[Episode], scores) -> None:
    """The episodes' messages, rewards and turns as JSON (the run report shows them)."""
    from fnsft.utils.atomic import write_json_atomic

    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_json_atomic(path, [{"messages": ep.transcript.messages, "reward": float(score),
                              "environment_reward": ep.reward, "turns": ep.turns, "failure": ep.failure,
                              **({"error": ep.info["error"]} if "error" in ep.info else {})}
                             for ep, score in zip(episodes, scores)])

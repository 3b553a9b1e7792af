"""The reporting half of the RL trainer (rank 0): evaluation, metrics, progress, hand-back.

:class:`RLReport` is a mixin of :class:`fnsft.workers.rl.worker.RLTrainer`; it reads the
trainer's ``history`` (one metrics dict per iteration), ``evals`` (held-out evaluations),
``timings``, ``job``/``c``/``spec``/``roles``/``tokenizer``/``policy``/``strategy``/``ref_mode``.
It writes ``rl_history.json``, ``rl_eval.json`` and ``reward_curve.png`` into the stage's
``output_dir`` and hands the trained weights back to the driver
(:func:`fnsft.workers.hand_back.save_and_hand_back`).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from fnsft.utils.console import say


class RLReport:
    """Held-out evaluation, per-iteration metrics and progress line, summary, plots, hand-back."""

    # Held-out evaluation ----------------------------------------------------------------
    def evaluate(self, eval_rows: list[dict], iteration: int) -> dict[str, float]:
        """Rank 0: greedy completions of the held-out prompts, scored by the reward actor.

        The same reward terms as training, one completion per prompt at temperature 0, so the
        number moves only when the policy does (the training reward also moves with sampling
        noise and with which prompts an iteration drew).
        """
        import numpy as np

        from fnsft.envs.rollout import rollout_collector
        from fnsft.workers.rl.recovery import rollout_with_recovery

        collect_rollout = rollout_collector(self.roles, self.tokenizer)  # multi-turn with rl.environment

        c = self.c
        sampling = {**c.sampling(), "temperature": 0.0, "max_new_tokens": c.eval_max_new_tokens or c.max_new_tokens}
        t0 = time.perf_counter()
        r, _ = rollout_with_recovery(lambda: collect_rollout(
            self.roles, eval_rows, num_generations=1, sampling=sampling, pad_id=self.tokenizer.pad_token_id,
            use_reference_actor=False, score_chunks=c.rollout_chunks(), timeout_s=c.role_timeout_s),
            self.roles, self.pusher, self.job.stage_name)
        out = {"eval/reward": float(np.mean(r.arrays["scores"])),
               "eval/response_length": float(np.mean(r.arrays["completion_mask"].sum(axis=1)))}
        out.update({f"eval/{label}": float(np.mean(v)) for label, v in r.components.items()})
        seconds = time.perf_counter() - t0
        self.eval_texts[iteration] = list(r.completions)  # RLAIF judges the first against the last
        self.evals.append({"iteration": iteration, **out, "eval_s": seconds,
                           "samples": [{"prompt": str(p)[:200], "completion": t[:200]}
                                       for p, t in zip(r.prompts[:3], r.completions[:3])]})
        terms = " ".join(f"{k[5:]}={v:.3f}" for k, v in out.items() if k not in ("eval/reward", "eval/response_length"))
        say(f"[{self.job.stage_name}] eval @ iter {iteration}: reward={out['eval/reward']:.3f} {terms} "
             f"len={out['eval/response_length']:.1f} ({len(eval_rows)} held-out prompts, greedy, {seconds:.1f}s)")
        return out


    # Metrics ----------------------------------------------------------------------------
    def iteration_metrics(self, it: int, rollout, stats: dict, timings: dict) -> dict[str, Any]:
        import numpy as np

        scores = rollout.arrays["scores"]
        lengths = rollout.arrays["completion_mask"].sum(axis=1)
        m: dict[str, Any] = {
            "iteration": it + 1,
            "reward_mean": float(np.mean(scores)),
            "reward_std": float(np.std(scores)),
            "response_length": float(np.mean(lengths)),
            "truncated_share": float(np.mean(rollout.truncated)) if rollout.truncated else 0.0,
        }
        for label, values in rollout.components.items():
            m[f"reward/{label}"] = float(np.mean(values))
        m.update(rollout.metrics)  # e.g. judge/score_mean, judge/masked_share, judge/calls (RLAIF)
        m.update({k: v for k, v in stats.items()})
        m.update({f"time/{k}": v for k, v in timings.items()})
        m["sample_completion"] = rollout.completions[0][:200] if rollout.completions else ""
        return m

    def print_progress(self, m: dict) -> None:
        parts = [f"[{self.job.stage_name}] iter {m['iteration']}/{self.num_iterations}",
                 f"reward={m['reward_mean']:.3f}±{m['reward_std']:.3f}"]
        for key, fmt in (("kl", "kl={:.4f}"), ("entropy", "entropy={:.2f}"), ("clip_fraction", "clip={:.3f}"),
                         ("value_loss", "vloss={:.4f}"), ("trpo_kl", "step_kl={:.4f}"),
                         ("dpo_accuracy", "dpo_acc={:.2f}"), ("judge/masked_share", "judge_masked={:.2f}"),
                         ("clip_fraction_high", "clip_hi={:.3f}"), ("seq_ratio_mean", "seq_ratio={:.4f}"),
                         ("is_clip_share", "is_clip={:.3f}"), ("dynamic_sampling/dropped_groups", "dropped={:.0f}"),
                         ("rollout/staleness_mean", "lag={:.2f}"), ("rollout/is_clipped_share", "tis_clip={:.3f}")):
            if key in m:
                parts.append(fmt.format(m[key]))
        parts.append(f"len={m['response_length']:.1f}")
        t = " ".join(f"{k[5:-2]} {v:.2f}s" for k, v in m.items()
                     if k.startswith("time/") and k not in ("time/iteration_s",))
        parts.append(f"| {t} | {m['time/iteration_s']:.2f}s/iter")
        left = self.num_iterations - m["iteration"]
        if left > 0:  # from the last few iterations' pace
            recent = [x["time/iteration_s"] for x in self.history[-5:] if "time/iteration_s" in x]
            eta = (sum(recent) / len(recent) if recent else m["time/iteration_s"]) * left
            parts.append(f"ETA {int(eta // 60)}:{int(eta % 60):02d}")
        say(" ".join(parts))

    def summary_metrics(self) -> dict[str, Any]:
        h = self.history
        k = min(3, len(h))
        out: dict[str, Any] = {"algorithm": self.spec.name, "iterations": len(h),
                               "strategy": self.strategy.kind if self.strategy else "torch (trpo on rank 0)",
                               "reference": self.ref_mode or "none"}
        if h:
            out["reward_start"] = sum(x["reward_mean"] for x in h[:k]) / k
            out["reward_end"] = sum(x["reward_mean"] for x in h[-k:]) / k
            for key in sorted({key for x in h for key in x}):
                vals = [x[key] for x in h if isinstance(x.get(key), (int, float))]
                if key.startswith("time/") and vals:
                    out[f"{key}_mean"] = sum(vals) / len(vals)
            last = h[-1]
            out.update({f"final_{key}": v for key, v in last.items()
                        if isinstance(v, (int, float)) and not key.startswith(("time/", "eval/")) and key != "iteration"})
            if any("trpo_kl" in x for x in h):
                out["trpo_kl_max"] = max(x.get("trpo_kl", 0.0) for x in h)
                out["policy_kl_after_update_max"] = max(x.get("policy_kl_after_update", 0.0) for x in h)
            if any("rollout/staleness_max" in x for x in h):  # async rollouts: the largest lag seen
                out["rollout_staleness_max"] = max(x.get("rollout/staleness_max", 0.0) for x in h)
            for key in ("weight_sync_mismatches", "role_recoveries", "weight_resyncs", "dynamic_sampling/dropped_groups",
                        "dynamic_sampling/resample_rounds", "dynamic_sampling/filler_groups", "truncated_masked"):
                if any(key in x for x in h):  # over the whole stage (restarts: after a lost node)
                    out[key] = sum(x.get(key, 0) for x in h)
        if self.evals:
            first, last = self.evals[0], self.evals[-1]
            for key in (k for k in last if k.startswith("eval/")):
                name = key[5:]
                out[f"eval_{name}_end"] = last[key]
                if first is not last and key in first:
                    out[f"eval_{name}_start"] = first[key]
        if self.start_iteration:
            out["resumed_from_iteration"] = self.start_iteration
        import torch

        out["torch_threads"] = torch.get_num_threads()  # the learner's CPU share (fnsft.runtime.placement)
        out["compute_dtype"], out["compute_dtype_reason"] = self.precision.compute, self.precision.reason
        out["loop_seconds"] = time.time() - self.t_start
        out.update({f"worker_{k}": v for k, v in self.timings.items()})
        return out

    # Hand-back --------------------------------------------------------------------------
    def hand_back(self, worker_nodes: list[dict]) -> None:
        """Rank 0: write the history, plots and summary (with ``placement``: ``worker_nodes``,
        every rank's node, and each role actor's node now) and hand the weights to the driver."""
        from fnsft.workers.hand_back import save_and_hand_back
        from fnsft.utils.plots import plot_series

        c = self.c
        metrics = self.summary_metrics()
        metrics["placement"] = {"workers": worker_nodes, "roles": self.roles.nodes()}
        artifacts: dict[str, str] = {}
        hist_path = os.path.join(c.output_dir, "rl_history.json")
        with open(hist_path, "w") as f:
            json.dump(self.history, f, indent=1)
        artifacts["rl_history"] = hist_path
        if self.evals:
            eval_path = os.path.join(c.output_dir, "rl_eval.json")
            with open(eval_path, "w") as f:
                json.dump(self.evals, f, indent=1)
            artifacts["rl_eval"] = eval_path
            answers_path = os.path.join(c.output_dir, "rl_eval_answers.json")
            with open(answers_path, "w") as f:
                json.dump({str(k): v for k, v in self.eval_texts.items()}, f)
            artifacts["rl_eval_answers"] = answers_path
        series = {key: [(x["iteration"], x[key]) for x in self.history if key in x]
                  for key in ("reward_mean", "kl", "entropy", "response_length",  # + the GRPO family's own
                              "clip_fraction_high", "seq_ratio_mean", "is_clip_share", "dynamic_sampling/dropped_groups",
                              "overlong_penalty_mean", "rollout/staleness_mean", "rollout/is_ratio_mean")}  # last two: async
        series["eval_reward"] = [(x["iteration"], x["eval/reward"]) for x in self.evals]
        png = plot_series({k: v for k, v in series.items() if v}, os.path.join(c.output_dir, "reward_curve.png"),
                          f"{self.job.stage_name} ({self.spec.name})")
        if png:
            artifacts["reward_curve"] = png
        adapter, model = None, self.policy
        if c.use_peft:  # keep the adapter; hand on the same float32 merge a resume rebuilds
            import torch

            from fnsft.workers.hand_back import keep_stage_adapter
            from fnsft.models.adapters import merge_adapter

            trained = os.path.join(c.output_dir, ".scratch", "trained_adapter")
            self.policy.save_pretrained(trained)
            adapter = keep_stage_adapter(self.job, trained, self.tokenizer)
            model = merge_adapter(self.job.model.load(dtype=torch.float32), adapter, self.precision.compute_dtype)
        save_and_hand_back(self.job, model, self.tokenizer, metrics, artifacts, adapter)

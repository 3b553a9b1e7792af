"""The progress a Train worker shows on the driver's console (SFT, DPO and the reward model)."""

from __future__ import annotations

import time

from fnsft.utils.console import say


def progress_callback(job, rank: int):
    """A ``TrainerCallback`` printing one progress line (or a live bar on a terminal) on the
    driver's console: step, loss, tokens/s, ETA; rank 0 only."""
    from transformers import TrainerCallback

    class RayProgress(TrainerCallback):
        """One progress bar on the driver's console: step, loss, tokens/s."""

        def __init__(self):
            self.bar = None
            self.t0 = None
            self.tokens0 = 0

        def on_train_begin(self, args, state, control, **kw):
            if rank != 0:
                return
            self.t0 = time.time()
            self.tokens0 = state.num_input_tokens_seen or 0
            self.step0 = state.global_step  # a resumed run's ETA counts from here
            self.active = True
            if job.tty:  # a live bar on the driver's terminal; plain lines in logs
                from ray.experimental.tqdm_ray import tqdm

                self.bar = tqdm(total=state.max_steps, desc=f"[{job.stage_name}] train")
                self.bar.update(state.global_step)

        def on_step_end(self, args, state, control, **kw):
            if self.bar is not None:
                self.bar.update(1)

        def on_log(self, args, state, control, logs=None, **kw):
            if not getattr(self, "active", False) or not logs:
                return
            parts = [f"[{job.stage_name}] step {state.global_step}/{state.max_steps}"]
            shown = [k for k in ("loss", "eval_loss", "rewards/accuracies", "rewards/margins") if k in logs]
            if not shown and getattr(self, "last_step", None) == state.global_step:
                return  # e.g. the final train-summary log: nothing new to show
            self.last_step = state.global_step
            for key in shown:
                parts.append(f"{key.split('/')[-1]}={logs[key]:.4f}")
            elapsed = time.time() - self.t0
            tokens = (state.num_input_tokens_seen or 0) - self.tokens0
            if tokens and elapsed > 0:
                parts.append(f"{tokens / elapsed:.0f} tok/s")
            done = state.global_step - getattr(self, "step0", 0)
            if 0 < done and state.global_step < state.max_steps:
                left = elapsed / done * (state.max_steps - state.global_step)
                parts.append(f"ETA {int(left // 60)}:{int(left % 60):02d}")
            if self.bar is not None:
                self.bar.set_description(" ".join(parts))
            else:
                say(" ".join(parts))

        def on_train_end(self, args, state, control, **kw):
            if self.bar is not None:
                self.bar.close()

    return RayProgress()

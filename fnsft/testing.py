"""Helpers for fnsft's tests (and for users testing their own stages): tiny configs, CLI runs."""

from __future__ import annotations

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(REPO, "examples")
TINY = "builtin:tiny-llama"


def tiny_sft_config(output_dir, **sft) -> dict:
    """A small, fast SFT pipeline config on the tiny model (2 workers, ZeRO-2)."""
    stage = {
        "dataset_name_or_path": os.path.join(EXAMPLES, "sample_data.jsonl"),
        "num_train_epochs": 2, "learning_rate": 3e-3, "per_device_train_batch_size": 8,
        "max_length": 128, "save_steps": 0, "report_to": ["none"], "eval_split": 0.1,
    }
    stage.update(sft)
    return {
        "model_name_or_path": TINY, "output_dir": str(output_dir), "stages": ["sft"],
        "resources": {"num_workers": 2}, "deepspeed": {"zero_stage": 2},
        "stage_configs": {"sft": stage},
    }


def run_cli(*args, cwd=None, env=None, timeout=120) -> subprocess.CompletedProcess:
    """Run ``fnsft.cli`` in a fresh interpreter; prints RAY_IMPORTED=<bool> after it returns."""
    code = (
        "import sys\n"
        "from fnsft.cli import pipeline_main, train_main\n"
        f"fn = train_main if {args[:1]!r} == ('train',) else pipeline_main\n"
        f"argv = {list(args[1:]) if args[:1] == ('train',) else list(args)!r}\n"
        "rc = fn(argv)\n"
        "print('RAY_IMPORTED=' + str('ray' in sys.modules))\n"
        "sys.exit(rc)\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def registered_checkpoints(storage_dir: str, run_prefix: str) -> list[str]:
    """Checkpoint directory names Ray Train's controller has registered for runs ``<run_prefix>-*``.

    A worker's ``ray.train.report`` returns before the controller has collected it; a worker
    killed in between loses that checkpoint. Tests that kill workers wait for this list instead
    of for directories to appear on storage.
    """
    import glob
    import json

    names: list[str] = []
    for path in glob.glob(os.path.join(storage_dir, f"{run_prefix}-*", "checkpoint_manager_snapshot.json")):
        try:
            with open(path) as f:
                names += [c["checkpoint_dir_name"] for c in json.load(f)["checkpoint_results"]]
        except (OSError, ValueError, KeyError):  # being written
            continue
    return names


class KillAfterCheckpoint:
    """``with KillAfterCheckpoint(out, "01_sft", "sft", rank=1) as k: run()`` — SIGKILLs that
    Train worker once Ray Train has registered a checkpoint of the stage; ``k.pid`` says whom."""

    def __init__(self, output_dir, stage_dir: str, run_prefix: str, rank: int = 0, timeout_s: float = 300):
        import threading

        self.output_dir, self.stage_dir, self.run_prefix = str(output_dir), stage_dir, run_prefix
        self.rank, self.timeout_s = rank, timeout_s
        self.pid = None
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        import signal
        import time

        from fnsft.distributed.hf_worker import find_pids

        deadline = time.time() + self.timeout_s
        while time.time() < deadline:
            if registered_checkpoints(os.path.join(self.output_dir, "ray_train"), self.run_prefix):
                pid = find_pids(os.path.join(self.output_dir, self.stage_dir)).get(self.rank)
                if pid:
                    os.kill(pid, signal.SIGKILL)
                    self.pid = pid
                    return
            time.sleep(0.2)

    def __enter__(self) -> "KillAfterCheckpoint":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.thread.join(timeout=1)

"""Never hang on resources; defaults that use the machine.

- A plan that can never be placed fails at once with one line naming what it asked for and what
  there is: before Ray starts on a local run (also under --dry_run), within seconds on a running
  cluster, and for Tune trials before the sweep starts. Ray itself would wait forever, silently.
- With every resource left at its default, an RL stage (generation 1 CPU + reward 0.25 +
  reference 0.5 + a Train worker) runs on this 2-core machine: the local Ray is sized for the
  plan and the lone worker gets the machine's cores as torch threads.
- A local run ignores a `ray_current_cluster` file left by a killed `ray start` (one warning).
"""

from __future__ import annotations

import json
import os
import tempfile

import pytest
import yaml

from fnsft.testing import EXAMPLES, TINY, run_cli, tiny_sft_config


def _write(tmp_path, cfg) -> str:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def _too_big(tmp_path) -> dict:
    cfg = tiny_sft_config(tmp_path / "out", max_steps=2)
    cfg["resources"] = {"num_workers": 64}
    return cfg


def test_local_plan_that_cannot_fit_fails_before_ray_starts(tmp_path):
    config = _write(tmp_path, _too_big(tmp_path))
    for extra in (["--dry_run"], []):
        r = run_cli("--config", config, *extra, env={"RAY_ADDRESS": ""})
        err = r.stderr.strip()
        assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
        assert err.count("\n") == 0, err  # one line, no traceback
        assert "stage_configs.sft.resources" in err and "64 Train worker(s)" in err, err
        assert "this machine has" in err and "ray.num_cpus" in err, err
        assert "RAY_IMPORTED=False" in r.stdout  # failed before Ray started


@pytest.mark.slow
@pytest.mark.timeout(300, method="thread")  # a regression hangs inside ray.get: end the run, not wait
def test_plan_that_cannot_fit_on_a_running_cluster_fails_in_seconds(tmp_path, ray_session):
    from fnsft.errors import StageError
    from fnsft.pipeline.driver import Pipeline

    cfg = {
        "model_name_or_path": TINY, "output_dir": str(tmp_path / "rl"), "stages": ["rl"],
        "stage_configs": {"rl": {
            "dataset_name_or_path": os.path.join(EXAMPLES, "arithmetic", "train.jsonl"), "num_iterations": 2,
            "rewards": [{"type": "target_chars", "chars": "the"}], "generation": {"num_cpus": 3}}},
    }
    with pytest.raises(StageError) as e:
        Pipeline.from_dict(cfg).run()
    msg = str(e.value)
    # 1 worker x 1 CPU (all that is left after the roles) + roles 3 + 0.25 + 0.5 > the session's 4 CPUs
    assert "\n" not in msg and "stage_configs.rl.resources" in msg, msg
    assert "role actors {3.75 CPU}" in msg and "the cluster has {4 CPU}" in msg, msg


@pytest.mark.slow
@pytest.mark.timeout(300, method="thread")
def test_tune_trials_that_cannot_fit_fail_before_the_sweep(tmp_path, ray_session):
    from fnsft.errors import StageError
    from fnsft.pipeline.plan import build_plan
    from fnsft.tune.sweep import run_sweep

    cfg = _too_big(tmp_path)
    cfg["tune"] = {"metric": "sft/train_loss", "num_samples": 1,
                   "search_space": {"stage_configs.sft.learning_rate": {"choice": [1e-3]}}}
    with pytest.raises(StageError) as e:
        run_sweep(build_plan(data=cfg))
    msg = str(e.value)
    assert msg.startswith("tune: a trial of stage sft") and "64 Train worker(s)" in msg, msg
    assert "the cluster has {4 CPU}" in msg, msg
    assert not any(n.startswith("trial_") for n in os.listdir(tmp_path / "out" / "tune"))  # none started


@pytest.mark.slow
@pytest.mark.long
@pytest.mark.timeout(1200)
def test_rl_with_default_resources_runs_on_this_machine_despite_a_stale_cluster_file(tmp_path):
    # A `ray start` killed with SIGKILL leaves its address in <ray temp>/ray_current_cluster;
    # plain ray.init() would try to join that dead cluster and fail.
    ray_tmp = tempfile.mkdtemp(prefix="fns", dir="/tmp")  # short: Ray's sockets live under it
    os.makedirs(os.path.join(ray_tmp, "ray"))
    with open(os.path.join(ray_tmp, "ray", "ray_current_cluster"), "w") as f:
        f.write("127.0.0.1:1")
    out = tmp_path / "out"
    cfg = {  # nothing about resources, roles, Ray or DeepSpeed: the defaults a user gets
        "model_name_or_path": TINY, "output_dir": str(out), "stages": ["rl"],
        "stage_configs": {"rl": {
            "dataset_name_or_path": os.path.join(EXAMPLES, "arithmetic", "train.jsonl"), "num_iterations": 3,
            "prompts_per_iteration": 4, "num_generations": 2, "max_new_tokens": 6,
            "rewards": [{"type": "target_chars", "chars": "the"}], "report_to": ["none"]}},
    }
    try:
        r = run_cli("--config", _write(tmp_path, cfg), env={"RAY_ADDRESS": "", "RAY_TMPDIR": ray_tmp},
                    timeout=1100)
    finally:
        import shutil

        shutil.rmtree(ray_tmp, ignore_errors=True)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-5000:]
    assert "ray_current_cluster" in log and "starting a local Ray in-process instead" in log
    cores = len(os.sched_getaffinity(0))
    assert f"[rl] 1 worker(s) x {cores} CPU (auto" in log, log[-5000:]
    summary = json.loads((out / "pipeline_summary.json").read_text())
    rl = summary["stages"]["rl"]
    assert rl["status"] == "completed"
    assert rl["metrics"]["torch_threads"] == cores  # a lone learner: every core, not Ray's 1 thread
    with open(rl["artifacts"]["rl_history"]) as f:
        assert [h["iteration"] for h in json.load(f)] == [1, 2, 3]

"""Checkpoints restored from ray.storage_path run no pickled code: DeepSpeed unpickles its files
(``weights_only=False``), so a folder is scanned first and refused when a pickle names anything
but tensors and DeepSpeed's/transformers' own types (fnsft/workers/safe_checkpoint.py)."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from fnsft.errors import StageError
from fnsft.workers.safe_checkpoint import check_checkpoint_pickles


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    ck = tmp_path / "ckpt" / "state"
    ck.mkdir(parents=True)
    torch.save({"w": torch.ones(2)}, ck / "mp_rank_00_model_states.pt")
    check_checkpoint_pickles(str(tmp_path / "ckpt"))  # tensors only: restored
    marker = tmp_path / "ran"
    torch.save({"w": torch.ones(2), "x": _Payload(str(marker))}, ck / "zero_pp_rank_0_mp_rank_00_optim_states.pt")
    with pytest.raises(StageError) as err:
        check_checkpoint_pickles(str(tmp_path / "ckpt"))
    line = str(err.value)
    assert "zero_pp_rank_0_mp_rank_00_optim_states.pt" in line and "mkdir" in line and "\n" not in line
    assert not marker.exists()  # scanned, never unpickled


def test_links_and_files_that_are_not_torch_files_are_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "optimizer.pt").write_bytes(b"not a pickle")
    with pytest.raises(StageError, match="not a readable torch file"):
        check_checkpoint_pickles(str(tmp_path / "a"))
    (tmp_path / "b").mkdir()
    os.symlink(tmp_path / "a", tmp_path / "b" / "elsewhere")
    with pytest.raises(StageError, match="a symbolic link"):
        check_checkpoint_pickles(str(tmp_path / "b"))


@pytest.mark.slow
def test_deepspeed_and_trainer_checkpoints_pass(tmp_path):
    """What DeepSpeed (ZeRO 0, 2, 3) and transformers' Trainer really write is restorable."""
    script = textwrap.dedent(f"""
        import os, torch
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="{29500 + os.getpid() % 400}", RANK="0",
                          WORLD_SIZE="1", LOCAL_RANK="0")
        import deepspeed
        for stage in (0, 2, 3):
            m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
            # a torch optimizer, as fnsft's workers pass one (Trainer's AdamW; zero_allow_untested_optimizer)
            cfg = {{"train_micro_batch_size_per_gpu": 1, "zero_allow_untested_optimizer": True,
                   "zero_optimization": {{"stage": stage}}}}
            eng, *_ = deepspeed.initialize(model=m, optimizer=torch.optim.AdamW(m.parameters(), lr=1e-3), config=cfg)
            eng.backward(eng(torch.randn(1, 4)).sum()); eng.step()
            eng.save_checkpoint(r"{tmp_path}/ds{{}}".format(stage), tag="state", client_state={{"it": 3}})
        import numpy as np, random
        os.makedirs(r"{tmp_path}/hf", exist_ok=True)
        torch.save({{"python": random.getstate(), "numpy": np.random.get_state(), "cpu": torch.get_rng_state()}},
                   r"{tmp_path}/hf/rng_state.pth")
    """)
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, timeout=600)
    for name in ("ds0", "ds2", "ds3", "hf"):
        assert any(f.endswith((".pt", ".pth")) for _, _, fs in os.walk(tmp_path / name) for f in fs)
        check_checkpoint_pickles(str(tmp_path / name))

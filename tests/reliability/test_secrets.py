"""Credentials never reach what fnsft writes or shows (issue #27, "Secrets").

By name (by word: ``max_new_tokens`` is a count, not a secret) and by value (the value of any
secret-named environment variable, a URL's ``user:password@``), in the resolved config, the
summary, the plan, the report, tracking parameters and Train workers' runtime environments.
"""

from __future__ import annotations

import os

import pytest

from fnsft.errors import ConfigError
from fnsft.utils.redact import MASK, is_secret_name, redact, redact_text, secret_values

KEY = "sk-test-0123456789abcdef"


@pytest.mark.parametrize("name,secret", [
    ("api_key", True), ("WANDB_API_KEY", True), ("HF_TOKEN", True), ("AWS_SECRET_ACCESS_KEY", True),
    ("password", True), ("apiKey", True), ("MLFLOW_TRACKING_PASSWORD", True),
    ("max_new_tokens", False), ("eval_max_new_tokens", False), ("api_key_env", False), ("tokenizer", False),
    ("key_column", False), ("token_budget", False), ("top_logprobs", False), ("AWS_ACCESS_KEY_ID", False)])
def test_secret_names_by_word(name, secret):
    assert is_secret_name(name) is secret


def test_redact_by_name_value_and_url():
    cfg = {"judge": {"api": {"base_url": "https://bob:hunter2@api.example/v1?api_key=abc&x=1", "api_key_env": "MY_KEY",
                             "api_key": "pasted"}},
           "max_new_tokens": 32, "note": f"uses {KEY} inside", "list": [KEY]}
    out = redact(cfg, [KEY])
    text = repr(out)
    assert "hunter2" not in text and "abc" not in text and KEY not in text and "pasted" not in text
    assert out["max_new_tokens"] == 32 and out["judge"]["api"]["api_key_env"] == "MY_KEY"
    assert out["judge"]["api"]["base_url"] == f"https://{MASK}@api.example/v1?api_key={MASK}&x=1"
    assert redact_text("no secrets http://127.0.0.1:8000/v1", []) == "no secrets http://127.0.0.1:8000/v1"


def test_secret_values_come_from_secret_named_env_vars():
    env = {"WANDB_API_KEY": KEY, "WANDB_PROJECT": "public-project-name", "HF_TOKEN": "short"}
    assert secret_values(env) == [KEY]  # shorter than 8 characters: not matched by value


def test_train_workers_runtime_env_carries_no_credentials(monkeypatch):
    from fnsft.runtime.train_job import _forwarded_env

    monkeypatch.setenv("WANDB_API_KEY", KEY)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", KEY)
    monkeypatch.setenv("WANDB_PROJECT", "p")
    env = _forwarded_env()
    assert env.get("WANDB_PROJECT") == "p"
    assert "WANDB_API_KEY" not in env and "MLFLOW_TRACKING_TOKEN" not in env and KEY not in env.values()


def test_a_key_pasted_into_api_key_env_is_never_echoed():
    from fnsft.actors.api_settings import ApiSettings, check_api_settings

    with pytest.raises(ConfigError) as info:
        check_api_settings(ApiSettings(model="m", base_url="http://127.0.0.1:9/v1", api_key_env=KEY), "judge.api",
                           environ={})
    assert KEY not in str(info.value) and "NAME of an environment variable" in str(info.value)


def test_plan_and_report_settings_show_no_credentials(tmp_path, monkeypatch):
    from fnsft.pipeline.plan import build_plan, describe_plan
    from fnsft.report.html import _flat
    from fnsft.report.tracking import flat_params
    from fnsft.testing import EXAMPLES, TINY

    monkeypatch.setenv("FNSFT_TEST_SECRET_KEY", KEY)
    # The secret reaches the plan through a value (an output folder named after it, by mistake).
    cfg = {"model_name_or_path": TINY, "output_dir": str(tmp_path / f"out-{KEY}"), "stages": ["sft"],
           "stage_configs": {"sft": {"dataset_name_or_path": os.path.join(EXAMPLES, "sample_data.jsonl")}}}
    plan = build_plan(data=cfg)
    text = describe_plan(plan)
    assert KEY not in text and f"out-{MASK}" in text
    flat = []
    _flat("", {"rl": {"max_new_tokens": 16, "api_key": "x", "url": "http://u:p4ssw0rd@h/v1"}}, flat)
    shown = dict(flat)
    assert shown["rl.max_new_tokens"] == 16 and shown["rl.api_key"] == MASK and "p4ssw0rd" not in shown["rl.url"]
    params = flat_params({"a": {"hf_token": KEY, "max_new_tokens": 8, "note": KEY}})
    assert "a.hf_token" not in params and params["a.max_new_tokens"] == "8" and KEY not in params["a.note"]

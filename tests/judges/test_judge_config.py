"""Bad ``judge:`` settings fail with one line naming the key (no torch, no ray)."""

import os

import pytest

from fnsft.config.parse import parse_dataclass
from fnsft.errors import ConfigError
from fnsft.judges import JudgeSettings, check_judge_settings

FNS = os.path.join(os.path.dirname(__file__), "judge_fns.py")


def check(**judge):
    s = parse_dataclass(JudgeSettings, judge, "stage_configs.rlaif.judge")
    check_judge_settings(s, "stage_configs.rlaif.judge")


@pytest.mark.parametrize("judge,match", [
    ({"type": "remote"}, r"judge\.type: unknown judge type 'remote'"),
    ({"kind": "pairwize"}, r"judge\.kind: .*did you mean 'pairwise'"),
    ({"score_range": [10, 1]}, r"judge\.score_range: low must be below high"),
    ({"template": "Rate {response}"}, r"judge\.template: a pointwise template needs \{prompt\}"),
    ({"kind": "pairwise", "template": "{prompt} {response}"}, r"needs \{response_a\}, \{response_b\}"),
    ({"template": "{prompt} {response}", "principles": ["be kind"]}, r"needs \{principles\}"),
    ({"constitution_path": "/nonexistent/c.yaml"}, r"judge\.constitution_path: cannot read"),
    ({"template": "helpfulnes"}, r"judge\.template: 'helpfulnes' is neither a shipped template"),
    ({"type": "function"}, r"judge\.function: a function judge needs"),
    ({"type": "function", "function": "no_such_mod:fn"}, r"judge\.function: module 'no_such_mod' not found"),
    ({"position_debias": "sometimes"}, r"judge\.position_debias"),
    ({"type": "local", "model_name_or_path": "./nowhere"}, r"judge\.model_name_or_path: ./nowhere is not a model"),
])
def test_one_line_errors(judge, match):
    with pytest.raises(ConfigError, match=match) as e:
        check(**judge)
    assert "\n" not in str(e.value) and str(e.value).startswith("stage_configs.rlaif.judge")


def test_unknown_key_and_good_settings(tmp_path):
    with pytest.raises(ConfigError, match=r"judge\.tempalte: unknown key \(did you mean 'template'"):
        check(tempalte="x")
    c = tmp_path / "constitution.yaml"
    c.write_text("- Be honest.\n- Be kind.\n")
    check(kind="pairwise", constitution_path=str(c))  # the shipped template has a principles slot
    check(type="function", function=f"{FNS}:letter_share", score_range=[0, 1])
    bad = tmp_path / "bad.json"
    bad.write_text('{"x": 1}')
    with pytest.raises(ConfigError, match="must hold a list of principles"):
        check(constitution_path=str(bad))


def test_api_errors(monkeypatch):
    pytest.importorskip("fnsft.actors.api_settings")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match=r"judge\.api\.model"):
        check(type="api", api={"base_url": "http://127.0.0.1:1/v1"})
    with pytest.raises(ConfigError, match=r"judge\.api\.base_url"):
        check(type="api", api={"model": "m"})
    monkeypatch.delenv("FNSFT_TEST_UNSET_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"judge\.api\.api_key_env: environment variable FNSFT_TEST_UNSET_KEY"):
        check(type="api", api={"model": "m", "base_url": "http://127.0.0.1:1/v1", "api_key_env": "FNSFT_TEST_UNSET_KEY"})
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    check(type="api", api={"model": "m"})  # the openai client's own default applies


def test_validation_imports_no_torch_or_ray():
    import subprocess
    import sys

    code = ("import sys; from fnsft.judges import JudgeSettings, check_judge_settings; "
            "check_judge_settings(JudgeSettings(kind='pairwise')); "
            "print('torch' in sys.modules, 'ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]

"""Stage discovery (register_stage, plugins, entry points), config-class lookup, --dry_run."""

from __future__ import annotations

import glob
import os
import textwrap

from fnsft.pipeline import registry
from fnsft.pipeline.plan import build_plan
from fnsft.testing import EXAMPLES, REPO, run_cli, run_cli_each, tiny_sft_config


def test_entry_point_stage_is_discovered(tmp_path, monkeypatch):
    pkg = tmp_path / "ep_stage_pkg.py"
    pkg.write_text(textwrap.dedent('''
        from dataclasses import dataclass, field
        from fnsft.stages.base import BaseStage, StageConfig, StageResult

        @dataclass
        class EchoConfig(StageConfig):
            word: str = field(metadata={"help": "a word"})

        class Echo(BaseStage):
            config_class = EchoConfig
            @property
            def stage_name(self):
                return "echo"
            def execute(self, model, tokenizer, previous_result=None):
                return StageResult(metrics={"word": self.config.word})
    '''))
    dist = tmp_path / "ep_stage_pkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-stage-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[fnsft.stages]\necho = ep_stage_pkg:Echo\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    monkeypatch.setattr(registry, "_registered", dict(registry._registered))
    assert "echo" in registry.available_stages()
    cfg = tiny_sft_config(tmp_path / "o")
    cfg["stages"] = ["sft", "echo"]
    cfg["stage_configs"]["echo"] = {"word": "hi"}
    plan = build_plan(data=cfg)
    assert plan.stages[1].stage.config.word == "hi"


def test_guide_stage_config_found_beside_the_class(tmp_path):
    cfg = tiny_sft_config(tmp_path / "o")
    cfg["plugins"] = [os.path.join(EXAMPLES, "custom_stage", "my_stage.py")]
    cfg["stages"] = ["sft", "my_stage"]
    cfg["stage_configs"]["my_stage"] = {"my_parameter": "hello", "save_intermediate": False}
    plan = build_plan(data=cfg)
    stage = plan.stages[1].stage
    assert type(stage.config).__name__ == "MyStageConfig"
    assert stage.config.my_parameter == "hello" and stage.config.save_intermediate is False
    assert stage.config.stage_name == "my_stage"
    assert stage.config.output_dir.endswith("02_my_stage")


def test_stages_flag_selects(tmp_path):
    cfg = tiny_sft_config(tmp_path / "o")
    cfg["plugins"] = [os.path.join(EXAMPLES, "custom_stage", "my_stage.py")]
    cfg["stages"] = ["sft", "my_stage"]
    cfg["stage_configs"]["my_stage"] = {"my_parameter": "hello"}
    plan = build_plan(data=cfg, select=["my_stage"])
    assert [s.name for s in plan.selected] == ["my_stage"]


def test_sft_only_config_dry_run_prints_plan():
    result = run_cli("--config", os.path.join(REPO, "configs", "sft_only_config.yaml"), "--dry_run", cwd=REPO)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "fnsft pipeline plan" in out and "1. sft [run]" in out
    assert "alpaca" in out and "ZeRO-2" in out and "LoRA r=16" in out
    assert "RAY_IMPORTED=False" in out


def test_every_shipped_config_validates():
    """Every config in configs/ passes --dry_run as shipped, and its header says how to run it
    (one interpreter for all of them: validation stays on the light path, Ray never imported)."""
    paths = sorted(glob.glob(os.path.join(REPO, "configs", "*.yaml")))
    argvs = []
    for path in paths:
        header = open(path).read().split("\n\n")[0]
        assert "fnsft-pipeline --config configs/" + os.path.basename(path) in header, f"{path}: header must show the command"
        argvs.append(["--config", path, "--dry_run"] + (["--tune"] if "--tune" in header else []))
    for path, result in zip(paths, run_cli_each(argvs, cwd=REPO)):
        assert result["rc"] == 0, (path, result["stderr"][-2000:])
    assert not result["ray_imported"], "a --dry_run imported Ray"

"""Fixtures of the reliability tests: the tiny model saved without a chat template."""

from __future__ import annotations

import json
import os
import shutil

import pytest


def save_without_chat_template(src: str, dst: str) -> str:
    """Copy a model folder, dropping its tokenizer's chat template (as DialoGPT ships)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".fnsft_builtin", "chat_template.*"))
    cfg_path = os.path.join(dst, "tokenizer_config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg.pop("chat_template", None)
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    return dst


@pytest.fixture(scope="session")
def no_template_model(tmp_path_factory, tiny_model_dir):
    return save_without_chat_template(tiny_model_dir, str(tmp_path_factory.mktemp("nt") / "model"))

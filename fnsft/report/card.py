"""Model cards: ``README.md`` in ``final_model/`` and in each stage's model folder.

The Hugging Face layout: YAML front matter (``base_model``, ``library_name``, ``tags``,
``pipeline_tag``), then what the model is, how it was trained (each stage's data and key
settings) and what was measured before and after. Built from the run folder, like the report;
credentials never appear (settings only name environment variables).
"""

from __future__ import annotations

import os
from typing import Optional

import yaml

from fnsft.report.collect import RunView, StageView
from fnsft.report.svg import fmt

CARD = "README.md"
_KEY_SETTINGS = ("dataset_name_or_path", "preference_dataset_path", "eval_dataset_path", "algorithm", "loss_type",
                 "beta", "learning_rate", "num_train_epochs", "max_steps", "num_iterations",
                 "per_device_train_batch_size", "gradient_accumulation_steps", "max_length", "use_peft",
                 "lora_r", "lora_alpha", "load_in_4bit", "kl_coef", "num_generations", "rewards")
_TAGS = {"sft": "sft", "dpo": "dpo", "rl": "reinforcement-learning", "rlaif": "rlaif",
         "cot_distillation": "distillation"}


def _base_model(run: RunView) -> str:
    model = run.model
    if model.startswith("builtin:smollm2"):
        return "HuggingFaceTB/SmolLM2-135M-Instruct"
    return model


def _settings_line(s: StageView) -> str:
    parts = []
    for key in _KEY_SETTINGS:
        if key in s.settings and s.settings[key] not in (None, "", [], {}):
            value = s.settings[key]
            if key == "rewards" and isinstance(value, list):
                value = ", ".join(str(r.get("type", r)) if isinstance(r, dict) else str(r) for r in value)
            parts.append(f"`{key}`: {value}")
    return "; ".join(parts) or "defaults"


def render_card(run: RunView, upto: Optional[str] = None) -> str:
    """The card of the model after stage ``upto`` (``None``: the final model)."""
    stages = []
    for s in run.stages:
        if s.status.startswith(("completed", "skipped")):
            stages.append(s)
        if upto and s.name == upto:
            break
    meta = {"base_model": _base_model(run), "library_name": "transformers", "pipeline_tag": "text-generation",
            "tags": ["fnsft", "trl"] + [_TAGS.get(s.name, s.name) for s in stages]
                    + (["lora"] if any(s.settings.get("use_peft") for s in stages) else [])}
    title = f"after stage {upto}" if upto else "final model"
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "",
             f"# {os.path.basename(os.path.abspath(run.output_dir))} ({title})", "",
             f"Post-trained from `{run.model}` with fnsft, stage by stage: "
             + " → ".join(s.name for s in stages) + ". Weights in safetensors; load with "
             "`AutoModelForCausalLM.from_pretrained(this_folder)`.", "",
             "## Training", "", "| stage | strategy | data and key settings |", "|---|---|---|"]
    for s in stages:
        lines.append(f"| {s.name} | {s.strategy or '—'} | {_settings_line(s)} |")
    lines += ["", "## Measured before → after", "", "| stage | metric | before | after |", "|---|---|---|---|"]
    rows = [f"| {s.name} | {m} | {fmt(b)} | {fmt(a)} |" for s in stages for m, b, a in s.changes]
    lines += rows or ["| — | no held-out metric recorded | | |"]
    lines += ["", "Metrics are from the run's own held-out data (see `pipeline_summary.json` and `report.html` "
              "in the run folder); they are small-sample measurements, not benchmarks.", ""]
    return "\n".join(lines)


def write_cards(run: RunView) -> list[str]:
    """Write the cards into each completed stage's model folder and ``final_model/``."""
    written = []
    for s in run.stages:
        if s.status == "completed" and s.model_path and os.path.isfile(os.path.join(s.model_path, "config.json")):
            written.append(_write(os.path.join(s.model_path, CARD), render_card(run, s.name)))
    previous = None
    for s in run.stages:
        if s.adapter_path and os.path.isfile(os.path.join(s.adapter_path, "adapter_config.json")):
            written.append(_write(os.path.join(s.adapter_path, CARD), render_adapter_card(run, s, previous)))
        if s.status.startswith(("completed", "skipped")):
            previous = s
    if run.final_model and os.path.isfile(os.path.join(run.final_model, "config.json")):
        written.append(_write(os.path.join(run.final_model, CARD), render_card(run)))
    return written


def render_adapter_card(run: RunView, s: StageView, previous: Optional[StageView]) -> str:
    """The card of a LoRA stage's adapter folder: what it is and how to rebuild the merged model."""
    base = (f"the model of stage {previous.name} (`{previous.folder}/model`; if that folder was removed, "
            f"rebuilt the same way from `{previous.folder}/adapter`, or stage {previous.name}'s own input)"
            if previous else f"the base model `{run.model}`")
    meta = {"base_model": _base_model(run), "library_name": "peft", "tags": ["fnsft", "lora", _TAGS.get(s.name, s.name)]}
    return "\n".join([
        "---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "",
        f"# LoRA adapter of stage {s.name}", "",
        f"Trained by fnsft on {base}. The merged model this stage handed on is that input with this "
        "adapter merged in float32; to rebuild it: `PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("
        "INPUT, dtype=torch.float32), this_folder).merge_and_unload()`. Rerunning the same `fnsft-pipeline` "
        "command does this by itself when a later stage needs it.", "",
        f"Settings: {_settings_line(s)}.", ""])


def _write(path: str, text: str) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path

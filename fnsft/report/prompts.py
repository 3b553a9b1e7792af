"""Which prompts the report asks every stage's model (``report.prompts``, else held-out data).

The prompts are rendered once, with the base model's tokenizer, exactly as the first stage
trains on them (a chat turn through the chat template, or raw text), and stored in
``report_answers.json``; every later stage answers the same inputs.
"""

from __future__ import annotations

from typing import Any, Optional

from fnsft.errors import ConfigError


def _as_prompt(row: dict, stage_config: Any) -> Any:
    """The prompt of one data row as the stage trains on it: a string, or a list of messages."""
    from fnsft.data.formats import detect_sft_format, to_prompt_completion
    from fnsft.data.prompts import detect_prompt_column, to_prompt_row

    mapping = getattr(stage_config, "column_mapping", None) or None
    as_chat = bool(getattr(stage_config, "apply_chat_template", False))
    try:  # SFT formats (alpaca, sharegpt, messages, prompt/completion)
        fmt = detect_sft_format([row], "report", mapping)
        if fmt != "text":
            return to_prompt_completion(row, fmt, mapping, getattr(stage_config, "system_prompt", None),
                                        as_chat=as_chat)["prompt"]
    except ConfigError:
        pass
    try:  # prompt-only rows (RL) and preference rows (a prompt column)
        prompt = to_prompt_row(row, detect_prompt_column([row], "report", mapping), mapping)["prompt"]
    except ConfigError:
        return None
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) and as_chat else prompt


def held_out_rows(stage_config: Any, n: int) -> tuple[list[dict], str]:
    """``n`` rows the first stage did not train on (its eval split), and where they came from.

    The split repeats :meth:`fnsft.stages.training.TrainStage.split_eval` (same seed, same
    shuffle), so the prompts are the stage's own held-out rows.
    """
    from fnsft.data.files import read_first_rows
    from fnsft.data.splits import split_held_out

    c = stage_config
    eval_path = getattr(c, "eval_dataset_path", None)
    if eval_path:
        return read_first_rows(eval_path, n=n), f"held-out prompts from {eval_path}"
    path = getattr(c, "dataset_name_or_path", None) or getattr(c, "preference_dataset_path", None)
    if not path:
        return [], ""
    rows = read_first_rows(path, n=100_000)
    if getattr(c, "max_train_samples", None):
        rows = rows[: c.max_train_samples]
    held = split_held_out(rows, getattr(c, "eval_split", 0) or 0, getattr(c, "eval_max_rows", None),
                          getattr(c, "seed", 42)).eval
    if held:
        return held[:n], f"held-out rows of {path}"
    return rows[-n:], f"the last rows of {path} (no eval split: the stage trained on them)"


def choose_prompts(report_cfg: Any, first_stage_config: Any, tokenizer) -> Optional[dict[str, Any]]:
    """``{"prompts": [display text], "inputs": [model input], "format", "prompt_source"}`` or None."""
    if report_cfg.prompts:
        raw: list = [[{"role": "user", "content": p}] if tokenizer.chat_template else p for p in report_cfg.prompts]
        source = "report.prompts"
    elif report_cfg.num_prompts > 0 and first_stage_config is not None:
        rows, source = held_out_rows(first_stage_config, report_cfg.num_prompts)
        raw = [p for p in (_as_prompt(r, first_stage_config) for r in rows) if p]
    else:
        return None
    if not raw:
        return None
    chat = isinstance(raw[0], list) and bool(tokenizer.chat_template)
    inputs, shown = [], []
    for p in raw:
        if isinstance(p, list):
            if chat:
                inputs.append(tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True))
            else:
                inputs.append("\n".join(m["content"] for m in p) + "\n")
            shown.append("\n".join(m["content"] for m in p if m.get("role") != "system"))
        else:
            inputs.append(p)
            shown.append(p)
    return {"prompts": shown, "inputs": inputs, "format": "chat template" if chat else "raw text",
            "prompt_source": source}

"""The side-by-side answers: each stage's model answers the same prompts, greedily.

After the base model is ready and after every stage, the driver calls :func:`record_answers`
with the model's handle; it loads the model in the driver process (weights from the object store
or the stage's folder), generates at most ``report.max_new_tokens`` tokens per prompt in one
batch, and stores the column in ``<output_dir>/report_answers.json``. ``fnsft-report`` rebuilds
the page from that file without a model.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Optional

from fnsft.report.collect import ANSWERS, read_json

log = logging.getLogger("fnsft")


def load_answers(output_dir: str) -> dict[str, Any]:
    return read_json(os.path.join(output_dir, ANSWERS), {}) or {}


def save_answers(output_dir: str, data: dict[str, Any]) -> None:
    import json

    path = os.path.join(output_dir, ANSWERS)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, ensure_ascii=False)
    os.replace(tmp, path)


def generate(model, tokenizer, inputs: list[str], chat: bool, max_new_tokens: int) -> list[str]:
    """Greedy answers to ``inputs`` (one left-padded batch)."""
    import torch

    side, pad = tokenizer.padding_side, tokenizer.pad_token
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        # A chat-template string already has its special tokens.
        enc = tokenizer(inputs, return_tensors="pt", padding=True, add_special_tokens=not chat)
    finally:
        tokenizer.padding_side = side
    model.eval()
    with torch.no_grad():
        out = model.generate(**enc, do_sample=False, max_new_tokens=max_new_tokens,
                             pad_token_id=tokenizer.pad_token_id)
    new = out[:, enc["input_ids"].shape[1]:]
    if pad is None:
        tokenizer.pad_token = None
    return [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]


def record_answers(output_dir: str, report_cfg: Any, column: str, label: str, fingerprint: str,
                   handle: Any, tokenizer: Any, first_stage_config: Any, order: list[str]) -> Optional[dict]:
    """Answer the report's prompts with ``handle``'s model and store them as ``column``.

    Kept when the file already holds this column with the same fingerprint (a resumed run
    pays nothing for the stages it skips). Columns follow ``order`` (base first).
    """
    from fnsft.report.prompts import choose_prompts

    data = load_answers(output_dir)
    settings = {"max_new_tokens": report_cfg.max_new_tokens, "requested": list(report_cfg.prompts),
                "num_prompts": report_cfg.num_prompts}
    if data.get("settings") != settings or not data.get("inputs"):
        chosen = choose_prompts(report_cfg, first_stage_config, tokenizer)
        if not chosen:
            return None
        data = {**chosen, "settings": settings, "max_new_tokens": report_cfg.max_new_tokens, "columns": []}
    columns = {c["stage"]: c for c in data.get("columns", [])}
    have = columns.get(column)
    if not (have and have.get("fingerprint") == fingerprint and have.get("answers")):
        t0 = time.time()
        entry: dict[str, Any] = {"stage": column, "label": label, "fingerprint": fingerprint}
        try:
            model = handle.load()
            entry["answers"] = generate(model, tokenizer, data["inputs"], data["format"] == "chat template",
                                        report_cfg.max_new_tokens)
            del model
        except Exception as e:  # the report must never fail a run
            entry["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            log.warning("report: could not generate answers after %s: %s", column, entry["error"])
        entry["seconds"] = round(time.time() - t0, 2)
        columns[column] = entry
        log.debug("report: %d answers after %s in %.1fs", len(data["inputs"]), column, entry["seconds"])
    rank = {name: i for i, name in enumerate(["base"] + order)}
    data["columns"] = sorted((c for c in columns.values() if c["stage"] in rank), key=lambda c: rank[c["stage"]])
    save_answers(output_dir, data)
    return data

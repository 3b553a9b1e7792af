"""The run report: ``<output_dir>/report.html``, model cards, and the answers behind them.

The driver calls :func:`after_stage` once the base model is ready and after every stage, and
:func:`write_report` at the end; ``fnsft-report OUTPUT_DIR`` calls :func:`write_report` alone.
The page is built only from the files in the run folder (see :mod:`fnsft.report.collect`).
YAML: the top-level ``report:`` section (``enabled``, ``prompts``, ``num_prompts``,
``max_new_tokens``, ``judge``).
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("fnsft")
REPORT = "report.html"


def write_report(output_dir: str) -> str:
    """(Re)write ``<output_dir>/report.html`` and the model cards from the run folder; returns the page's path."""
    from fnsft.report.card import write_cards
    from fnsft.report.collect import collect
    from fnsft.report.html import render

    run = collect(output_dir)
    write_cards(run)
    page = render(run)
    path = os.path.join(output_dir, REPORT)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page)
    os.replace(tmp, path)  # a browser refreshing mid-run never sees half a page
    return path


def after_stage(cfg: Any, column: str, fingerprint: str, handle: Any, tokenizer: Any,
                first_stage_config: Any, order: list[str]) -> None:
    """Answer the report's prompts with this model (``column``: "base" or a stage), judge it
    against the previous column when ``report.judge`` is set, and rewrite the page."""
    from fnsft.report.answers import record_answers, save_answers
    from fnsft.report.judging import add_win_rates

    rc = cfg.report
    if not rc.enabled:
        return
    label = cfg.model_name_or_path if column == "base" else f"after {column}"
    data = record_answers(cfg.output_dir, rc, column, label, fingerprint, handle, tokenizer,
                          first_stage_config, order)
    if data is not None and rc.judge and column != "base":
        add_win_rates(data, rc.judge, cfg.output_dir)
        save_answers(cfg.output_dir, data)
    write_report(cfg.output_dir)

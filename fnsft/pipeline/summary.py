"""``pipeline_summary.json``: what each stage of a run did, rewritten (atomically) as it goes."""

from __future__ import annotations

import os

from fnsft.utils.atomic import read_json_state

SUMMARY = "pipeline_summary.json"


def load_summary(output_dir: str) -> dict:
    """The summary a rerun continues (an empty one for a new run); a damaged file is one
    ``ConfigError`` line naming it."""
    path = os.path.join(output_dir, SUMMARY)
    if not os.path.isfile(path):
        return {"output_dir": output_dir, "stages": {}}
    data = read_json_state(path, "run summary",
                           "delete it (the resume manifest still knows which stages finished), "
                           "or restore it from a backup")
    if not isinstance(data.get("stages", {}), dict):
        data["stages"] = {}
    data.setdefault("stages", {})
    return data

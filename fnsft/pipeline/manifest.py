"""The resume manifest: which stages finished, with which fingerprint, and where their model is.

A stage's fingerprint hashes its name, the config values that decide its output, and the
fingerprint of its input model, so changing one stage re-runs it and everything after it.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Optional

MANIFEST = ".fnsft_manifest.json"


def fingerprint(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def write_json_atomic(path: str, data: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, default=str)
    os.replace(tmp, path)


class Manifest:
    def __init__(self, output_dir: str):
        self.path = os.path.join(output_dir, MANIFEST)
        self.data: dict[str, Any] = {"stages": {}}
        if os.path.isfile(self.path):
            with open(self.path) as f:
                self.data = json.load(f)

    def completed(self, stage: str, fp: str) -> Optional[dict]:
        """The entry of a finished stage with this fingerprint whose model is still on disk."""
        entry = self.data["stages"].get(stage)
        if not entry or entry.get("status") != "completed" or entry.get("fingerprint") != fp:
            return None
        path = entry.get("model_path")
        if not path or not os.path.isfile(os.path.join(path, "config.json")):
            return None
        return entry

    def record(self, stage: str, entry: dict) -> None:
        self.data["stages"][stage] = entry
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        write_json_atomic(self.path, self.data)

    def forget_model(self, stage: str) -> None:
        if stage in self.data["stages"]:
            self.data["stages"][stage]["model_path"] = None
            write_json_atomic(self.path, self.data)

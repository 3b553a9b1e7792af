"""The resume manifest: which stages finished, with which fingerprint, and where their model is.

A stage's fingerprint hashes its name, the config values that decide its output, the
fingerprint of its input model, and the *contents* of the local files and folders its config
names (datasets, reward models, a local base model): size and modification time of each file,
and a content hash of small files (so an edited dataset re-runs even if its mtime was kept).
Changing any of them re-runs the stage and everything after it.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Optional

from fnsft.errors import ConfigError
from fnsft.utils.atomic import read_json_state, write_json_atomic

MANIFEST = ".fnsft_manifest.json"
REMEDY = "delete it to run every stage again, or restore it from a backup"
HASH_BELOW = 8 << 20  # files smaller than this are hashed; larger ones: size + mtime
HASH_BUDGET = 256 << 20  # past this many bytes hashed, the remaining files count by size + mtime
MAX_FILES = 20000  # a folder with more files than this is described by its first MAX_FILES


def fingerprint(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _file_fingerprint(path: str, budget: list) -> list:
    st = os.stat(path)
    if st.st_size < HASH_BELOW and budget[0] >= st.st_size:  # at most HASH_BUDGET bytes read per stage
        budget[0] -= st.st_size
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return [st.st_size, digest.hexdigest()[:16]]
    return [st.st_size, st.st_mtime_ns]


def paths_fingerprint(paths) -> str:
    """A fingerprint of the contents of the local files/folders among ``paths`` ('' if none)."""
    parts, budget = [], [HASH_BUDGET]
    for p in sorted({os.path.abspath(os.path.expanduser(p)) for p in paths}):
        if os.path.isfile(p):
            parts.append([p, _file_fingerprint(p, budget)])
        elif os.path.isdir(p):
            files = []
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for n in sorted(names):
                    if len(files) >= MAX_FILES:
                        break
                    full = os.path.join(root, n)
                    if os.path.isfile(full):
                        files.append([os.path.relpath(full, p), _file_fingerprint(full, budget)])
            parts.append([p, files])
    return fingerprint(parts) if parts else ""


def config_paths(value: Any, skip: tuple = ()) -> list[str]:
    """Every string in a (nested) config value that names an existing local file or folder."""
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.name not in skip}
    if isinstance(value, dict):
        return [p for v in value.values() for p in config_paths(v)]
    if isinstance(value, (list, tuple)):
        return [p for v in value for p in config_paths(v)]
    if isinstance(value, str) and value and len(value) < 4096 and "\n" not in value:
        path = os.path.expanduser(value)
        if os.path.isfile(path) or (os.path.isdir(path) and os.path.abspath(path) != os.path.abspath(os.sep)):
            return [path]
    return []


def stage_fingerprint(name: str, stage: Any, input_fingerprint: str) -> str:
    """The fingerprint a stage's manifest entry must match to be skipped on a rerun."""
    inputs = paths_fingerprint(config_paths(stage.config, skip=("output_dir", "stage_name")))
    return fingerprint(name, stage.fingerprint_fields(), input_fingerprint, inputs)


class Manifest:
    def __init__(self, output_dir: str):
        self.path = os.path.join(output_dir, MANIFEST)
        self.data: dict[str, Any] = {"stages": {}}
        if os.path.isfile(self.path):
            self.data = read_json_state(self.path, "resume manifest", REMEDY)
            if not isinstance(self.data.get("stages"), dict):
                raise ConfigError(f"{self.path}: the resume manifest is damaged (no 'stages' object); {REMEDY}")

    def completed(self, stage: str, fp: str, input_on_disk: bool = True) -> Optional[dict]:
        """The entry of a finished stage with this fingerprint whose weights are still at hand:
        its merged copy, ``final_model`` (when it holds them), its input handed on unchanged
        (``passthrough``), or its LoRA adapter over an input read from disk (``input_on_disk``;
        an input trained anew in this run is not the one the adapter was trained on)."""
        from fnsft.models.adapters import has_adapter

        entry = self.data["stages"].get(stage)
        if not entry or entry.get("status") != "completed" or entry.get("fingerprint") != fp:
            return None
        path = entry.get("model_path")
        if path and os.path.isfile(os.path.join(path, "config.json")):
            return entry
        if self.final_for(fp) or entry.get("passthrough"):
            return entry
        if input_on_disk and has_adapter(entry.get("adapter_path")):
            return entry
        return None

    def final_for(self, fp: str) -> Optional[str]:
        """``final_model``'s folder when it holds the weights of the stage with fingerprint ``fp``."""
        final = self.data.get("final_model") or {}
        path = final.get("path")
        if final.get("fingerprint") == fp and path and os.path.isfile(os.path.join(path, "config.json")):
            return path
        return None

    def record_final(self, fp: str, path: Optional[str]) -> None:
        self.data["final_model"] = {"fingerprint": fp, "path": path} if path else None
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        write_json_atomic(self.path, self.data)

    def record(self, stage: str, entry: dict) -> None:
        self.data["stages"][stage] = entry
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        write_json_atomic(self.path, self.data)

    def forget_model(self, stage: str) -> None:
        self.forget_path(self.data["stages"].get(stage, {}).get("model_path"))

    def forget_path(self, path: Optional[str]) -> list[str]:
        """Entries whose ``model_path`` is ``path`` (a stage and the pass-through stages after
        it) no longer point at it; returns their stage names."""
        if not path:
            return []
        names = [n for n, e in self.data["stages"].items()
                 if e.get("model_path") and os.path.abspath(e["model_path"]) == os.path.abspath(path)]
        for n in names:
            self.data["stages"][n]["model_path"] = None
        if names:
            write_json_atomic(self.path, self.data)
        return names

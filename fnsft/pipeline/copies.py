"""Which merged model copies a run keeps on disk (bounded disk with LoRA), and how a resume
gets a stage's weights back.

A LoRA stage leaves its adapter (``<NN>_<stage>/adapter/``, a few MB) and a merged full copy
(``<NN>_<stage>/model/``). The merged copy of the most recent finished stage is kept: a rerun
(resume) starts the next stage from it without rebuilding anything. Once a later stage has its
own copy, an earlier LoRA stage's copy is dropped when its input is itself on disk (or
rebuildable): its adapter rebuilds it on demand. When ``final_model/`` holds the last stage's
weights, that stage's copy is dropped too. Full fine-tunes and custom stages keep their copies
(nothing could rebuild them); ``--cleanup_intermediate`` removes those after ``final_model``.

A finished stage whose copy is gone comes back on a rerun as a *rebuild handle* (its adapter +
its input's handle, loaded lazily): stages skipped after it never load it; the stage that runs
next gets it written back to ``<NN>_<stage>/model/`` first (:func:`restore_copy`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import uuid
from typing import Any, Optional

from fnsft.models.adapters import has_adapter
from fnsft.pipeline.disk import dir_bytes, human_bytes, remove_inside

log = logging.getLogger("fnsft")


def has_model(path: Any) -> bool:
    return bool(path) and os.path.isfile(os.path.join(path, "config.json"))


@dataclasses.dataclass
class Link:
    """One finished stage of this run's chain, as far as its weights on disk go."""

    name: str
    output_dir: str
    model_path: Optional[str]  # its own merged copy (None: dropped, never written, or pass-through)
    adapter_path: Optional[str]
    passthrough: bool  # handed its input on unchanged
    on_disk: bool  # its weights can be read or rebuilt from disk


class Copies:
    """The chain of finished stages of one run; drops the merged copies nobody needs."""

    def __init__(self):
        self.chain: list[Link] = []

    def input_on_disk(self) -> bool:
        return self.chain[-1].on_disk if self.chain else True  # the base model is loadable

    def add(self, name: str, output_dir: str, model_path: Optional[str], adapter_path: Optional[str],
            passthrough: bool) -> Link:
        """``model_path``: the stage's own merged copy (not its input's, not ``final_model``)."""
        own = None if passthrough or not has_model(model_path) else model_path
        adapter = None if passthrough else adapter_path
        on_disk = has_model(own) or ((passthrough or has_adapter(adapter)) and self.input_on_disk())
        link = Link(name, output_dir, own, adapter, passthrough, on_disk)
        self.chain.append(link)
        return link

    def drop_unneeded(self, keep: Optional[str]) -> list[str]:
        """Delete merged copies of LoRA stages that their adapter (and their input, on disk)
        rebuild, except ``keep`` (the copy the next stage or a resume starts from); returns the
        folders removed."""
        dropped = []
        for i, link in enumerate(self.chain):
            prev_on_disk = self.chain[i - 1].on_disk if i else True
            own_folder = _same(link.model_path, os.path.join(link.output_dir, "model"))  # never anything else
            if (own_folder and has_adapter(link.adapter_path) and prev_on_disk
                    and has_model(link.model_path) and not _same(link.model_path, keep)):
                freed = remove_inside(link.model_path, link.output_dir)
                log.info("Stage %s: removed its merged copy %s (%s; its adapter %s rebuilds it)",
                         link.name, link.model_path, human_bytes(freed), link.adapter_path)
                dropped.append(link.model_path)
                link.model_path = None
        return dropped


def _same(a: Optional[str], b: Optional[str]) -> bool:
    return bool(a and b) and os.path.abspath(a) == os.path.abspath(b)


def skipped_handle(entry: dict, previous, fp: str, final_path: Optional[str], cfg):
    """The handle of a finished stage a rerun skips (``entry``: its manifest entry)."""
    from fnsft.models.handle import ModelHandle

    common = dict(fingerprint=fp, trust_remote_code=cfg.trust_remote_code, torch_dtype=cfg.torch_dtype)
    adapter = entry.get("adapter_path")
    if has_model(entry.get("model_path")):
        path = entry["model_path"]
        return ModelHandle(source=path, path=path, adapter=adapter, **common)
    if final_path:  # final_model holds exactly this stage's weights
        return ModelHandle(source=final_path, path=final_path, adapter=adapter, **common)
    if entry.get("passthrough"):
        return dataclasses.replace(previous, fingerprint=fp)
    return ModelHandle(source=adapter, adapter=adapter, base=previous, **common)


def restore_copy(handle, copies: Copies, manifest, summary: dict):
    """A rebuild handle's merged copy written back to its stage's ``model/`` folder (atomically:
    Tune trials may share it), named again in the manifest and summary; the handle of that folder."""
    link = next(l for l in reversed(copies.chain) if l.adapter_path == handle.adapter)
    out = os.path.join(link.output_dir, "model")
    if not has_model(out):
        tmp = f"{out}.{uuid.uuid4().hex[:8]}.tmp"
        handle.materialize(tmp)
        remove_inside(out, link.output_dir)
        os.replace(tmp, out)
        log.info("Rebuilt %s from the adapter %s (the next stage starts from it)", out, handle.adapter)
    link.model_path = out
    entry = manifest.data["stages"].get(link.name)
    if entry is not None:
        manifest.record(link.name, {**entry, "model_path": out})
    if link.name in summary["stages"]:
        summary["stages"][link.name]["model_path"] = out
    return dataclasses.replace(handle, source=out, path=out, base=None)


def forget_copies(manifest, summary: dict, removed: list[str], dirs: dict[str, str]) -> None:
    """Removed merged copies: the manifest and summary entries that named them name none."""
    for path in removed:
        for name in manifest.forget_path(path):
            if name in summary["stages"]:
                summary["stages"][name]["model_path"] = None
    if removed:
        refresh_disk_bytes(summary, dirs)


def cleanup_intermediate(manifest, summary: dict, dirs: dict[str, str], final: str, root: str) -> None:
    """``--cleanup_intermediate``: remove the stages' model copies once ``final`` holds the run's
    model. Only folders inside ``root`` (the run's output_dir) go: a run folder copied elsewhere
    still names the original's copies, which stay (one log line each)."""
    if not os.path.isfile(os.path.join(final, "config.json")):
        log.warning("final_model missing; intermediate models kept")
        return
    for name, folder in dirs.items():
        path = summary["stages"].get(name, {}).get("model_path")
        if not path or not os.path.isdir(path) or _same(path, final):
            continue
        if remove_inside(path, root):
            log.info("Removed intermediate model %s", path)
        manifest.forget_model(name)
        summary["stages"][name]["model_path"] = None
        summary["stages"][name]["disk_bytes"] = dir_bytes(folder)


def refresh_disk_bytes(summary: dict, dirs: dict[str, str]) -> None:
    """Each stage's ``disk_bytes`` as its folder is now (copies may have been dropped since)."""
    for name, folder in dirs.items():
        entry = summary["stages"].get(name)
        if entry is not None and "disk_bytes" in entry:
            entry["disk_bytes"] = dir_bytes(folder)

"""The driver: runs the selected stages in order on Ray and hands each model to the next.

```
Pipeline.from_yaml(...)          validate everything (no Ray yet)
  .run()                         connect to / start Ray
     for each selected stage:    skip if the manifest says it finished with this fingerprint
        stage.execute(model, tokenizer, previous_result, context=StageContext(fingerprint)) -> StageResult
        model -> object store (and <NN>_<stage>/model when save_intermediate)
        manifest + pipeline_summary.json
     final_model/ (--save_final_model), cleanup (--cleanup_intermediate)
```
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import traceback
from typing import Any, Callable, Optional, Sequence

import yaml

from fnsft.errors import FnsftError, StageError
from fnsft.pipeline import registry
from fnsft.pipeline.logs import setup_logging
from fnsft.pipeline.copies import cleanup_intermediate, forget_copies, refresh_disk_bytes
from fnsft.pipeline.disk import dir_bytes, own_train_runs, remove_inside, remove_stage_checkpoints
from fnsft.pipeline.manifest import Manifest, fingerprint, paths_fingerprint, stage_fingerprint
from fnsft.pipeline.summary import SUMMARY, load_summary
from fnsft.pipeline.plan import Plan, build_plan, describe_plan
from fnsft.pipeline.results import checked_result, plain, short_metrics
from fnsft.stages.base import StageContext, StageResult, execute_stage
from fnsft.utils.atomic import write_json_atomic
from fnsft.utils.one_line import error_line
from fnsft.utils.redact import redact

log = logging.getLogger("fnsft")


class Pipeline:
    """Run a validated :class:`Plan`. ``Pipeline.register_stage`` adds user stages.

    ``train_callbacks``: functions taking a Train job's name and returning extra
    ``ray.train.UserCallback`` for it, handed to every stage (a Tune trial forwards its stages'
    reports to Tune with one).
    """

    register_stage = staticmethod(registry.register_stage)
    available_stages = staticmethod(registry.available_stages)

    def __init__(self, plan: Plan, train_callbacks: Sequence[Callable[[str], list]] = ()):
        self.plan = plan
        self.config = plan.config
        self.train_callbacks = tuple(train_callbacks)

    @classmethod
    def from_yaml(cls, path: str, overrides: Optional[list[str]] = None,
                  stages: Optional[list[str]] = None) -> "Pipeline":
        return cls(build_plan(path, overrides=overrides, select=stages))

    @classmethod
    def from_dict(cls, data: dict, overrides: Optional[list[str]] = None,
                  stages: Optional[list[str]] = None) -> "Pipeline":
        return cls(build_plan(data=data, overrides=overrides, select=stages))

    def describe(self) -> str:
        return describe_plan(self.plan)

    # ------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run the plan's stages; the summary (``pipeline_summary.json``) says how it ended:
        ``completed``, ``failed``, ``stopped`` (SIGTERM, e.g. ``ray job stop``) or ``interrupted``
        (Ctrl-C), with ``stopped_stage`` naming the stage that was running."""
        from fnsft.utils.run_lock import output_dir_lock
        from fnsft.utils.stop import RunStopped, stop_on_sigterm

        t0 = time.time()
        cfg = self.config
        # Before anything is written there: a second run on this folder refuses with one line.
        with output_dir_lock(cfg.output_dir) as taken_over, stop_on_sigterm():
            setup_logging(cfg.log_level, cfg.output_dir)
            if taken_over:
                log.info("%s", taken_over)
            log.info("fnsft pipeline: %s -> %s", ", ".join(s.name for s in self.plan.selected), cfg.output_dir)
            # What a rerun continues from, read before Ray starts: a damaged file is one line now.
            manifest, summary = Manifest(cfg.output_dir), load_summary(cfg.output_dir)
            summary.update(status="running", stopped_stage=None)
            try:
                return self._run_locked(manifest, summary, t0)
            except BaseException as e:
                summary["status"] = ("stopped" if isinstance(e, RunStopped) else
                                     "interrupted" if isinstance(e, KeyboardInterrupt) else "failed")
                try:
                    self._write_summary(summary)
                except OSError as write_error:  # e.g. the full disk that failed the run: keep its error
                    log.warning("%s not updated (%s)", SUMMARY, write_error)
                if isinstance(e, RunStopped) and summary.get("stopped_stage"):
                    raise RunStopped(f"{e} during stage {summary['stopped_stage']}") from None
                raise

    def _run_locked(self, manifest: Manifest, summary: dict, t0: float) -> dict[str, Any]:
        from fnsft.utils.stop import stop_on_sigterm

        cfg = self.config
        with open(os.path.join(cfg.output_dir, "resolved_config.yaml"), "w") as f:
            yaml.safe_dump(redact(plain(dataclasses.asdict(cfg))), f, sort_keys=False)  # no credentials on disk
        self._track("start")

        from concurrent.futures import ThreadPoolExecutor

        from fnsft.runtime.handoff import new_run_id, run_store
        from fnsft.runtime.storage import check_storage
        from fnsft.runtime.ray_start import ensure_ray
        from fnsft.runtime.log_routing import route_worker_output
        from fnsft.pipeline.sizing import local_cpus

        verbose = cfg.log_level == "DEBUG"
        # The incoming model, its tokenizer and the report's base answers need no Ray: they are
        # prepared while Ray starts (mostly waiting on its processes), not after it.
        pool = ThreadPoolExecutor(1, thread_name_prefix="fnsft-base-model")
        base = pool.submit(self._prepare_base, verbose)
        pool.shutdown(wait=False)
        route_worker_output(verbose=verbose, quiet_libraries=False)  # Ray's bookkeeping: log file only
        started = time.time()
        ensure_ray(cfg.ray, num_cpus=local_cpus(self.plan))
        ray_start_s = round(time.time() - started, 3)
        check_storage(cfg.ray.storage_path)  # from the nodes, which write it: one line, not a traceback later
        # This run's own hand-off store: other pipelines on the cluster have theirs. Starting
        # Ray put its own SIGTERM handler (a stack dump and abort) over ours: ours again.
        run_id = new_run_id(os.path.basename(cfg.output_dir))
        with run_store(run_id) as store, stop_on_sigterm():
            handle, tokenizer, timings = base.result()
            return self._run_stages(store, handle, tokenizer, manifest, summary,
                                    {"ray_start_s": ray_start_s, **timings}, t0, run_id)

    def _prepare_base(self, verbose: bool):
        """The pipeline's incoming model handle and tokenizer, and the report's base column."""
        from fnsft.runtime.log_routing import quiet_driver_libraries
        from fnsft.models.handle import ModelHandle
        from fnsft.models.precision import dtype_fingerprint, model_hidden_size
        from fnsft.models.spec import resolve_model_path

        cfg = self.config
        t0 = time.time()
        if not verbose:
            quiet_driver_libraries()
        source = resolve_model_path(cfg.model_name_or_path)
        hidden = model_hidden_size(source)
        handle = ModelHandle(source=source, trust_remote_code=cfg.trust_remote_code,
                             torch_dtype=cfg.torch_dtype, hidden_size=hidden,
                             fingerprint=fingerprint(cfg.model_name_or_path, dtype_fingerprint(cfg.torch_dtype, hidden),
                                                     paths_fingerprint([source])))
        tokenizer = self._base_tokenizer(handle)
        timings = {"model_ready_s": round(time.time() - t0, 3)}
        log.info("Model %s ready in %.1fs", cfg.model_name_or_path, timings["model_ready_s"])
        t_report = time.time()
        self._report("base", handle, tokenizer)
        timings["base_report_s"] = round(time.time() - t_report, 3)
        return handle, tokenizer, timings

    def _run_stages(self, store, handle, tokenizer, manifest: Manifest, summary: dict, timings: dict,
                    t0: float, run_id: str) -> dict[str, Any]:
        from fnsft.pipeline.copies import Copies, restore_copy, skipped_handle

        cfg = self.config
        copies = Copies()  # finished stages of this run, for the merged copies kept on disk
        summary["timings"] = timings  # start-up: Ray, the base model (beside it), the report's base answers
        previous: Optional[StageResult] = None

        for name in self.plan.unlisted:
            log.info("Stage %s: stage_configs.%s is kept but the stage is not in stages; not run", name, name)
        summary["not_in_stages"] = list(self.plan.unlisted)
        for planned in self.plan.stages:
            name, stage = planned.name, planned.stage
            fp = stage_fingerprint(name, stage, handle.fingerprint)
            done = manifest.completed(name, fp, input_on_disk=handle.weights is None)
            if done:  # its weights: merged copy, final_model, its input, or adapter + input (lazily)
                handle = skipped_handle(done, handle, fp, manifest.final_for(fp), cfg)
                tokenizer = handle.load_tokenizer()
                copies.add(name, stage.config.output_dir, done.get("model_path"), done.get("adapter_path"),
                           bool(done.get("passthrough")))
            if not planned.selected:  # a deselected earlier stage: continue from its saved output
                self._report_not_run(summary, planned, done)
                continue
            if done:
                log.info("Stage %s already completed (fingerprint %s); skipping, model: %s",
                         name, fp, handle.path or f"rebuilt from {handle.adapter} when needed")
                previous = StageResult(model=handle, tokenizer=tokenizer, metrics=done.get("metrics", {}),
                                       model_path=handle.path, stage_name=name)
                summary["stages"][name] = {**summary["stages"].get(name, {}), "status": "skipped (completed)"}
                self._write_summary(summary)
                self._report(name, handle, tokenizer)
                continue

            log.info("=== Stage %d: %s ===", planned.index, name)
            os.makedirs(stage.config.output_dir, exist_ok=True)
            summary["stages"][name] = {"status": "running", "fingerprint": fp,
                                       "output_dir": stage.config.output_dir}
            self._write_summary(summary)
            started = time.time()
            storage = cfg.ray.storage_path or os.path.join(os.path.dirname(stage.config.output_dir), "ray_train")
            self._track("stage_start", name, stage.config.report_to, plain(dataclasses.asdict(stage.config)))
            # Train run names follow the fingerprint: a rerun after a driver crash resumes the stage;
            # what the stage starts on the cluster (a judge's API actor, its budget) is named per run.
            context = StageContext(fingerprint=fp, train_callbacks=self.train_callbacks, run_id=run_id)
            try:
                if handle.is_rebuild:  # a resume after its merged copy was dropped: write it back
                    handle = restore_copy(handle, copies, manifest, summary)
                    if previous is not None:
                        previous.model, previous.model_path = handle, handle.path
                handle_in = handle
                result = checked_result(execute_stage(stage, handle, tokenizer, previous, context), name, handle,
                                        tokenizer)
                handle, tokenizer = self._hand_off(result, handle, tokenizer, fp, stage, store)
                passthrough = handle.weights is handle_in.weights and handle.path == handle_in.path
                result.model = handle  # previous_result of the next stage: what was handed on
            except BaseException as e:
                # An actor's error as it raised it, not Ray's `ray::Actor.method() (pid=…` wrapper.
                summary["stages"][name].update(status="failed", error=error_line(e, typed=True),
                                               seconds=round(time.time() - started, 2))
                summary["stopped_stage"] = name
                self._write_summary(summary)
                manifest.record(name, {"status": "failed", "fingerprint": fp})
                self._track("stage_end", name, "failed", {}, stage.config.output_dir)
                self._track("end", "FAILED")
                if not isinstance(e, FnsftError):
                    log.debug("Stage %s traceback:\n%s", name, traceback.format_exc())
                raise
            seconds = time.time() - started
            result.timings.setdefault("total_s", round(seconds, 2))
            result.model_path = handle.path
            adapter = None if passthrough else handle.adapter
            # The model is handed on: its checkpoints are no longer needed (bounded disk).
            # Only this run's Train runs: a shared storage path holds other runs' live ones.
            runs = own_train_runs(storage, stage, fp, shared=bool(cfg.ray.storage_path))
            freed = remove_stage_checkpoints(stage.config.output_dir, storage, name, runs)
            if not cfg.ray.storage_path and os.path.isdir(storage) and not os.listdir(storage):
                os.rmdir(storage)  # the run's own <output_dir>/ray_train, emptied
            manifest.record(name, {"status": "completed", "fingerprint": fp, "model_path": handle.path,
                                   "adapter_path": adapter, "passthrough": passthrough,
                                   "metrics": plain(result.metrics), "finished": time.time()})
            link = copies.add(name, stage.config.output_dir, handle.path, adapter, passthrough)
            summary["stages"][name].update(
                status="completed", metrics=plain(result.metrics), timings=result.timings,
                model_path=handle.path, adapter_path=adapter, artifacts=result.artifacts,
                seconds=round(seconds, 2), checkpoint_bytes_removed=freed)
            if link.model_path:  # this stage has its own copy: earlier LoRA copies can go
                forget_copies(manifest, summary, copies.drop_unneeded(keep=link.model_path), self._dirs())
            summary["stages"][name]["disk_bytes"] = dir_bytes(stage.config.output_dir)
            self._write_summary(summary)
            log.info("Stage %s completed in %.1fs; metrics: %s", name, seconds, short_metrics(result.metrics))
            self._report(name, handle, tokenizer)
            self._track("stage_end", name, "completed", result.metrics, stage.config.output_dir)
            previous = result

        if cfg.save_final_model:
            final = manifest.final_for(handle.fingerprint)
            if final:
                log.info("Final model %s is up to date", final)
            else:
                final = self._save_final(handle, tokenizer)
                manifest.record_final(handle.fingerprint, final)
            summary["final_model"] = final
            summary["final_model_bytes"] = dir_bytes(final)
            # final_model holds the last stage's weights: its LoRA copy is not needed either.
            forget_copies(manifest, summary, copies.drop_unneeded(keep=None), self._dirs())
            if cfg.cleanup_intermediate:
                cleanup_intermediate(manifest, summary, self._dirs(), final, cfg.output_dir)
        refresh_disk_bytes(summary, self._dirs())
        summary["disk_bytes"] = dir_bytes(cfg.output_dir)
        summary["total_seconds"] = round(time.time() - t0, 2)
        summary["status"] = "completed"
        self._write_summary(summary)
        self._track("end")
        log.info("Pipeline finished in %.1fs; summary: %s", time.time() - t0,
                 os.path.join(cfg.output_dir, SUMMARY))
        return summary

    # ------------------------------------------------------------------------------------
    def _hand_off(self, result: StageResult, handle, tokenizer, fp: str, stage, store):
        """Turn the stage's model into a handle in the object store (+ disk copy if asked).

        ``result.model`` may be ``None`` (the input goes on), a :class:`ModelHandle` (as built-in
        stages return) or a ``transformers`` model. A handle the stage loaded and changed in place
        (``model.parameters()`` edited, trained) goes on with its changed weights.
        """
        from fnsft.models.handle import ModelHandle
        from fnsft.models.weights import put_weights

        model = result.model
        tokenizer = result.tokenizer or tokenizer
        if model is None and handle.changed_in_place():
            log.info("Stage %s changed its input model in place; handing on the changed weights", stage.stage_name)
            model = handle
        if isinstance(model, ModelHandle) and model.changed_in_place():
            model = model.loaded_model()
        if model is None:
            new = dataclasses.replace(handle, fingerprint=fp)
        elif isinstance(model, ModelHandle):
            new = dataclasses.replace(model, fingerprint=fp)
        elif hasattr(model, "state_dict") and hasattr(model, "save_pretrained"):
            new = dataclasses.replace(handle, path=None, fingerprint=fp).with_weights(
                put_weights(model), stage=stage.stage_name, fingerprint=fp)
        else:
            raise StageError(f"stage {stage.stage_name}: StageResult.model must be a ModelHandle, "
                             f"a transformers model or None, got {type(model).__name__}")
        if stage.config.save_intermediate and not new.path:
            out = os.path.join(stage.config.output_dir, "model")
            src = model if not isinstance(model, (ModelHandle, type(None))) else new.load()
            src.save_pretrained(out, safe_serialization=True)
            tokenizer.save_pretrained(out)
            new = dataclasses.replace(new, path=out, source=out)  # the folder has its config + tokenizer
        return new, tokenizer

    def _base_tokenizer(self, handle):
        """The base model's tokenizer, with the default chat template where it has none (one log
        line), or a StageError when a stage needs a template and no fallback is configured."""
        from fnsft.models.loading import FALLBACK_ATTR, load_tokenizer

        cfg = self.config
        tok = load_tokenizer(handle.source, handle.trust_remote_code, fallback=cfg.default_chat_template)
        if getattr(tok, FALLBACK_ATTR, None):
            log.info("%s has no chat template; stages that format chats use the default %s template "
                     "(default_chat_template; a stage's chat_template overrides it)",
                     cfg.model_name_or_path, cfg.default_chat_template)
        elif not getattr(tok, "chat_template", None):
            for s in self.plan.selected:
                if not getattr(s.config, "chat_template", None) and s.stage.needs_chat_template():
                    raise StageError(f"stage_configs.{s.name}.chat_template: {cfg.model_name_or_path} has no chat "
                                     "template and default_chat_template is null; set one of them")
        return tok

    def _report_not_run(self, summary: dict, planned, done: Optional[dict]) -> None:
        """One log line and a summary entry for a stage that is disabled or not selected."""
        why = "disabled (enabled: false)" if not planned.config.enabled else "not selected (--stages)"
        then = (f"the next stage gets its saved output {done['model_path']}" if done
                else "the next stage gets the current model")
        log.info("Stage %s %s; not run: %s", planned.name, why, then)
        entry = summary["stages"].get(planned.name, {})
        if entry.get("status") not in ("completed", "skipped (completed)"):
            entry = {}
        summary["stages"][planned.name] = {**entry, "status": "not run: " + why.split(" (")[0]}
        self._write_summary(summary)

    def _save_final(self, handle, tokenizer) -> str:
        final = os.path.join(self.config.output_dir, "final_model")
        tmp = final + ".tmp"
        remove_inside(tmp, self.config.output_dir)
        model = handle.load()
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if not any(f.endswith(".safetensors") for f in os.listdir(tmp)):
            raise StageError(f"final model: no safetensors written to {tmp}")
        remove_inside(final, self.config.output_dir)
        os.replace(tmp, final)
        log.info("Final model written to %s", final)
        return final

    def _dirs(self) -> dict[str, str]:
        return {p.name: p.config.output_dir for p in self.plan.stages}

    def _write_summary(self, summary: dict) -> None:
        summary["stage_order"] = [s.name for s in self.plan.stages]
        write_json_atomic(os.path.join(self.config.output_dir, SUMMARY), redact(plain(summary)))
        self._report()

    def _track(self, event: str, *args) -> None:
        """Experiment tracking (``report_to: [mlflow, wandb]``): a parent run, a child run per stage
        (fnsft.report.tracking). A tracking problem is a warning; the run goes on."""
        try:
            if event == "start":
                from fnsft.report.tracking import start_tracking

                self._tracker = start_tracking(plain(dataclasses.asdict(self.config)),
                                               [p.stage.config.report_to for p in self.plan.selected],
                                               self.config.output_dir)
            elif getattr(self, "_tracker", None) is not None:
                getattr(self._tracker, event)(*args)
        except Exception as e:  # noqa: BLE001
            log.warning("tracking: %s failed (%s: %s)", event, type(e).__name__, e)

    def _report(self, column: Optional[str] = None, handle=None, tokenizer=None) -> None:
        """The run report (``report:``): with a model, its answers to the report's prompts as
        ``column``; always report.html and the model cards rewritten. Never fails the run."""
        if not self.config.report.enabled:
            return
        try:
            from fnsft.report import after_stage, write_report

            if column is None:
                write_report(self.config.output_dir)
            else:
                after_stage(self.config, column, handle.fingerprint, handle, tokenizer,
                            self.plan.stages[0].stage.config if self.plan.stages else None,
                            [s.name for s in self.plan.stages])
        except Exception as e:  # noqa: BLE001 - a report problem is a warning, the run goes on
            log.warning("report: not updated (%s: %s)", type(e).__name__, e)
            log.debug("report traceback", exc_info=True)

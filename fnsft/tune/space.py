"""The ``tune:`` section: its typed config, the search space, and which stages each trial runs.

YAML::

    tune:
      metric: sft/eval_loss            # <stage>/<metric the stage reports>
      mode: min                        # or max
      num_samples: 3                   # samples of the space (x every grid_search combination)
      search_space:                    # dotted config path -> one sampling rule
        stage_configs.sft.learning_rate: {loguniform: [1.0e-4, 1.0e-2]}
        stage_configs.sft.lora_r: {choice: [8, 16]}
      scheduler: fifo                  # or asha, or {type: asha, grace_period: 1, ...}
      max_concurrent_trials: 1
      stages: [sft]                    # stages each trial runs (default: from the first swept one)

Everything here is checked before Ray starts: every path is applied to the config with the
edges (and middle) of its range and with every listed value, and the result must pass the same
validation as a normal run, so a typo or a value the stage rejects fails ``--dry_run``.
Nothing in this module imports Ray.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from fnsft.config.loading import set_path
from fnsft.config.parse import did_you_mean, parse_dataclass
from fnsft.errors import ConfigError

# Sampling rules: name -> what its argument is.
DOMAINS = {
    "loguniform": "[low, high], 0 < low < high: a float sampled log-uniformly",
    "uniform": "[low, high], low < high: a float sampled uniformly",
    "randint": "[low, high], low < high: an integer in [low, high) (high excluded)",
    "choice": "[a, b, ...]: one of the values, at random",
    "grid_search": "[a, b, ...]: every value, each in its own trial(s)",
}
# Keys a trial cannot change: they decide where and what the sweep itself runs.
FIXED_KEYS = ("output_dir", "stages", "tune", "plugins", "ray")


@dataclass
class SchedulerConfig:
    type: Literal["fifo", "asha"] = field(
        default="fifo", metadata={"help": "fifo: run every trial to the end; asha: stop weak trials early."})
    time_attr: str = field(
        default="training_iteration",
        metadata={"help": "ASHA's clock: training_iteration counts the reports a trial made (one per "
                  "checkpoint the swept stage saves, plus one at the end)."})
    max_t: int = field(default=100, metadata={"help": "ASHA: no trial runs past this time_attr."})
    grace_period: int = field(default=1, metadata={"help": "ASHA: no trial is stopped before this time_attr."})
    reduction_factor: float = field(
        default=2, metadata={"help": "ASHA: keep the best 1/reduction_factor at each rung."})

    def __post_init__(self):
        if self.type == "asha":
            if self.grace_period < 1:
                raise ConfigError(f"tune.scheduler.grace_period: must be >= 1 (got {self.grace_period})")
            if self.max_t < self.grace_period:
                raise ConfigError(f"tune.scheduler.max_t: must be >= grace_period ({self.grace_period}), "
                                  f"got {self.max_t}")
            if self.reduction_factor <= 1:
                raise ConfigError(f"tune.scheduler.reduction_factor: must be > 1 (got {self.reduction_factor})")


@dataclass
class SweepConfig:
    """The ``tune:`` section of the pipeline YAML (used by ``fnsft-pipeline --tune``)."""

    metric: str = field(metadata={"help": "What to optimize: <stage>/<metric>, e.g. sft/eval_loss."})
    search_space: dict[str, Any] = field(
        metadata={"help": "Config path -> rule, e.g. stage_configs.sft.learning_rate: {loguniform: [1e-4, 1e-2]}."})
    mode: Literal["min", "max"] = field(default="min", metadata={"help": "Minimize or maximize the metric."})
    num_samples: int = field(
        default=1, metadata={"help": "Samples of the space; grid_search values multiply it."})
    scheduler: SchedulerConfig = field(
        default_factory=SchedulerConfig, metadata={"help": "fifo or asha (or a mapping with type: asha)."})
    max_concurrent_trials: int = field(
        default=1, metadata={"help": "Trials running at once (each runs its stages' Train jobs)."})
    stages: Optional[list[str]] = field(
        default=None,
        metadata={"help": "Stages each trial runs; earlier stages run once before the sweep and every "
                  "trial starts from their saved model. Default: from the first swept stage on."})
    cpus_per_trial: float = field(
        default=0.01,
        metadata={"help": "CPUs the trial itself holds; its Train workers ask for their own."})
    seed: Optional[int] = field(default=None, metadata={"help": "Seed of the random search (repeatable samples)."})
    time_budget_s: Optional[float] = field(
        default=None, metadata={"help": "Stop starting new trials after this many seconds."})

    def __post_init__(self):
        for name in ("num_samples", "max_concurrent_trials"):
            if getattr(self, name) < 1:
                raise ConfigError(f"tune.{name}: must be >= 1 (got {getattr(self, name)})")
        if self.cpus_per_trial < 0:
            raise ConfigError(f"tune.cpus_per_trial: must be >= 0 (got {self.cpus_per_trial})")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ConfigError(f"tune.time_budget_s: must be > 0 (got {self.time_budget_s})")

    @property
    def metric_stage(self) -> str:
        return self.metric.split("/", 1)[0]


@dataclass
class SearchParam:
    """One swept config path and its sampling rule."""

    path: str  # stage_configs.sft.learning_rate
    kind: str  # a key of DOMAINS
    args: list[Any]

    @property
    def parts(self) -> list[str]:
        return self.path.split(".")

    @property
    def stage(self) -> Optional[str]:
        """The stage whose section this path is in (None: a pipeline-wide key)."""
        parts = self.parts
        return parts[1] if parts[0] == "stage_configs" and len(parts) > 2 else None

    def to_tune(self):
        from ray import tune

        if self.kind == "grid_search":
            return tune.grid_search(list(self.args))
        if self.kind == "choice":
            return tune.choice(list(self.args))
        return getattr(tune, self.kind)(*self.args)

    def candidates(self) -> list[Any]:
        """Values that stand for the whole rule when the config is validated."""
        if self.kind in ("choice", "grid_search"):
            return list(self.args)
        low, high = self.args
        if self.kind == "randint":
            return sorted({low, high - 1})
        if self.kind == "loguniform":
            return [low, math.sqrt(low * high), high]
        return [low, (low + high) / 2, high]

    def describe(self) -> str:
        return f"{self.path}: {self.kind}{self.args}"


def _number(value: Any, where: str, integer: bool = False) -> float:
    if isinstance(value, str):  # YAML reads 1e-4 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if integer:
        if float(value) != int(value):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    return float(value)


def parse_param(path: str, rule: Any) -> SearchParam:
    where = f"tune.search_space.{path}"
    example = "e.g. {loguniform: [1.0e-5, 1.0e-3]} or {choice: [8, 16]}"
    if not isinstance(path, str) or not path or any(not p for p in path.split(".")):
        raise ConfigError(f"tune.search_space: {path!r} is not a dotted config path "
                          "(e.g. stage_configs.sft.learning_rate)")
    if not isinstance(rule, dict) or len(rule) != 1:
        raise ConfigError(f"{where}: expected one sampling rule, {example}; got {rule!r}")
    kind, args = next(iter(rule.items()))
    if kind not in DOMAINS:
        raise ConfigError(f"{where}: unknown rule '{kind}'{did_you_mean(kind, DOMAINS)}; "
                          f"rules: {', '.join(DOMAINS)}")
    if not isinstance(args, (list, tuple)) or not args:
        raise ConfigError(f"{where}.{kind}: expected {DOMAINS[kind]}; got {args!r}")
    args = list(args)
    if kind in ("choice", "grid_search"):
        return SearchParam(path, kind, args)
    if len(args) != 2:
        raise ConfigError(f"{where}.{kind}: expected {DOMAINS[kind]}; got {args!r}")
    low, high = (_number(a, f"{where}.{kind}", integer=kind == "randint") for a in args)
    if not low < high:
        raise ConfigError(f"{where}.{kind}: low must be below high (got [{args[0]}, {args[1]}])")
    if kind == "loguniform" and low <= 0:
        raise ConfigError(f"{where}.loguniform: low must be > 0 on a log scale (got {args[0]})")
    return SearchParam(path, kind, [low, high])


@dataclass
class Sweep:
    """A validated sweep: the config, the parameters, and the stage split."""

    config: SweepConfig
    params: list[SearchParam]
    shared_stages: list[str]  # run once, before the trials, in the pipeline's output_dir
    trial_stages: list[str]  # run by every trial, in its own folder

    @property
    def num_trials(self) -> int:
        grid = 1
        for p in self.params:
            if p.kind == "grid_search":
                grid *= len(p.args)
        return grid * self.config.num_samples

    def describe(self) -> str:
        c = self.config
        sched = c.scheduler.type if c.scheduler.type == "fifo" else (
            f"asha (grace_period={c.scheduler.grace_period}, max_t={c.scheduler.max_t}, "
            f"reduction_factor={c.scheduler.reduction_factor:g}, time_attr={c.scheduler.time_attr})")
        lines = [
            "fnsft sweep",
            f"  metric:        {c.metric} ({c.mode})",
            f"  trials:        {self.num_trials} ({c.max_concurrent_trials} at a time), scheduler: {sched}",
            f"  shared stages: {', '.join(self.shared_stages) or 'none'}"
            + (" (run once, or reused when already finished)" if self.shared_stages else ""),
            f"  trial stages:  {', '.join(self.trial_stages)}",
            "  search space:",
        ]
        lines += [f"    {p.describe()}" for p in self.params]
        return "\n".join(lines)


def parse_sweep(plan) -> Sweep:
    """Read and check ``plan.config.tune`` against the plan (no Ray, no data loading)."""
    data = plan.config.tune
    if data is None:
        raise ConfigError("tune: missing; --tune needs a tune: section with metric and search_space "
                          "(see configs/tune_sft_lr.yaml)")
    if not isinstance(data, dict):
        raise ConfigError(f"tune: expected a mapping (metric, search_space, ...), got {data!r}")
    data = dict(data)
    if isinstance(data.get("scheduler"), str):  # `scheduler: asha` shorthand
        data["scheduler"] = {"type": data["scheduler"].lower()}
    cfg = parse_dataclass(SweepConfig, data, "tune")
    if not cfg.search_space:
        raise ConfigError("tune.search_space: empty; name at least one config path to sweep")
    params = [parse_param(path, rule) for path, rule in cfg.search_space.items()]

    selected = [s.name for s in plan.selected]
    all_stages = [s.name for s in plan.stages]
    for p in params:
        if p.parts[0] in FIXED_KEYS:
            raise ConfigError(f"tune.search_space.{p.path}: '{p.parts[0]}' cannot be swept "
                              f"(fixed for the whole sweep: {', '.join(FIXED_KEYS)})")
        if p.stage is None and p.parts[0] == "stage_configs":
            raise ConfigError(f"tune.search_space.{p.path}: name a key inside a stage, e.g. "
                              "stage_configs.sft.learning_rate")
        if p.stage is not None:
            if p.stage not in all_stages:
                raise ConfigError(f"tune.search_space.{p.path}: no stage '{p.stage}' in stages"
                                  f"{did_you_mean(p.stage, all_stages)}; stages: {', '.join(all_stages)}")
            if p.stage not in selected:
                raise ConfigError(f"tune.search_space.{p.path}: stage '{p.stage}' is disabled or not "
                                  "selected; a sweep cannot change a stage that does not run")
            if p.parts[2] == "output_dir":
                raise ConfigError(f"tune.search_space.{p.path}: output folders are set per trial")

    if "/" not in cfg.metric or not all(cfg.metric.split("/", 1)):
        raise ConfigError(f"tune.metric: expected <stage>/<metric>, e.g. {selected[-1]}/eval_loss; "
                          f"got {cfg.metric!r}")
    if cfg.metric_stage not in selected:
        raise ConfigError(f"tune.metric: '{cfg.metric_stage}' is not a stage that runs"
                          f"{did_you_mean(cfg.metric_stage, selected)}; stages: {', '.join(selected)}")

    trial = _trial_stages(cfg, params, selected)
    shared = selected[: selected.index(trial[0])]
    return Sweep(config=cfg, params=params, shared_stages=shared, trial_stages=trial)


def _trial_stages(cfg: SweepConfig, params: list[SearchParam], selected: list[str]) -> list[str]:
    swept = {p.stage for p in params}
    pipeline_wide = [p.path for p in params if p.stage is None]
    # A pipeline-wide key (model_name_or_path, resources...) can change every stage.
    first_changed = 0 if pipeline_wide else min(selected.index(s) for s in swept)
    if selected.index(cfg.metric_stage) < first_changed:
        raise ConfigError(f"tune.metric: {cfg.metric} comes from '{cfg.metric_stage}', which runs before "
                          f"the first swept stage '{selected[first_changed]}': every trial would report "
                          "the same value")
    if cfg.stages is None:
        return selected[first_changed:]

    if not cfg.stages:
        raise ConfigError("tune.stages: empty; list the stages each trial runs, or leave it out")
    for s in cfg.stages:
        if s not in selected:
            raise ConfigError(f"tune.stages: '{s}' is not a stage that runs{did_you_mean(s, selected)}; "
                              f"stages: {', '.join(selected)}")
    trial = [s for s in selected if s in cfg.stages]
    first, last = selected.index(trial[0]), selected.index(trial[-1])
    if trial != selected[first:last + 1]:
        raise ConfigError(f"tune.stages: {', '.join(cfg.stages)} must be consecutive stages of "
                          f"{', '.join(selected)}")
    if pipeline_wide and first > 0:
        raise ConfigError(f"tune.stages: the sweep changes {pipeline_wide[0]}, which applies to every "
                          f"stage, so every trial must run from '{selected[0]}'")
    for s in sorted(swept - {None}):
        if s not in trial:
            raise ConfigError(f"tune.stages: the search space changes stage '{s}', so each trial must "
                              f"run it; add it to tune.stages")
    if cfg.metric_stage not in trial:
        raise ConfigError(f"tune.stages: the metric {cfg.metric} comes from '{cfg.metric_stage}'; "
                          "add it to tune.stages")
    return trial


# Trial configs -----------------------------------------------------------------------------
def base_config(plan) -> dict:
    """The run's config (YAML + overrides) without ``tune:``, with plugin files made absolute."""
    raw = copy.deepcopy(plan.raw)
    raw.pop("tune", None)
    config_dir = os.path.dirname(os.path.abspath(plan.config_path)) if plan.config_path else os.getcwd()
    plugins = raw.get("plugins") or []
    if isinstance(plugins, list):
        out = []
        for spec in plugins:
            if isinstance(spec, str) and (spec.endswith(".py") or os.sep in spec or spec.startswith(".")) \
                    and not os.path.isabs(spec):
                here = os.path.join(config_dir, spec)
                spec = os.path.abspath(here if os.path.isfile(here) else spec)
            out.append(spec)
        raw["plugins"] = out
    return raw


def with_values(raw: dict, values: dict[str, Any]) -> dict:
    """A copy of ``raw`` with each dotted path set (the same as ``--set path=value``)."""
    out = copy.deepcopy(raw)
    for path, value in values.items():
        set_path(out, path.split("."), value, f"tune.search_space.{path}")
    return out


def check_candidates(plan, sweep: Sweep) -> None:
    """Build the plan with each parameter's edge and listed values: errors name the path."""
    from fnsft.pipeline.plan import build_plan

    raw = base_config(plan)
    select = sweep.shared_stages + sweep.trial_stages
    for p in sweep.params:
        for value in p.candidates():
            try:
                build_plan(data=with_values(raw, {p.path: value}), select=select)
            except ConfigError as e:
                msg = str(e).splitlines()[0]
                raise ConfigError(f"tune.search_space.{p.path}: {p.kind} value {value!r} is rejected: {msg}") \
                    from None

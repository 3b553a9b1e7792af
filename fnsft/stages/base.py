"""The stage plugin API: ``StageConfig``, ``StageResult`` and ``BaseStage``.

A stage is one step of the pipeline (SFT, DPO, RL, a user's own). Its config is a stdlib
dataclass that subclasses :class:`StageConfig`; its YAML lives under ``stage_configs.<name>``.
The base fields are keyword-only, so a subclass may declare required fields with no default
(``my_parameter: str = field(metadata={"help": ...})``), exactly as the guide shows.
"""

from __future__ import annotations

import abc
import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Optional

if TYPE_CHECKING:  # pragma: no cover
    from fnsft.models.handle import ModelHandle


@dataclass(kw_only=True)
class StageConfig:
    """Fields every stage has. ``stage_name`` and ``output_dir`` are set by the pipeline."""

    stage_name: str = field(default="", metadata={"help": "Set by the pipeline: the stage's name."})
    output_dir: str = field(
        default="", metadata={"help": "Set by the pipeline: <output_dir>/<NN>_<stage>."}
    )
    enabled: bool = field(default=True, metadata={"help": "Run this stage (false skips it)."})
    save_intermediate: bool = field(
        default=True,
        metadata={"help": "Write this stage's model to its output_dir (needed to resume after it)."},
    )
    logging_steps: int = field(default=5, metadata={"help": "Log metrics every N optimizer steps."})
    report_to: list[Literal["tensorboard", "wandb", "mlflow", "none"]] = field(
        default_factory=lambda: ["tensorboard"],
        metadata={"help": "Metric sinks, as in TrainingArguments: tensorboard, wandb, mlflow, none. mlflow/wandb: "
                          "one run per stage under the pipeline's run (docs/report.md); pip install 'fnsft[tracking]'."},
    )
    seed: int = field(default=42, metadata={"help": "Random seed for this stage."})

    def __post_init__(self) -> None:
        import importlib.util

        from fnsft.errors import ConfigError

        for sink in ("mlflow", "wandb"):  # checked here so a run never dies at its first stage for it
            if sink in self.report_to and importlib.util.find_spec(sink) is None:
                raise ConfigError(f"stage_configs.{self.stage_name or '<stage>'}.report_to: {sink} is not installed "
                                  f"(pip install 'fnsft[tracking]')")


@dataclass
class StageResult:
    """What a stage hands to the next one.

    ``model`` is a :class:`fnsft.models.handle.ModelHandle` (weights in Ray's object store and/or
    a directory), or a ``transformers`` model, which the pipeline turns into a handle. ``None``
    means "unchanged": the next stage gets this stage's input model (with whatever the stage did
    to it in place). ``success=False`` stops the pipeline with ``message``. A stage may also
    return ``previous_result`` as it is, or ``None`` (the input goes on, with a warning).
    """

    model: Any = None
    tokenizer: Any = None
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    model_path: Optional[str] = None
    timings: dict[str, float] = field(default_factory=dict)
    stage_name: str = ""
    success: bool = True
    message: str = ""  # why, when success is False


@dataclass(frozen=True)
class StageContext:
    """What the pipeline tells a stage about this run: ``execute(..., context=StageContext(...))``.

    ``fingerprint``: the stage's resume fingerprint (its config, input model and input files, as
    the manifest records it). Train run names follow it, so a rerun after a driver crash finds
    the stage's checkpoints. ``train_callbacks``: functions taking a Train job's name and
    returning extra ``ray.train.UserCallback`` for it (a Tune trial forwards reports to Tune).
    ``run_id``: the pipeline run executing the stage (None when a stage runs on its own): what a
    stage starts for the run on the cluster (a judge's API actor, its budget) is named after it.
    """

    fingerprint: Optional[str] = None
    train_callbacks: tuple[Callable[[str], list], ...] = ()
    run_id: Optional[str] = None


class BaseStage(abc.ABC):
    """Base class for all stages.

    Subclasses implement :attr:`stage_name`, :meth:`validate_config` (cheap checks, run before Ray
    starts; raise :class:`fnsft.errors.ConfigError`) and :meth:`execute`.

    ``config_class`` names the stage's config dataclass. When it is not set, the pipeline uses the
    ``StageConfig`` subclass defined next to the stage (``<Stage>Config`` or the only one in its
    module).
    """

    config_class: Optional[type] = None
    def __init__(self, config: StageConfig, pipeline_config: Any = None):
        self.config = config
        self.pipeline_config = pipeline_config

    @property
    @abc.abstractmethod
    def stage_name(self) -> str:
        """The name used in ``stages:`` and ``stage_configs:``."""

    def validate_config(self) -> None:
        """Check the config before anything heavy starts. Raise ``ConfigError`` on bad input.

        Checks only: the config is left as parsed (resolve defaults in the config class), and what
        the plan needs from the data (its format, columns) is read again when asked rather than
        left on the stage (a cache, if any, is a field made in ``__init__``), so a stage plans
        the same validated or not.
        """

    def describe_plan(self) -> dict[str, Any]:
        """What ``--dry_run`` prints for this stage (data, format, key settings)."""
        return {}

    @abc.abstractmethod
    def execute(
        self,
        model: "ModelHandle",
        tokenizer: Any,
        previous_result: Optional[StageResult] = None,
        *,
        context: Optional[StageContext] = None,
    ) -> StageResult:
        """Run the stage on ``model`` and return the result for the next stage.

        ``context`` (optional): the pipeline's :class:`StageContext` for this run. A stage whose
        ``execute`` takes no ``context`` keyword is called without it (:func:`execute_stage`).

        ``model`` behaves as the ``transformers`` model it stands for: ``model.parameters()``,
        ``model.generate(...)``, ``model.save_pretrained(...)`` load it on first use (``model.load()``
        gives a fresh copy). ``tokenizer`` is a ``transformers`` tokenizer.
        """

    def needs_chat_template(self) -> bool:
        """Whether this stage formats chats with the tokenizer's chat template.

        Default: the config asks for it (``apply_chat_template`` / ``use_chat_template``). A stage
        whose data may hold conversations extends this with what its data says (SFT). Used to fail
        before Ray when a model has no template and no fallback is configured (top-level
        ``default_chat_template: null``).
        """
        c = self.config
        return bool(getattr(c, "apply_chat_template", False) or getattr(c, "use_chat_template", False))

    # Helpers stages share -------------------------------------------------------------
    def fingerprint_fields(self) -> dict[str, Any]:
        """The config values that decide this stage's output (used for resume)."""
        skip = {"stage_name", "output_dir", "enabled", "save_intermediate", "logging_steps",
                "report_to"}
        return {
            f.name: getattr(self.config, f.name)
            for f in dataclasses.fields(self.config)
            if f.name not in skip
        }


def execute_stage(stage: BaseStage, model: Any, tokenizer: Any, previous_result: Optional[StageResult],
                  context: StageContext) -> Any:
    """``stage.execute(...)`` with ``context`` when its ``execute`` accepts the keyword.

    Stages written against the three-argument ``execute(model, tokenizer, previous_result)``
    (plugins, examples) keep working unchanged.
    """
    params = inspect.signature(stage.execute).parameters
    if "context" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return stage.execute(model, tokenizer, previous_result, context=context)
    return stage.execute(model, tokenizer, previous_result)

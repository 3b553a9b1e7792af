"""The pipeline config: the top level of the YAML file.

Stage sections (``stage_configs.<stage>``) are parsed by each stage's own dataclass; this file
holds what the whole pipeline shares: the model, the output folder, Ray and its resources, and
DeepSpeed. ``resources`` and ``deepspeed`` can be overridden per stage
(``stage_configs.sft.resources.num_workers: 2``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional


@dataclass
class RayConfig:
    address: Optional[str] = field(
        default=None,
        metadata={"help": "Ray cluster to join ('auto', 'ray://host:10001'); default: "
                  "RAY_ADDRESS, else start a local Ray in-process."},
    )
    num_cpus: Optional[int] = field(
        default=None, metadata={"help": "Logical CPUs for a local Ray (default: this machine's cores plus what the "
                                        "RL role actors hold: they take turns with the learner)."})
    num_gpus: Optional[int] = field(
        default=None, metadata={"help": "GPUs for a local Ray (default: all)."})
    include_dashboard: bool = field(
        default=False, metadata={"help": "Start Ray's dashboard with a local Ray."})
    dashboard_host: str = field(
        default="127.0.0.1", metadata={"help": "Interface for the dashboard (127.0.0.1: local only)."})
    namespace: str = field(default="fnsft", metadata={"help": "Ray namespace."})
    storage_path: Optional[str] = field(
        default=None,
        metadata={"help": "Where Ray Train keeps checkpoints (a path all nodes can reach on a "
                  "cluster: NFS or s3://...). Default: <output_dir>/ray_train."},
    )


@dataclass
class ResourcesConfig:
    num_workers: int = field(default=1, metadata={"help": "Ray Train workers per training stage."})
    use_gpu: Optional[bool] = field(
        default=None, metadata={"help": "Train on GPUs (default: when the cluster has them)."})
    cpus_per_worker: Optional[float] = field(
        default=None, metadata={"help": "CPUs per Train worker, also its torch threads (default: a node's CPUs "
                                        "split between the workers, after the role actors' share)."})
    gpus_per_worker: float = field(
        default=1.0, metadata={"help": "GPUs per Train worker (with use_gpu)."})
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = field(
        default="PACK", metadata={"help": "How Ray places the workers of one stage."})
    max_failures: int = field(
        default=1,
        metadata={"help": "Restart the workers from the last checkpoint this many times after "
                  "a worker dies (-1: forever)."},
    )


@dataclass
class DeepSpeedConfig:
    enabled: bool = field(default=True, metadata={"help": "Use DeepSpeed ZeRO in training stages."})
    zero_stage: Literal[0, 1, 2, 3] = field(default=2, metadata={"help": "ZeRO stage 0-3."})
    offload_optimizer: bool = field(
        default=False, metadata={"help": "ZeRO-Offload: optimizer states in CPU memory."})
    offload_param: bool = field(
        default=False, metadata={"help": "ZeRO-3 parameter offload to CPU memory."})
    config_file: Optional[str] = field(
        default=None,
        metadata={"help": "Your own DeepSpeed JSON; its keys override the generated config."},
    )
    on_single_worker: bool = field(
        default=False,
        metadata={"help": "Use DeepSpeed even on one worker without offload (ZeRO partitions across workers; "
                          "alone it only adds copies: +25-30% step time measured on CPU). Off: plain torch there."},
    )


@dataclass
class ReportConfig:
    """``report:`` the run report (``<output_dir>/report.html``) and its side-by-side answers."""

    enabled: bool = field(
        default=True, metadata={"help": "Write <output_dir>/report.html after each stage and at the end."})
    prompts: list[str] = field(
        default_factory=list,
        metadata={"help": "Prompts every stage's model answers (greedy) for the side-by-side view; "
                          "default: a few held-out prompts of the first stage's data."})
    num_prompts: int = field(
        default=4, metadata={"help": "How many data prompts to use when report.prompts is empty (0: none)."})
    max_new_tokens: int = field(
        default=48, metadata={"help": "Answer length limit (greedy; keeps the report's cost small)."})
    judge: Optional[dict[str, Any]] = field(
        default=None,
        metadata={"help": "A judge (as the RLAIF stage configures one) that compares each stage's answers with "
                          "the previous stage's, both orders: win rates in the report. Needs fnsft.judges."})


@dataclass
class PipelineConfig:
    model_name_or_path: str = field(
        default="",  # required (checked in validation, as TRL/Axolotl do): never a silent default model
        metadata={"help": "Required. A local Hugging Face directory, a hub id, or a built-in model: "
                  "builtin:smollm2-135m-instruct, builtin:tiny-llama."},
    )
    torch_dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(
        default="auto",
        metadata={"help": "Compute dtype; auto = bfloat16 on GPUs that support it and on AMX-BF16 CPUs for models at least 256 wide, else float32."},
    )
    default_chat_template: Optional[Literal["chatml"]] = field(
        default="chatml",
        metadata={"help": "Chat template for a model whose tokenizer has none (e.g. DialoGPT), when a stage "
                  "formats chats: chatml (plain-text ChatML, no new tokens), or null: no fallback (such a "
                  "stage fails before Ray). A stage's chat_template overrides it."},
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow model code from the model's repository."})
    output_dir: str = field(
        default="./outputs/pipeline_run", metadata={"help": "Where everything is written."})
    stages: list[str] = field(
        default_factory=lambda: ["sft"], metadata={"help": "Stages to run, in order."})
    stage_configs: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "One section per stage, keyed by stage name."})
    plugins: list[str] = field(
        default_factory=list,
        metadata={"help": "Modules (my_pkg.stages) or files (./my_stage.py) to import first; "
                  "they call Pipeline.register_stage."},
    )
    ray: RayConfig = field(default_factory=RayConfig, metadata={"help": "Ray connection."})
    resources: ResourcesConfig = field(
        default_factory=ResourcesConfig, metadata={"help": "Train workers (per-stage override)."})
    deepspeed: DeepSpeedConfig = field(
        default_factory=DeepSpeedConfig, metadata={"help": "DeepSpeed (per-stage override)."})
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = field(
        default="INFO", metadata={"help": "Console and log-file level."})
    save_final_model: bool = field(
        default=False, metadata={"help": "Write <output_dir>/final_model (safetensors)."})
    cleanup_intermediate: bool = field(
        default=False,
        metadata={"help": "Remove the stages' model copies once final_model is written."},
    )
    report: ReportConfig = field(
        default_factory=ReportConfig, metadata={"help": "The run report: report.html, answers per stage."})
    tune: Optional[dict[str, Any]] = field(
        default=None, metadata={"help": "Ray Tune sweep (used by --tune)."})

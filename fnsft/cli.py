"""Command-line entry points: ``fnsft-pipeline`` and ``fnsft-train`` (thin wrappers)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional

from fnsft.errors import FnsftError
from fnsft.utils.one_line import error_line, innermost
from fnsft.utils.stop import RunStopped


def _pipeline_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fnsft-pipeline",
        description="Run an LLM post-training pipeline (SFT, DPO, RL, ...) from one YAML file.")
    p.add_argument("--config", required=True, help="Pipeline YAML file.")
    p.add_argument("--stages", nargs="+", metavar="STAGE", help="Run only these stages (in config order).")
    p.add_argument("--model_name_or_path", help="Override model_name_or_path.")
    p.add_argument("--output_dir", help="Override output_dir.")
    p.add_argument("--dry_run", action="store_true", help="Validate everything and print the plan; run nothing.")
    p.add_argument("--log_level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="Log level.")
    p.add_argument("--save_final_model", action="store_true", default=None, help="Write <output_dir>/final_model.")
    p.add_argument("--cleanup_intermediate", action="store_true", default=None,
                   help="Remove the stages' model copies once final_model is written.")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="Override any config key, e.g. --set stage_configs.sft.learning_rate=1e-4 (repeatable).")
    p.add_argument("--tune", action="store_true", help="Run the config's tune: sweep with Ray Tune.")
    return p


def _cli_overrides(args) -> list[str]:
    out = []
    for key in ("model_name_or_path", "output_dir", "log_level"):
        value = getattr(args, key)
        if value is not None:
            out.append(f"{key}={value}")
    for key in ("save_final_model", "cleanup_intermediate"):
        if getattr(args, key):
            out.append(f"{key}=true")
    return out


def _log_traceback(what: str, output_dir: Optional[str]) -> Optional[str]:
    """The traceback into this run's ``pipeline_training.log`` (once the run has set it up),
    never the console; returns that file, or ``None`` when the run has none yet (an error while
    reading the config or the data: there is no log to point at)."""
    from fnsft.pipeline.logs import LOG_FILE

    if not output_dir:
        return None
    path = os.path.abspath(os.path.join(output_dir, LOG_FILE))
    log = logging.getLogger("fnsft")
    for handler in log.handlers:
        if isinstance(handler, logging.FileHandler) and handler.baseFilename == path:
            handler.handle(log.makeRecord(log.name, logging.ERROR, __file__, 0, what, None, sys.exc_info()))
            return path
    return None


def _fail(e: BaseException) -> int:
    print(f"fnsft: error: {error_line(e)}", file=sys.stderr)
    return getattr(innermost(e), "exit_code", getattr(e, "exit_code", 1))


def _crash(e: BaseException, what: str, output_dir: Optional[str], prog: str = "fnsft") -> int:
    """A crash (not an fnsft error): one line here, the traceback in the run's log if it has one."""
    logged = _log_traceback(what, output_dir)
    print(f"{prog}: error: {error_line(e)}" + (f" (traceback in {logged})" if logged else ""), file=sys.stderr)
    return 1


def pipeline_main(argv: Optional[list[str]] = None) -> int:
    args = _pipeline_parser().parse_args(argv)
    output_dir = None  # known once the config is read: where the run's log is
    try:
        from fnsft.pipeline import Pipeline

        overrides = list(args.overrides) + _cli_overrides(args)
        # --set values go first so that explicit flags win; both are validated together.
        pipeline = Pipeline.from_yaml(args.config, overrides=overrides, stages=args.stages)
        output_dir = pipeline.plan.config.output_dir
        if pipeline.plan.config.tune is not None and not args.tune:
            from fnsft.tune.sweep import validate_sweep

            # A typo in tune: fails now, not at the first --tune; checked as --tune would run it
            # (every enabled stage), whatever --stages this run selects.
            full = Pipeline.from_yaml(args.config, overrides=overrides) if args.stages else pipeline
            validate_sweep(full.plan)
        if args.tune:
            from fnsft.tune.sweep import run_sweep, validate_sweep

            sweep = validate_sweep(pipeline.plan)
            if args.dry_run:
                print(pipeline.describe())
                if hasattr(sweep, "describe"):
                    print(sweep.describe())
                print("tune: search space OK")
                return 0
            run_sweep(pipeline.plan, args.config, overrides)
            return 0
        if args.dry_run:
            print(pipeline.describe())
            print("dry run: configuration is valid; nothing was run")
            return 0
        pipeline.run()
        return 0
    except FnsftError as e:
        return _fail(e)
    except KeyboardInterrupt:
        print("fnsft: interrupted; rerun the same command to resume from the last finished stage",
              file=sys.stderr)
        return 130
    except RunStopped as e:  # SIGTERM: `ray job stop`, a scheduler
        print(f"fnsft: {e}; rerun the same command to resume from the last finished stage",
              file=sys.stderr)
        return e.exit_code
    except Exception as e:  # a stage crashed: one line here, the traceback in the log file
        return _crash(e, "Pipeline failed", output_dir)


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fnsft-train", description="Supervised fine-tuning (an SFT-only fnsft pipeline).")
    p.add_argument("--model_name_or_path", required=True)
    p.add_argument("--dataset_name_or_path", required=True)
    p.add_argument("--output_dir", default="./outputs/sft")
    p.add_argument("--dataset_format", default=None)
    p.add_argument("--num_train_epochs", type=float, default=None)
    p.add_argument("--max_steps", type=int, default=None)
    p.add_argument("--learning_rate", type=float, default=None)
    p.add_argument("--per_device_train_batch_size", type=int, default=None)
    p.add_argument("--gradient_accumulation_steps", type=int, default=None)
    p.add_argument("--max_length", "--max_seq_length", dest="max_length", type=int, default=None)
    p.add_argument("--eval_split", type=float, default=None)
    p.add_argument("--use_peft", "--use_lora", dest="use_peft", action="store_true", default=None)
    p.add_argument("--lora_r", type=int, default=None)
    p.add_argument("--lora_alpha", type=int, default=None)
    p.add_argument("--lora_dropout", type=float, default=None)
    p.add_argument("--load_in_4bit", "--use_qlora", dest="load_in_4bit", action="store_true", default=None)
    p.add_argument("--load_in_8bit", action="store_true", default=None)
    p.add_argument("--num_workers", type=int, default=None)
    p.add_argument("--zero_stage", type=int, default=None)
    p.add_argument("--torch_dtype", default=None)
    p.add_argument("--save_final_model", action="store_true")
    p.add_argument("--log_level", default="INFO")
    p.add_argument("--dry_run", action="store_true")
    return p


def train_main(argv: Optional[list[str]] = None) -> int:
    args = _train_parser().parse_args(argv)
    sft = {"dataset_name_or_path": args.dataset_name_or_path}
    for key in ("dataset_format", "num_train_epochs", "max_steps", "learning_rate",
                "per_device_train_batch_size", "gradient_accumulation_steps", "max_length",
                "eval_split", "use_peft", "lora_r", "lora_alpha", "lora_dropout",
                "load_in_4bit", "load_in_8bit"):
        value = getattr(args, key)
        if value is not None:
            sft[key] = value
    if args.load_in_4bit or args.load_in_8bit:
        sft["use_peft"] = True
    data = {
        "model_name_or_path": args.model_name_or_path, "output_dir": args.output_dir,
        "stages": ["sft"], "stage_configs": {"sft": sft}, "log_level": args.log_level,
        "save_final_model": args.save_final_model,
    }
    if args.torch_dtype:
        data["torch_dtype"] = args.torch_dtype
    if args.num_workers is not None:
        data["resources"] = {"num_workers": args.num_workers}
    if args.zero_stage is not None:
        data["deepspeed"] = {"zero_stage": args.zero_stage}
    try:
        from fnsft.pipeline import Pipeline

        pipeline = Pipeline.from_dict(data)
        if args.dry_run:
            print(pipeline.describe())
            return 0
        pipeline.run()
        return 0
    except FnsftError as e:
        return _fail(e)
    except KeyboardInterrupt:
        print("fnsft-train: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except RunStopped as e:
        print(f"fnsft-train: {e}; rerun the same command to resume", file=sys.stderr)
        return e.exit_code
    except Exception as e:
        return _crash(e, "Training failed", args.output_dir, prog="fnsft-train")


def main() -> None:  # python -m fnsft.cli
    sys.exit(pipeline_main())


if __name__ == "__main__":
    main()

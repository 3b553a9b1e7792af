"""fnsft's SFT stage in float32 vs bfloat16 compute on this machine: useful tokens/s.

    python benchmarks/sft_dtype.py        # SmolLM2-135M, ~5 min on 2 quiet cores -> results/sft_dtype.json
    python benchmarks/sft_dtype.py --full # full fine-tune (float32 master weights, bf16 autocast) -> sft_dtype_full.json

The settings of ``sft_throughput.py``'s ``equal`` comparison (LoRA r16, 8 steps x 8, ``max_length``
128, length-grouped), only ``torch_dtype`` changes: ``float32`` (``auto`` on CPUs without AMX-BF16) or
``bfloat16`` (autocast, the frozen LoRA base held in bf16). On CPUs with AMX-BF16 the bf16 matmuls
run on the AMX tiles; without it they are emulated. ``--rounds`` (default 3), the order alternating
(bfloat16 first in round 0); reported per dtype: the median and min-max of useful tokens/s, each
run beside it (with the load average before and after), the per-round ratio bf16/fp32 likewise,
and the machine (CPU model, AMX/AVX-512 bf16 flags, load).
"""

from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, TINY, first_lines, parse_throughput_args, run_alternating, spread, start_ray, write_result  # noqa: E402


def main(argv=None) -> str:
    import sft_throughput as st
    from fnsft.models.precision import cpu_bf16_flags
    from fnsft.pipeline import Pipeline

    full = "--full" in (argv := list(sys.argv[1:] if argv is None else argv))
    a = parse_throughput_args([x for x in argv if x != "--full"], __doc__.splitlines()[0], 8, "optimizer steps per run", "batch")
    data = first_lines(st.DATA, os.path.join(tempfile.mkdtemp(prefix="sft_dtype_"), "data.jsonl"), a.steps * a.batch)
    os.chdir(REPO)
    results = {"settings": {**vars(a), "cpu_flags": cpu_bf16_flags(), "full_finetune": full}, "model": a.model,
               "ray_init_s": start_ray()}

    def run(dtype: str) -> dict:
        sft = st.stage_config(data, a, False)
        if full:
            sft = {k: v for k, v in sft.items() if k not in st.LORA}
        cfg = {"model_name_or_path": a.model, "output_dir": tempfile.mkdtemp(prefix="fnsft_dtype_"),
               "stages": ["sft"], "torch_dtype": dtype, "stage_configs": {"sft": sft}}
        m = Pipeline.from_dict(cfg).run()["stages"]["sft"]["metrics"]
        return {"useful_tokens_per_s": round(m["train_tokens_per_second_steady"], 2), "train_loss": m.get("train_loss")}

    runs, order = run_alternating({"bfloat16": lambda: run("bfloat16"), "float32": lambda: run("float32")}, a.rounds,
                                  lambda m: f"{m['useful_tokens_per_s']:.1f} useful tokens/s")
    results["order"], results["runs"] = order, runs
    results["useful_tokens_per_s"] = {d: spread(x["useful_tokens_per_s"] for x in rs) for d, rs in runs.items()}
    med = {d: s["median"] for d, s in results["useful_tokens_per_s"].items()}
    results["median_useful_tokens_per_s"] = med
    results["ratio_bfloat16_over_float32"] = round(med["bfloat16"] / med["float32"], 3)
    results["ratio_bfloat16_over_float32_per_round"] = spread(
        b["useful_tokens_per_s"] / f["useful_tokens_per_s"] for b, f in zip(runs["bfloat16"], runs["float32"]))
    name = "sft_dtype" + ("_full" if full else "") + ("_tiny" if a.model == TINY and not a.quick else "")
    return write_result(name + ("_quick" if a.quick else ""), results)


if __name__ == "__main__":
    main()

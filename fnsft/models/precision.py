"""The one precision policy of every training path (YAML ``torch_dtype``; see docs/precision.md).

- Trainable weights and their optimizer state are float32 ("master weights"), always.
- Compute runs in the requested dtype by autocast: ``bfloat16`` or ``float16``. ``auto``:
  bfloat16 on GPUs that support it; on CPUs with AMX-BF16 for models with a hidden size of at
  least 256 (SmolLM2-135M: LoRA SFT 1.17x, full SFT 1.22x faster than float32; a 64-wide test
  model 0.53x: its matmuls are too small for the tiles to pay for the casts); else float32 (on
  CPUs without AMX-BF16, bf16 is emulated and slow).
- ``float16`` scales the loss (a ``GradScaler``; HF's ``fp16=True`` does the same) so small
  gradients do not flush to zero; bfloat16 has float32's range and needs none.
- Frozen weights (a LoRA base, a reference model, generation copies) may stay in the compute
  dtype: they have no optimizer state and are never updated.
- Under DeepSpeed the ``bf16``/``fp16`` sections do the same: DeepSpeed casts the module to the
  half dtype and keeps float32 master partitions itself.

Functions here import torch lazily: config validation imports nothing heavy.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

HALF = ("bfloat16", "float16")


@dataclass(frozen=True)
class Precision:
    """What a stage computes in (``compute``) and how, from ``torch_dtype`` and the hardware.

    ``compute`` is a dtype name: ``float32``, ``bfloat16`` or ``float16``.
    """

    compute: str
    on_gpu: bool = False
    reason: str = ""  # why ``auto`` chose ``compute`` (shown in the stage's log and metrics)

    @property
    def compute_dtype(self):
        import torch

        return getattr(torch, self.compute)

    @property
    def master_dtype(self):
        """Trainable weights and optimizer state: always float32."""
        import torch

        return torch.float32

    @property
    def mixed(self) -> bool:
        return self.compute in HALF

    @property
    def bf16(self) -> bool:
        """HF ``TrainingArguments.bf16`` (autocast to bf16; DeepSpeed's ``bf16`` section)."""
        return self.compute == "bfloat16"

    @property
    def fp16(self) -> bool:
        """HF ``TrainingArguments.fp16`` (autocast + loss scaling; DeepSpeed's ``fp16`` section).

        Only on GPUs: HF/accelerate have no CPU fp16 autocast nor scaler, and DeepSpeed's CPU
        accelerator has no fp16 optimizer, so there a float16 request computes in float32 (the
        weights are float32 either way).
        """
        return self.compute == "float16" and self.on_gpu

    def load_dtype(self, trainable: bool):
        """The dtype to load a model in: float32 when its weights train (full fine-tune, the
        RL policy without LoRA), the compute dtype for a frozen base (LoRA, QLoRA, reference)."""
        return self.master_dtype if trainable else self.compute_dtype

    def autocast(self, device_type: str):
        """A context that runs the forward (and so the backward) in the compute dtype."""
        import torch

        if not self.mixed:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device_type, dtype=self.compute_dtype)

    def grad_scaler(self, device_type: str):
        """A ``torch.amp.GradScaler`` for float16, else ``None`` (bf16/fp32 need no scaling)."""
        import torch

        if self.compute != "float16":
            return None
        return torch.amp.GradScaler(device_type)


# ``auto`` on a CPU with AMX-BF16: bf16 from this hidden size up. Measured here (fwd+bwd+AdamW,
# batch 8 x 128, 2 threads): fp32/bf16 step time 0.91 at 64, 0.95-1.02 at 128, 1.12-1.18 at 192,
# 1.20-1.28 at 256, 1.35 at 512-576; fnsft SFT on tiny-llama (64) 0.53x, on SmolLM2 (576) 1.17-1.22x.
CPU_BF16_MIN_HIDDEN = 256


def resolve_precision(torch_dtype: str, on_gpu: bool, model=None) -> Precision:
    """The stage's precision from YAML ``torch_dtype`` (``auto``, ``float32``, ``bfloat16``, ``float16``).

    ``auto``: bfloat16 on GPUs that support it natively; on a CPU with AMX-BF16 when the model
    (a :class:`~fnsft.models.handle.ModelHandle` or a model folder: its config's ``hidden_size``)
    is at least ``CPU_BF16_MIN_HIDDEN`` wide;
    else float32. TRL's configs default ``bf16=True`` everywhere, so the choice is made here: on a
    CPU without native bf16 it is emulated (~15x slower).
    """
    import torch

    if torch_dtype == "auto":
        if on_gpu:
            ok = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
            return Precision("bfloat16" if ok else "float32", on_gpu,
                             "auto: GPU with bf16" if ok else "auto: GPU without bf16")
        hidden = model_hidden_size(model) if model is None or isinstance(model, str) else model.model_width()
        compute, why = _auto_on_cpu(hidden)
        return Precision(compute, False, f"auto: CPU, {why}")
    if torch_dtype not in ("float32",) + HALF:
        raise ValueError(f"torch_dtype: {torch_dtype!r} (accepted: auto, float32, bfloat16, float16)")
    if not on_gpu and torch_dtype in HALF and not (torch_dtype == "bfloat16" and cpu_has_native_bf16()):
        log.warning("torch_dtype=%s on CPU is emulated and slow; weights stay float32", torch_dtype)
    return Precision(torch_dtype, on_gpu, "set in the config")


def _auto_on_cpu(hidden: int | None) -> tuple[str, str]:
    """What ``auto`` computes in on this CPU for a model ``hidden`` wide (None: unknown), and why."""
    if not cpu_has_native_bf16():
        return "float32", "no AMX-BF16: bf16 would be emulated"
    if hidden is None:
        return "float32", "AMX-BF16, but the model's width is unknown"
    if hidden >= CPU_BF16_MIN_HIDDEN:
        return "bfloat16", f"AMX-BF16, hidden size {hidden} >= {CPU_BF16_MIN_HIDDEN}"
    return "float32", f"AMX-BF16, but hidden size {hidden} < {CPU_BF16_MIN_HIDDEN}: too small to pay"


def dtype_fingerprint(torch_dtype: str, hidden: int | None) -> str:
    """``torch_dtype`` as a run's fingerprint records it: ``auto`` that now trains in bf16 on this
    CPU (AMX-BF16, wide model) is recorded as such, so an output folder finished when ``auto``
    meant float32 here is rerun, not resumed into a run of mixed dtypes."""
    if torch_dtype == "auto" and _auto_on_cpu(hidden)[0] == "bfloat16":
        return "auto:cpu-bfloat16"
    return torch_dtype


def describe_torch_dtype(torch_dtype: str, model_spec: str) -> str:
    """The plan's ``torch_dtype`` line: what ``auto`` gives this model on this machine's CPUs and on GPUs."""
    if torch_dtype != "auto":
        return torch_dtype
    import os

    from fnsft.models.builtin import BUILTIN_HIDDEN_SIZES

    path = os.path.expanduser(model_spec)
    hidden = BUILTIN_HIDDEN_SIZES.get(model_spec) or (model_hidden_size(path) if os.path.isdir(path) else None)
    if hidden is None and cpu_has_native_bf16():
        cpu = f"bfloat16 if the model is at least {CPU_BF16_MIN_HIDDEN} wide (AMX-BF16), else float32"
    else:
        compute, why = _auto_on_cpu(hidden)
        cpu = f"{compute} ({why})"
    return f"auto: on this machine's CPUs {cpu}; on GPUs bfloat16 where supported"


def model_hidden_size(source: str | None) -> int | None:
    """``hidden_size`` (or ``d_model``/``n_embd``) of the model at ``source`` (None: unknown)."""
    if not source:
        return None
    import json
    import os

    try:
        if os.path.isdir(source):
            with open(os.path.join(source, "config.json")) as f:
                cfg = json.load(f)
        else:
            from transformers import AutoConfig

            cfg = AutoConfig.from_pretrained(source).to_dict()
    except Exception:  # noqa: BLE001 - unknown size: the safe choice (float32) follows
        return None
    cfg = cfg.get("text_config") or cfg
    for key in ("hidden_size", "d_model", "n_embd"):
        if isinstance(cfg.get(key), int):
            return cfg[key]
    return None


def cpu_bf16_flags() -> list[str]:
    """This CPU's bf16-related flags (``amx_bf16``, ``amx_tile``, ``avx512_bf16``, ``avx512f``) from /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return sorted(x for x in line.split(":", 1)[1].split()
                                  if x in ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f"))
    except OSError:
        pass
    return []


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has AMX-BF16 (where bf16 training was measured fast; AVX512-BF16 alone was not measured)."""
    return "amx_bf16" in cpu_bf16_flags()


def to_master(module) -> None:
    """Cast every trainable parameter of ``module`` to float32 in place (frozen ones stay)."""
    import torch

    for p in module.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()


def nonfinite_tensors(state: dict) -> list[str]:
    """Names of the floating tensors in ``state`` holding NaN or inf (a model never handed on)."""
    import torch

    return [n for n, t in state.items()
            if torch.is_floating_point(t) and not bool(torch.isfinite(t).all())]


def nonfinite_message(stage: str, what: str, step: int, value: float, prec: "Precision | None",
                      learning_rate: float | None) -> str:
    """One line naming the stage, the step and the likely cause of a NaN/inf loss."""
    causes = []
    if prec is not None and prec.compute == "float16":
        causes.append("float16 overflow (use torch_dtype: bfloat16 or float32)")
    causes.append(f"a learning rate too high (learning_rate: {learning_rate:g})" if learning_rate
                  else "a learning rate too high")
    return (f"stage {stage}: {what} is {value} at step {step}; stopped so no broken weights are handed on. "
            f"Likely cause: {' or '.join(causes)}")


def disable_dropout(model) -> None:
    """Dropout off, training mode kept (as TRL's ``disable_dropout``): in RL two forward passes
    of unchanged weights must give the same log-probs (ratio 1), while HF's gradient
    checkpointing only runs in training mode — ``model.eval()`` would silently turn it off."""
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        for attr in ("attention_dropout", "dropout", "hidden_dropout"):  # F.dropout(p=self.<attr>) in forward
            if isinstance(getattr(m, attr, None), float):
                setattr(m, attr, 0.0)
    config = getattr(model, "config", None)
    for attr in ("attention_dropout", "hidden_dropout", "dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop",
                 "hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"):
        if isinstance(getattr(config, attr, None), float):
            setattr(config, attr, 0.0)


def optimizer_step(loss, optimizer, params, max_grad_norm: float, scaler=None) -> float:
    """One plain-torch/DDP step on float32 masters; with ``scaler`` (float16) the loss is scaled,
    gradients unscaled before clipping, and steps with inf/NaN gradients are skipped.
    Returns the gradient norm before clipping (NaN when not clipped)."""
    import torch

    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    else:
        loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm) if max_grad_norm else torch.tensor(float("nan"))
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return float(norm)

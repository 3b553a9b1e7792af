"""The DPO stage: data checks before Ray, the loss types, and learning on Ray Train + DeepSpeed.

Fast tests build the stage from a config (no Ray) or a TRL trainer in this process on the tiny
model. Slow tests run real Train jobs and check the effect DPO exists for: on held-out pairs
the implicit reward prefers the chosen answer more often, by a larger margin, than before.
"""

from __future__ import annotations

import json
import math
import os
import types

import pytest

from fnsft.errors import ConfigError
from fnsft.pipeline import Pipeline
from fnsft.pipeline.plan import build_plan
from fnsft.testing import EXAMPLES, REPO, TINY, run_cli, tiny_sft_config

FORMATS = os.path.join(EXAMPLES, "formats")
PREFERENCES = os.path.join(EXAMPLES, "preferences.jsonl")


def dpo_config(output_dir, workers: int = 1, **dpo) -> dict:
    """A DPO-only pipeline on the tiny model: a high learning rate and short sequences, so it learns fast."""
    stage = {
        "preference_dataset_path": PREFERENCES, "learning_rate": 5e-3, "num_train_epochs": 2,
        "per_device_train_batch_size": 8, "max_length": 128, "max_prompt_length": 96,
        "save_steps": 0, "report_to": ["none"], "eval_split": 0.2,
    }
    stage.update(dpo)
    return {"model_name_or_path": TINY, "output_dir": str(output_dir), "stages": ["dpo"],
            "resources": {"num_workers": workers}, "deepspeed": {"zero_stage": 2},
            "stage_configs": {"dpo": stage}}


def _stage(tmp_path, **dpo):
    return build_plan(data=dpo_config(tmp_path / "o", **dpo)).stages[0].stage


@pytest.fixture(scope="module")
def tokenizer():
    from fnsft.models.builtin import materialize_builtin
    from fnsft.models.loading import load_tokenizer

    return load_tokenizer(materialize_builtin(TINY))


def _write_jsonl(path, rows) -> str:
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return str(path)


# ---------------------------------------------------------------- formats (no Ray)


@pytest.mark.parametrize("name,fmt", [
    ("pref_explicit.jsonl", "prompt_chosen_rejected"), ("pref_implicit.jsonl", "implicit_prompt"),
    ("pref_hh.jsonl", "hh_rlhf"), ("pref_pairwise.jsonl", "pairwise"),
])
def test_each_preference_format_prepared(tmp_path, tokenizer, name, fmt):
    path = os.path.join(FORMATS, name)
    stage = _stage(tmp_path, preference_dataset_path=path, eval_split=0)
    data, info = stage.prepare_data(tokenizer)
    with open(path) as f:
        n_rows = sum(1 for line in f if line.strip())
    assert info["dataset_format"] == fmt and info["dropped_pairs"] == 0
    rows = data["train"]
    assert len(rows) == n_rows and "eval" not in data
    for r in rows:  # chat shape: the tiny tokenizer has a chat template
        assert set(r) == {"prompt", "chosen", "rejected"}
        assert r["prompt"][-1]["role"] == "user" and r["prompt"][-1]["content"].strip()
        for side in ("chosen", "rejected"):
            assert [m["role"] for m in r[side]] == ["assistant"] and r[side][0]["content"].strip()
        assert r["chosen"] != r["rejected"]
    if fmt == "hh_rlhf":
        assert rows[0]["prompt"] == [{"role": "user", "content": "What is the tallest animal?"}]
        assert rows[0]["chosen"][0]["content"] == "The giraffe."
    if fmt == "pairwise":  # preference "b" makes response_b the chosen answer
        assert rows[1]["chosen"][0]["content"] == "7 × 6 = 42."
    assert stage.describe_plan()["data"].startswith(path)


def test_plain_strings_kept_without_chat_template(tmp_path, tokenizer):
    stage = _stage(tmp_path, preference_dataset_path=os.path.join(FORMATS, "pref_explicit.jsonl"),
                   use_chat_template=False, eval_split=0)
    rows = stage.prepare_data(tokenizer)[0]["train"]
    assert rows[0] == {"prompt": "What is the capital of Canada?", "chosen": "Ottawa.", "rejected": "Toronto."}


def test_hh_multi_turn_prompt_to_messages():
    from fnsft.stages.dpo import hh_prompt_to_messages

    prompt = "\n\nHuman: Hi there\n\nAssistant: Hello! How can I help?\n\nHuman: What is 2+2?\n\nAssistant:"
    assert hh_prompt_to_messages(prompt) == [
        {"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "What is 2+2?"}]


# ---------------------------------------------------------------- unusable pairs (no Ray)

GOOD = [{"prompt": f"What is {i} + 1?", "chosen": f"{i + 1}.", "rejected": f"{i + 2}."} for i in range(6)]
BAD = {
    "identical": {"prompt": "Capital of Peru?", "chosen": "Lima.", "rejected": "Lima."},
    "empty_response": {"prompt": "Capital of Peru?", "chosen": "Lima.", "rejected": "  "},
    "missing_prompt": {"prompt": "", "chosen": "Lima.", "rejected": "Quito."},
}
WORDS = {"identical": "identical chosen/rejected", "empty_response": "empty response",
         "missing_prompt": "missing or mismatched prompt"}


@pytest.mark.parametrize("reason", sorted(BAD))
def test_unusable_pair_fails_validation_naming_the_row(tmp_path, reason):
    rows = GOOD[:3] + [BAD[reason]] + GOOD[3:]
    path = _write_jsonl(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(ConfigError) as err:
        _stage(tmp_path, preference_dataset_path=path)
    msg = str(err.value)
    assert "\n" not in msg
    assert "1 unusable preference pair" in msg and f"{WORDS[reason]}: row 3" in msg, msg
    assert "drop_invalid_pairs" in msg


@pytest.mark.parametrize("reason", sorted(BAD))
def test_unusable_pair_dropped_when_asked(tmp_path, tokenizer, reason):
    rows = GOOD[:3] + [BAD[reason]] + GOOD[3:]
    path = _write_jsonl(tmp_path / "pairs.jsonl", rows)
    stage = _stage(tmp_path, preference_dataset_path=path, drop_invalid_pairs=True, eval_split=0)
    data, info = stage.prepare_data(tokenizer)
    assert info["dropped_pairs"] == 1 and len(data["train"]) == len(GOOD)
    assert "1 unusable dropped" in stage.describe_plan()["data"]


def test_unusable_pairs_counted_in_one_line(tmp_path):
    rows = [BAD["identical"], *GOOD, BAD["empty_response"], BAD["missing_prompt"], BAD["identical"]]
    path = _write_jsonl(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(ConfigError) as err:
        _stage(tmp_path, preference_dataset_path=path)
    msg = str(err.value)
    assert "4 unusable preference pairs" in msg
    assert "identical chosen/rejected: rows 0, 9" in msg
    assert "empty response: row 7" in msg and "missing or mismatched prompt: row 8" in msg


def test_dry_run_reports_unusable_pairs_before_ray(tmp_path):
    path = _write_jsonl(tmp_path / "pairs.jsonl", GOOD + [BAD["identical"]])
    cfg = dpo_config(tmp_path / "o", preference_dataset_path=path)
    import yaml

    config = tmp_path / "dpo.yaml"
    config.write_text(yaml.safe_dump(cfg))
    proc = run_cli("--config", str(config), "--dry_run")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("fnsft: error:")]
    assert len(errors) == 1 and "identical chosen/rejected: row 6" in errors[0], proc.stderr
    assert "RAY_IMPORTED=False" in proc.stdout


# ---------------------------------------------------------------- config checks (no Ray)


@pytest.mark.parametrize("settings,words", [
    ({"loss_type": "cdpo"}, "label_smoothing: loss_type cdpo needs a value in (0, 0.5)"),
    ({"loss_type": "cdpo", "label_smoothing": 0.5}, "needs a value in (0, 0.5)"),
    ({"label_smoothing": 0.1}, "only used by loss_type cdpo"),
    ({"simpo_gamma": 0.5}, "simpo_gamma: only used by loss_type simpo"),
    ({"loss_type": "simpo", "precompute_ref_log_probs": True}, "simpo uses no reference model"),
    ({"max_prompt_length": 128}, "max_prompt_length: must be in [1, max_length=128)"),
    ({"beta": 0}, "beta: must be > 0"),
    ({"loss_type": "kto"}, "'kto' is not accepted"),
])
def test_bad_settings_rejected(tmp_path, settings, words):
    with pytest.raises(ConfigError) as err:
        _stage(tmp_path, **settings)
    assert words in str(err.value)


def test_plan_names_the_reference(tmp_path):
    assert _stage(tmp_path).describe_plan()["reference"] == "frozen copy of the incoming model"
    assert "adapters disabled" in _stage(tmp_path, use_peft=True).describe_plan()["reference"]
    assert "precomputed" in _stage(tmp_path, precompute_ref_log_probs=True).describe_plan()["reference"]
    plan = _stage(tmp_path, loss_type="simpo").describe_plan()
    assert "reference-free" in plan["reference"] and "beta=2" in plan["loss"] and "gamma=1" in plan["loss"]


@pytest.mark.parametrize("name", ["dpo_only_config.yaml", "sft_dpo_config.yaml"])
def test_shipped_configs_validate(name, monkeypatch):
    monkeypatch.chdir(REPO)  # their paths are relative to the repository root, as their headers say
    plan = build_plan(os.path.join(REPO, "configs", name))
    assert "dpo" in [s.name for s in plan.selected]


# ---------------------------------------------------------------- the trainer in this process


def _trainer(tmp_path, tokenizer, rows, model_dir=None, **dpo):
    """The worker's trainer (``build_dpo_trainer``) built here, without Ray or DeepSpeed."""
    import torch
    from datasets import Dataset

    from fnsft.workers.hf.args import common_training_args
    from fnsft.models.builtin import materialize_builtin
    from fnsft.models.handle import ModelHandle
    from fnsft.models.loading import lora_config
    from fnsft.workers.hf.dpo_trainer import build_dpo_trainer

    stage = _stage(tmp_path, **dpo)
    c = stage.config
    handle = ModelHandle(source=model_dir or materialize_builtin(TINY))
    job = types.SimpleNamespace(stage_config=c, model=handle, use_gpu=False, deepspeed=None,
                                data={"train": None, "eval": None}, stage_name="dpo")
    args = common_training_args(job, str(tmp_path / "trainer"), torch.float32)
    return build_dpo_trainer(job=job, model=handle.load(dtype=torch.float32), tokenizer=tokenizer,
                             train_dataset=Dataset.from_list(rows["train"]),
                             eval_dataset=Dataset.from_list(rows["eval"]) if rows.get("eval") else None,
                             args=args, peft_config=lora_config(c) if c.use_peft else None)


def _one_pair_rows(tmp_path, tokenizer):
    stage = _stage(tmp_path, preference_dataset_path=os.path.join(FORMATS, "pref_explicit.jsonl"), eval_split=0)
    return {"train": stage.prepare_data(tokenizer)[0]["train"][:2]}


def _logsig(x):
    return -math.log1p(math.exp(-x))


@pytest.mark.parametrize("loss_type,settings", [
    ("sigmoid", {}), ("hinge", {}), ("ipo", {}), ("cdpo", {"label_smoothing": 0.2}), ("simpo", {"simpo_gamma": 0.3}),
])
def test_loss_matches_its_formula(tmp_path, tokenizer, loss_type, settings):
    """One pair; the policy moved away from the reference, so the log-ratios are not 0."""
    import torch

    from fnsft.stages.dpo import effective_beta

    trainer = _trainer(tmp_path, tokenizer, _one_pair_rows(tmp_path, tokenizer), loss_type=loss_type, **settings)
    assert (trainer.ref_model is None) == (loss_type == "simpo")
    torch.manual_seed(0)
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    trainer.model.eval()
    batch = trainer.data_collator([trainer.train_dataset[0]])
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch).item()
    trainer.log({})  # one batch: the logged means are that batch's values
    m = {k[5:]: v for k, v in trainer.state.log_history[-1].items() if k.startswith("eval_")}
    config = _stage(tmp_path, loss_type=loss_type, **settings).config
    beta = effective_beta(config)
    assert beta == trainer.beta
    margin = m["rewards/margins"]  # beta * (h_chosen - h_rejected)
    assert abs(margin) > 1e-3
    if loss_type == "sigmoid":
        expected = -_logsig(margin)
    elif loss_type == "hinge":
        expected = max(0.0, 1 - margin)
    elif loss_type == "cdpo":
        e = config.label_smoothing
        expected = -(1 - e) * _logsig(margin) - e * _logsig(-margin)
    elif loss_type == "simpo":  # rewards are beta * mean per-token log-prob; no reference
        assert m["rewards/chosen"] == pytest.approx(beta * m["logps/chosen"] / _completion_tokens(batch)[0],
                                                    rel=1e-4)
        expected = -_logsig(margin - config.simpo_gamma)
    else:  # ipo: per-token log-ratio difference pulled to 1 / (2 beta)
        n_chosen, n_rejected = _completion_tokens(batch)
        delta = m["rewards/chosen"] / beta / n_chosen - m["rewards/rejected"] / beta / n_rejected
        expected = (delta - 1 / (2 * beta)) ** 2
    assert loss == pytest.approx(expected, rel=1e-4, abs=1e-6)
    if loss_type != "simpo":  # the KL-style log-ratio is logged beside the rewards
        assert m["logratios/chosen"] == pytest.approx(m["rewards/chosen"] / beta, rel=1e-5)
    else:
        assert "logratios/chosen" not in m


def test_evaluation_before_training_names_its_metrics(tmp_path, tokenizer):
    """The worker's evaluation before training asks for before_eval_*: TRL's own metrics too."""
    rows = _one_pair_rows(tmp_path, tokenizer)
    trainer = _trainer(tmp_path, tokenizer, {"train": rows["train"], "eval": rows["train"]})
    before = trainer.evaluate(metric_key_prefix="before_eval")
    assert {"before_eval_loss", "before_eval_rewards/accuracies", "before_eval_logratios/chosen"} <= set(before)
    assert not [k for k in before if k.startswith("eval_")], before
    after = trainer.evaluate()
    assert {"eval_loss", "eval_rewards/accuracies", "eval_logratios/chosen"} <= set(after)


def _completion_tokens(batch):
    chosen, rejected = batch["completion_mask"].sum(dim=1).tolist()
    return chosen, rejected


def test_lora_reference_is_the_adapter_disabled_base(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, tokenizer, _one_pair_rows(tmp_path, tokenizer), use_peft=True)
    assert trainer.ref_model is None and "ref" not in trainer.model.peft_config  # no second copy


def test_max_prompt_length_keeps_the_end_of_the_prompt(tmp_path, tokenizer):
    long_prompt = " ".join(f"word{i}" for i in range(60)) + " What is 2 + 2?"
    rows = {"train": to_rows([{"prompt": long_prompt, "chosen": "4.", "rejected": "5."}], tokenizer)}
    full = _trainer(tmp_path, tokenizer, rows, max_length=2048).train_dataset[0]  # prompt limit 1024
    cut = _trainer(tmp_path, tokenizer, rows, max_length=64, max_prompt_length=20).train_dataset
    # TRL alone would drop this pair (its prompt is longer than max_length); we keep its end.
    assert len(full["prompt_ids"]) > 64 and len(cut) == 1
    assert cut[0]["prompt_ids"] == full["prompt_ids"][-20:]
    assert cut[0]["chosen_ids"] == full["chosen_ids"]


def to_rows(pairs, tokenizer):
    from fnsft.stages.dpo import to_trainer_rows

    return to_trainer_rows(pairs, "prompt_chosen_rejected", chat=True, system_prompt=None)


# ---------------------------------------------------------------- Ray Train jobs (slow)


def _held_out_implicit_rewards(tmp_path, cfg, policy_dir, reference_dir, tokenizer):
    """Implicit-reward accuracy and mean margin on the stage's held-out pairs, computed here from
    the saved models (the weights the stage handed back) with plain forward passes."""
    import torch
    from transformers import AutoModelForCausalLM

    from fnsft.stages.dpo import effective_beta

    stage = build_plan(data=cfg).stages[0].stage
    pairs = stage.prepare_data(tokenizer)[0]["eval"]
    beta = effective_beta(stage.config)

    def answer_logp(model, prompt, answer):
        p = tokenizer(tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True),
                      add_special_tokens=False).input_ids
        full = tokenizer(tokenizer.apply_chat_template(prompt + answer, tokenize=False),
                         add_special_tokens=False).input_ids[:stage.config.max_length]
        ids = torch.tensor([full])
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1].float(), -1)
        token_logp = logp.gather(1, ids[0, 1:, None])[:, 0]
        return token_logp[len(p) - 1:].sum().item()

    policy = AutoModelForCausalLM.from_pretrained(policy_dir).eval()
    reference = AutoModelForCausalLM.from_pretrained(reference_dir).eval()
    margins = []
    for r in pairs:
        reward = {side: beta * (answer_logp(policy, r["prompt"], r[side])
                                - answer_logp(reference, r["prompt"], r[side]))
                  for side in ("chosen", "rejected")}
        margins.append(reward["chosen"] - reward["rejected"])
    return sum(m > 0 for m in margins) / len(margins), sum(margins) / len(margins)


def _assert_preference_learned(metrics):
    # TRL's eval accuracy is a mean of per-batch means over ~20 held-out pairs (ties count as
    # wrong: 0.0 before training); length-grouped eval batches move it in steps of ~0.05. The
    # per-example check is _held_out_implicit_rewards (>= 0.65), recomputed from the weights.
    assert metrics["eval_rewards/accuracies"] >= 0.6, metrics
    assert metrics["eval_rewards/accuracies"] > metrics["before_eval_rewards/accuracies"]
    assert metrics["eval_rewards/margins"] > metrics["before_eval_rewards/margins"] + 0.05
    assert metrics["eval_loss"] < metrics["before_eval_loss"]


def _assert_curves(stage):
    out = os.path.dirname(stage["model_path"])
    assert os.path.isfile(os.path.join(out, "training_curves.png"))
    history = json.load(open(os.path.join(out, "log_history.json")))
    logged = set().union(*history)
    for key in ("loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
                "eval_rewards/accuracies", "eval_rewards/margins", "before_eval_rewards/margins"):
        assert key in logged, key
    return logged


@pytest.mark.slow
def test_sigmoid_learns_preferences_two_workers_precomputed(tmp_path, ray_session, tiny_model_dir, tokenizer):
    """DPO (sigmoid), full fine-tune, 2 workers ZeRO-2, reference log-probs precomputed once."""
    cfg = dpo_config(tmp_path / "out", workers=2, loss_type="sigmoid", precompute_ref_log_probs=True,
                     num_train_epochs=3, per_device_train_batch_size=4)
    stage = Pipeline.from_dict(cfg).run()["stages"]["dpo"]
    assert stage["status"] == "completed"
    metrics = stage["metrics"]
    _assert_preference_learned(metrics)
    assert "precomputed" in metrics["reference"] and "eval_perplexity" not in metrics
    assert "logratios/chosen" in _assert_curves(stage)
    # Recomputed from the handed-back weights against the incoming (base) model.
    accuracy, margin = _held_out_implicit_rewards(tmp_path, cfg, stage["model_path"], tiny_model_dir, tokenizer)
    assert accuracy >= 0.65 and margin > 0.05, (accuracy, margin)


@pytest.mark.slow
def test_ipo_learns_preferences_with_lora(tmp_path, ray_session, tiny_model_dir, tokenizer):
    cfg = dpo_config(tmp_path / "out", loss_type="ipo", use_peft=True, lora_r=8, lora_alpha=16,
                     learning_rate=1e-2, num_train_epochs=3)
    stage = Pipeline.from_dict(cfg).run()["stages"]["dpo"]
    metrics = stage["metrics"]
    assert "adapters disabled" in metrics["reference"]
    assert metrics["eval_rewards/accuracies"] >= 0.65, metrics
    assert metrics["eval_rewards/accuracies"] > metrics["before_eval_rewards/accuracies"]
    assert metrics["eval_rewards/margins"] > metrics["before_eval_rewards/margins"]
    assert metrics["eval_loss"] < metrics["before_eval_loss"]
    _assert_curves(stage)
    accuracy, margin = _held_out_implicit_rewards(tmp_path, cfg, stage["model_path"], tiny_model_dir, tokenizer)
    assert accuracy >= 0.65 and margin > 0, (accuracy, margin)


@pytest.mark.slow
def test_simpo_reference_free_with_lora(tmp_path, ray_session):
    """SimPO's implicit reward needs no reference, so "before" is the incoming model's own preference."""
    cfg = dpo_config(tmp_path / "out", loss_type="simpo", use_peft=True, lora_r=8, lora_alpha=16,
                     learning_rate=5e-3, num_train_epochs=2)
    metrics = Pipeline.from_dict(cfg).run()["stages"]["dpo"]["metrics"]
    assert metrics["reference"].startswith("none")
    assert 0.3 < metrics["before_eval_rewards/accuracies"] < 0.6  # about chance on the random model
    assert metrics["eval_rewards/accuracies"] >= metrics["before_eval_rewards/accuracies"] + 0.15, metrics
    assert metrics["eval_rewards/margins"] > metrics["before_eval_rewards/margins"]


def _before_logps(tmp_path, tokenizer, cfg, model_dir) -> float:
    """eval_logps/chosen of ``model_dir`` on the DPO stage's held-out pairs, in this process."""
    stage = build_plan(data=cfg).stages[1].stage
    data = stage.prepare_data(tokenizer)[0]
    dpo = {k: v for k, v in cfg["stage_configs"]["dpo"].items()}
    dpo["per_device_eval_batch_size"] = 16  # the Ray job's step: 2 workers x 8
    trainer = _trainer(tmp_path / os.path.basename(model_dir), tokenizer, data, model_dir=model_dir, **dpo)
    return trainer.evaluate()["eval_logps/chosen"]


@pytest.mark.slow
def test_sft_then_dpo_starts_from_sft_weights(tmp_path, ray_session, tiny_model_dir, tokenizer):
    """Example 1 (sft -> dpo) from one config, 2 workers ZeRO-2: the DPO stage's policy and
    reference are the SFT stage's output, not the base model."""
    cfg = tiny_sft_config(tmp_path / "out", num_train_epochs=1)
    cfg["stages"] = ["sft", "dpo"]
    cfg["stage_configs"]["dpo"] = {
        "preference_dataset_path": PREFERENCES, "learning_rate": 5e-3, "num_train_epochs": 1,
        "per_device_train_batch_size": 8, "per_device_eval_batch_size": 8, "max_length": 128,
        "save_steps": 0, "report_to": ["none"], "eval_split": 0.16,  # 32 held-out pairs: 2 steps of 16
    }
    summary = Pipeline.from_dict(cfg).run()
    sft, dpo = summary["stages"]["sft"], summary["stages"]["dpo"]
    assert sft["status"] == dpo["status"] == "completed"
    metrics = dpo["metrics"]
    assert metrics["reference"] == "frozen copy of the incoming model"
    assert metrics["eval_rewards/accuracies"] > metrics["before_eval_rewards/accuracies"]
    assert metrics["eval_rewards/margins"] > metrics["before_eval_rewards/margins"]

    started = metrics["before_eval_logps/chosen"]
    from_sft = _before_logps(tmp_path, tokenizer, cfg, sft["model_path"])
    from_base = _before_logps(tmp_path, tokenizer, cfg, tiny_model_dir)
    assert started == pytest.approx(from_sft, rel=1e-3), (started, from_sft, from_base)
    assert abs(from_sft - from_base) > 0.05 * abs(from_base)

"""The chat-template fallback for tokenizers without one (the guide's DialoGPT-medium)."""

from __future__ import annotations

from fnsft.models.builtin import CHATML_TEMPLATE
from fnsft.models.loading import FALLBACK_ATTR, load_tokenizer, local_has_chat_template

MESSAGES = [{"role": "user", "content": "Hi"}]


def test_fallback_override_and_none(no_template_model, tiny_model_dir):
    assert local_has_chat_template(no_template_model) is False
    assert local_has_chat_template(tiny_model_dir) is True
    assert local_has_chat_template("microsoft/DialoGPT-medium") is None  # a hub id: checked at load

    tok = load_tokenizer(no_template_model)  # what every stage, worker and actor gets
    assert tok.chat_template == CHATML_TEMPLATE and getattr(tok, FALLBACK_ATTR) == "chatml"
    text = tok.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"

    custom = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    tok = load_tokenizer(no_template_model, chat_template=custom)  # a stage's chat_template wins
    assert tok.apply_chat_template(MESSAGES, tokenize=False) == "[user] Hi\n"
    assert not getattr(tok, FALLBACK_ATTR, None)
    assert load_tokenizer(no_template_model, chat_template="chatml").chat_template == CHATML_TEMPLATE

    assert not load_tokenizer(no_template_model, fallback=None).chat_template  # default_chat_template: null
    own = load_tokenizer(tiny_model_dir, fallback="chatml")  # a model's own template is kept, unmarked
    assert not getattr(own, FALLBACK_ATTR, None)


def test_dry_run_accepts_a_model_without_template(no_template_model, tmp_path):
    from fnsft.pipeline.plan import build_plan, describe_plan
    from fnsft.testing import EXAMPLES

    plan = build_plan(data={"model_name_or_path": no_template_model, "output_dir": str(tmp_path / "o"),
                            "stages": ["sft", "dpo"], "stage_configs": {
                                "sft": {"dataset_name_or_path": f"{EXAMPLES}/formats/messages.jsonl"},
                                "dpo": {"preference_dataset_path": f"{EXAMPLES}/preferences.jsonl"}}})
    assert plan.config.default_chat_template == "chatml"
    assert all(s.stage.needs_chat_template() for s in plan.stages)
    assert "sft [run]" in describe_plan(plan)

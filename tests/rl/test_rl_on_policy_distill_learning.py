"""On-policy distillation learns on the tiny model, end to end on Ray: a teacher fine-tuned here to
answer with the letters t, h, e is the reference actor; the student samples, the teacher's log-probs
of the student's tokens are the only signal, and the target_chars reward, which never enters the
loss, rises on held-out prompts while the reverse KL to the teacher falls."""

import json
import os

import pytest

from fnsft.testing import EXAMPLES, TINY, tiny_rl_run

pytestmark = pytest.mark.slow


def fine_tuned_teacher(out_dir, answer: str = "the the the the", steps: int = 10) -> str:
    """The tiny model after a few plain-torch steps of SFT: every arithmetic prompt -> ``answer``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from fnsft.models.spec import resolve_model_path
    from fnsft.models.tokens import encode_prompts

    torch.manual_seed(0)
    source = resolve_model_path(TINY)
    tok = AutoTokenizer.from_pretrained(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    with open(os.path.join(EXAMPLES, "arithmetic", "train.jsonl")) as f:
        prompts = encode_prompts(tok, [json.loads(line)["prompt"] for line in f][:32])
    target = tok(answer, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        for i in range(0, len(prompts), 8):
            rows = prompts[i:i + 8]
            width = max(len(p) for p in rows) + len(target)
            ids = torch.tensor([p + target + [tok.pad_token_id] * (width - len(p) - len(target)) for p in rows])
            labels = torch.tensor([[-100] * len(p) + target + [-100] * (width - len(p) - len(target)) for p in rows])
            loss = model(input_ids=ids, labels=labels).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return str(out_dir)


def test_student_learns_the_teachers_answers(tmp_path, ray_session):
    teacher = fine_tuned_teacher(tmp_path / "teacher")
    metrics, history, _ = tiny_rl_run(
        tmp_path / "out", "on_policy_distill", reference={"model_name_or_path": teacher, "num_cpus": 0.5},
        eval_dataset_path=os.path.join(EXAMPLES, "arithmetic", "eval.jsonl"), verify_weight_sync=False)
    kl = [h["kl"] for h in history]
    print(f"reverse KL to the teacher {kl[0]:.1f} -> {kl[-1]:.1f}; held-out greedy target_chars "
          f"{metrics['eval_reward_start']:.3f} -> {metrics['eval_reward_end']:.3f}")
    assert sum(kl[-3:]) / 3 < 0.5 * sum(kl[:3]) / 3, kl
    assert metrics["eval_reward_end"] > metrics["eval_reward_start"] + 0.3, metrics
    assert metrics["reward_end"] > metrics["reward_start"] + 0.2, metrics
    assert metrics["reference"] == "actor"

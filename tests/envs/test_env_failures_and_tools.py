"""An environment that raises or hangs costs one episode, not the stage; a tool call the model
writes is run in the sandbox and its result comes back as a ``tool`` turn — end to end on Ray.

The tiny model never writes a tool call by chance, so the test first teaches it one (a few
hundred plain-torch steps over one two-reply episode: call ``python_expression`` on 2 + 3, then
answer 5), saves it, and runs the RL stage from that model.
"""

import json
import os

import pytest

from fnsft.pipeline.driver import Pipeline

pytestmark = pytest.mark.slow

FIXTURES = os.path.join(os.path.dirname(__file__), "env_fixtures.py")
CALL = '<tool_call>\n{"name": "python_expression", "arguments": {"expression": "2 + 3"}}\n</tool_call>'
PROMPT = "What is 2 + 3?"
# A ChatML template that renders tools= itself, briefly (the tiny model reads 512 tokens at most;
# the long JSON system prompt for templates without tools would not fit).
TEMPLATE = ("{% if tools %}<|im_start|>system\ntools:{% for t in tools %} {{ t['function']['name'] }}{% endfor %}"
            "<|im_end|>\n{% endif %}{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
            "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}"
            "{{ '<|im_start|>assistant\\n' }}{% endif %}")


def teach_tool_call(model_dir: str, out_dir: str) -> str:
    """The tiny model fine-tuned to answer PROMPT with CALL, and the tool's result with "5"."""
    import torch
    from transformers import AutoModelForCausalLM

    from fnsft.envs.tools import load_tools
    from fnsft.envs.transcript import ChatFormat
    from fnsft.models.loading import load_tokenizer

    tok = load_tokenizer(model_dir, False, TEMPLATE)
    fmt = ChatFormat(tok, [t.schema for t in load_tools(["python_expression"], "tools")])
    assert fmt.system is None  # the template renders the tools
    eos = {tok.convert_tokens_to_ids("<|im_end|>")}
    t = fmt.first_prompt(PROMPT)
    for reply, turns in ((CALL, [{"role": "tool", "name": "python_expression", "content": "5"}]),
                         ("5", [{"role": "user", "content": "Now reply again."}])):
        ids = tok(reply, add_special_tokens=False)["input_ids"] + sorted(eos)
        t.add_reply(ids, reply)
        t.add_turns(fmt.bridge(turns, ids, eos), turns)
    ids = torch.tensor([t.prompt_ids + t.ids])
    labels = torch.tensor([[-100] * len(t.prompt_ids) + [i if m else -100 for i, m in zip(t.ids, t.mask)]])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.01:
            break
    assert loss.item() < 0.05, f"the tiny model did not learn the tool call (loss {loss.item():.3f})"
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def test_failing_environment_costs_episodes_and_tool_calls_become_tool_turns(ray_session, tmp_path, tiny_model_dir):
    model = teach_tool_call(tiny_model_dir, str(tmp_path / "tool_model"))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": PROMPT}) + "\n" for _ in range(4)))
    cfg = {"model_name_or_path": model, "output_dir": str(tmp_path / "run"), "stages": ["rl"],
           "resources": {"num_workers": 1}, "deepspeed": {"enabled": False},
           "stage_configs": {"rl": {
               "dataset_name_or_path": str(prompts), "algorithm": "grpo", "num_iterations": 2,
               "prompts_per_iteration": 4, "num_generations": 2, "max_new_tokens": 100, "temperature": 0.05,
               "learning_rate": 1e-5, "ppo_epochs": 1, "num_mini_batches": 1, "kl_coef": 0.0,
               "report_to": ["none"], "save_intermediate": False, "logging_steps": 100, "save_steps": 0,
               "chat_template": TEMPLATE,
               # step_timeout_s covers a tool call's process start on a loaded machine (seconds)
               "environment": {"class": f"{FIXTURES}:FlakyEnv", "kwargs": {"every": 4, "hang_s": 300},
                               "tools": ["python_expression"], "tool_timeout_s": 15, "max_turns": 3,
                               "step_timeout_s": 20,
                               "transcripts": 8},
               "generation": {"num_cpus": 1}, "reward": {"num_cpus": 0.25}}}}
    rl_out = Pipeline.from_dict(cfg).run()["stages"]["rl"]
    assert rl_out["status"] == "completed"
    with open(rl_out["artifacts"]["rl_history"]) as f:
        history = json.load(f)
    # 16 environment steps (2 per episode) over the stage: every 4th raises, the one after hangs
    assert sum(h["env/step_errors"] for h in history) >= 2
    assert sum(h["env/step_timeouts"] for h in history) >= 2
    assert all(h["tool/calls"] >= 1 for h in history)
    folder = os.path.join(os.path.dirname(rl_out["artifacts"]["rl_history"]), "transcripts")
    episodes = [ep for name in sorted(os.listdir(folder)) for ep in json.load(open(os.path.join(folder, name)))]
    tool_turns = [m for ep in episodes for m in ep["messages"] if m["role"] == "tool"]
    assert tool_turns and all(m == {"role": "tool", "name": "python_expression", "content": "5"} for m in tool_turns)
    failed = [ep for ep in episodes if ep["failure"]]
    assert {ep["failure"] for ep in failed} == {"error", "timeout"}
    assert all(ep["reward"] == 0.0 for ep in failed)
    assert any("the environment broke" in ep.get("error", "") for ep in failed)
    finished = [ep for ep in episodes if not ep["failure"]]
    assert finished and all(len([m for m in ep["messages"] if m["role"] == "assistant"]) == 3 for ep in finished)

"""The environment interface and tools, without Ray: loading and checks, tool schemas, parsing,
the sandbox's limits, the actor's error handling, and the chat-template bookkeeping."""

import json
import os

import pytest

from fnsft.actors.environment import EnvironmentActor
from fnsft.config.parse import parse_dataclass, to_dict
from fnsft.envs.checks import check_environment
from fnsft.envs.sandbox import run_tool
from fnsft.envs.settings import EnvironmentSettings
from fnsft.envs.tools import load_tools, parse_tool_calls
from fnsft.envs.transcript import ChatFormat
from fnsft.envs.wrappers import EnvironmentFactory, build_spec
from fnsft.errors import ConfigError

FIXTURES = os.path.join(os.path.dirname(__file__), "env_fixtures.py")


def settings(**data) -> EnvironmentSettings:
    return parse_dataclass(EnvironmentSettings, data, "rl.environment")


def test_class_key_loads_checks_and_round_trips():
    s = settings(**{"class": f"{FIXTURES}:SecondReplyEnv", "kwargs": {"letters": "xyz"}, "max_turns": 2})
    assert s.class_.endswith(":SecondReplyEnv") and s.enabled
    assert to_dict(s)["class"] == s.class_ and "class_" not in to_dict(s)  # the dump parses again
    check_environment(s, "rl.environment")
    env = build_spec(s, "rl.environment").factory()
    assert env.reset(options={"row": {"prompt": "Hi"}}) == ("Hi", {})
    assert env.step("a")[:4] == ("Now reply again.", 0.0, False, False)
    assert env.step("xyz")[1] == 1.0  # kwargs reached the constructor
    # module:Class works too (the built-in one-answer environment)
    check_environment(settings(**{"class": "fnsft.envs.wrappers:OneAnswer"}), "rl.environment")
    assert not settings().enabled
    # a gymnasium.Env subclass, seeded through reset(seed=...)
    gym = build_spec(settings(**{"class": f"{FIXTURES}:GuessEnv"}), "rl.environment").factory()
    first, info = gym.reset(seed=3, options={"row": {}})
    assert first.startswith("Guess") and info["target"] == gym.reset(seed=3)[1]["target"]
    wrong = str(info["target"] % 9 + 1)
    assert gym.step(wrong)[0] in ("higher", "lower") and gym.step(str(info["target"]))[1:3] == (1.0, True)


@pytest.mark.parametrize("data, expect", [
    ({"class": f"{FIXTURES}:NoStep"}, "has no step method"),
    ({"class": f"{FIXTURES}:Missing"}, "has no 'Missing'"),
    ({"class": "no/such/file.py:Env"}, "file no/such/file.py not found"),
    ({"class": f"{FIXTURES}:SecondReplyEnv", "kwargs": {"bogus": 1}}, "rl.environment.kwargs: "),
    ({"class": f"{FIXTURES}:SecondReplyEnv", "max_turns": 0}, "max_turns: must be >= 1"),
    ({"tools": [f"{FIXTURES}:no_docstring"]}, "has no docstring"),
    ({"tools": ["python_expression", "python_expression"]}, "two tools named"),
    ({"tools": [f"{FIXTURES}:SecondReplyEnv"]}, "is not a function"),
])
def test_bad_environment_is_one_config_error(data, expect):
    with pytest.raises(ConfigError) as e:
        check_environment(settings(**data), "rl.environment")
    assert expect in str(e.value) and "\n" not in str(e.value)


def test_tool_schema_and_call_parsing():
    (tool,) = load_tools(["python_expression"], "tools")
    assert tool.name == "python_expression"
    assert tool.schema["function"]["parameters"]["required"] == ["expression"]
    assert "arithmetic" in tool.schema["function"]["description"]
    text = ('Let me compute. <tool_call>\n{"name": "python_expression", "arguments": {"expression": "6*7"}}\n'
            '</tool_call><tool_call>{"name": "f", "arguments": "{\\"a\\": 1}"}</tool_call>')
    assert parse_tool_calls(text) == [{"name": "python_expression", "arguments": {"expression": "6*7"}},
                                      {"name": "f", "arguments": {"a": 1}}]
    assert "error" in parse_tool_calls("<tool_call>{not json</tool_call>")[0]
    assert "error" in parse_tool_calls('<tool_call>{"arguments": {}}</tool_call>')[0]
    assert parse_tool_calls("no call here") == []
    # an unclosed last call (generation stopped at the limit) is still read
    assert parse_tool_calls('<tool_call>{"name": "g", "arguments": {}}')[0]["name"] == "g"


def test_sandbox_runs_tools_with_a_time_and_memory_limit():
    ok, text = run_tool("fnsft.envs.builtin_tools:python_expression", {"expression": "(17 + 4) * 3"}, 20, 256)
    assert (ok, text) == (True, "63")
    ok, text = run_tool("fnsft.envs.builtin_tools:python_expression", {"expression": "__import__('os')"}, 20, 256)
    assert not ok and "not allowed" in text
    ok, text = run_tool(f"{FIXTURES}:sleep", {"seconds": 60}, 1.5, 256)
    assert not ok and "1.5s limit" in text  # killed, not waited for
    ok, text = run_tool(f"{FIXTURES}:allocate", {"megabytes": 8}, 20, 256)
    assert (ok, text) == (True, "allocated 8 MiB")
    ok, text = run_tool(f"{FIXTURES}:allocate", {"megabytes": 1024}, 20, 256)
    assert not ok and "256 MiB memory limit" in text
    ok, text = run_tool(f"{FIXTURES}:sleep", {"wrong": 1}, 20, 256)
    assert not ok and "TypeError" in text


def test_tool_calls_become_tool_turns_and_other_replies_step_the_environment():
    s = settings(**{"class": f"{FIXTURES}:SecondReplyEnv", "tools": ["python_expression"]})
    env = build_spec(s, "rl.environment").factory()
    env.reset(options={"row": {"prompt": "What is 6 x 7?"}})
    call = '<tool_call>{"name": "python_expression", "arguments": {"expression": "6*7"}}</tool_call>'
    obs, reward, terminated, truncated, info = env.step(call + '<tool_call>{"name": "nope", "arguments": {}}</tool_call>')
    assert obs[0] == {"role": "tool", "name": "python_expression", "content": "42"}
    assert obs[1]["role"] == "tool" and "no tool named 'nope'" in obs[1]["content"]
    assert (reward, terminated, truncated, info) == (0.0, False, False, {"tool_calls": 2, "tool_errors": 1})
    assert env.step("42")[0] == "Now reply again."  # no tool call: the environment's own step


def test_actor_returns_errors_instead_of_raising():
    actor = EnvironmentActor(EnvironmentFactory(f"{FIXTURES}:BrokenEnv"))
    assert actor.reset("a", 0, {"prompt": "p"})["observation"] == "p"
    assert actor.step("a", "first")["observation"] == "Now reply again."
    assert "the environment broke" in actor.step("a", "second")["error"]
    assert "KeyError" in actor.step("unknown", "x")["error"]
    actor.close("a")
    assert actor.envs == {}
    assert "error" in EnvironmentActor(EnvironmentFactory(f"{FIXTURES}:SecondReplyEnv", {"bad": 1})).reset("b", 0, {})


def test_transcript_tokens_match_the_chat_template(tiny_model_dir):
    """The episode's token ids (model replies as sampled, environment turns bridged) decode to the
    template's rendering of the same conversation; the mask covers exactly the replies."""
    from fnsft.models.loading import load_tokenizer

    tok = load_tokenizer(tiny_model_dir, False, None)
    (tool,) = load_tools(["python_expression"], "tools")
    fmt = ChatFormat(tok, [tool.schema])
    assert fmt.system and "python_expression" in fmt.system  # this template ignores tools=
    t = fmt.first_prompt("What is 6 x 7?")
    eos = {tok.convert_tokens_to_ids("<|im_end|>")}
    turns = [("call it", [{"role": "tool", "name": "python_expression", "content": "42"}]),
             ("it is 42", [{"role": "user", "content": "Sure?"}])]
    for reply, observation in turns:
        ids = tok(reply, add_special_tokens=False)["input_ids"] + sorted(eos)
        t.add_reply(ids, reply)
        t.add_turns(fmt.bridge(observation, ids, eos), observation)
    truncated = tok("yes", add_special_tokens=False)["input_ids"]  # no EOS: the closing is bridged
    t.add_reply(truncated, "yes")
    t.add_turns(fmt.bridge([{"role": "user", "content": "ok"}], truncated, eos), [{"role": "user", "content": "ok"}])
    expected = tok.apply_chat_template(t.messages, add_generation_prompt=True, tokenize=False)
    assert tok.decode(t.context()) == expected
    model_tokens = [i for i, m in zip(t.ids, t.mask) if m]
    assert tok.decode(model_tokens) == "call it<|im_end|>it is 42<|im_end|>yes"
    assert json.dumps(t.messages)  # what the transcripts file stores


def test_tool_process_gets_no_keys_or_tokens(monkeypatch):
    """A tool runs with model-chosen arguments and its answer enters transcripts: secrets stay out."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fnsft-test-not-a-real-key")
    monkeypatch.setenv("FNSFT_TEST_PLAIN", "visible")
    assert run_tool(f"{FIXTURES}:read_env", {"name": "OPENAI_API_KEY"}, 20, 256) == (True, "<unset>")
    assert run_tool(f"{FIXTURES}:read_env", {"name": "FNSFT_TEST_PLAIN"}, 20, 256) == (True, "visible")

"""SFT format detection and normalisation (fnsft.data.formats) and prompt-only rows (fnsft.data.prompts)."""

import json
from pathlib import Path

import pytest

from fnsft.data.files import read_first_rows
from fnsft.data.formats import SFT_FORMATS, detect_sft_format, to_prompt_completion
from fnsft.data.labels import describe_format
from fnsft.data.prompts import detect_prompt_column, to_prompt_row
from fnsft.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FORMATS_DIR = EXAMPLES / "formats"


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def system(text):
    return {"role": "system", "content": text}


def single_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------- one test per format


def test_alpaca():
    rows = [
        {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5."},
        {"instruction": "Name a color.", "output": "Blue."},  # input is optional
    ]
    assert detect_sft_format(rows, "a.jsonl") == "alpaca"
    assert to_prompt_completion(rows[0], "alpaca") == {
        "prompt": [user("Add the numbers.\n\n2 and 3")],
        "completion": [assistant("5.")],
    }
    assert to_prompt_completion(rows[1], "alpaca")["prompt"] == [user("Name a color.")]


def test_alpaca_system_column_and_system_prompt():
    row = {"instruction": "Hi", "input": "", "output": "Hello!", "system": "Be kind."}
    assert to_prompt_completion(row, "alpaca", system_prompt="ignored")["prompt"] == [system("Be kind."), user("Hi")]
    row.pop("system")
    assert to_prompt_completion(row, "alpaca", system_prompt="Be brief.")["prompt"] == [system("Be brief."), user("Hi")]


def test_sharegpt_takes_last_assistant_turn_as_completion():
    row = {
        "conversations": [
            {"from": "system", "value": "Be brief."},
            {"from": "human", "value": "Hi"},
            {"from": "gpt", "value": "Hello!"},
            {"from": "human", "value": "What is 2 + 2?"},
            {"from": "gpt", "value": "4."},
        ]
    }
    assert detect_sft_format([row], "s.jsonl") == "sharegpt"
    assert to_prompt_completion(row, "sharegpt") == {
        "prompt": [system("Be brief."), user("Hi"), assistant("Hello!"), user("What is 2 + 2?")],
        "completion": [assistant("4.")],
    }


def test_messages():
    row = {"messages": [user("Capital of Peru?"), assistant("Lima.")]}
    assert detect_sft_format([row], "m.jsonl") == "messages"
    out = to_prompt_completion(row, "messages", system_prompt="Answer briefly.")
    assert out == {"prompt": [system("Answer briefly."), user("Capital of Peru?")], "completion": [assistant("Lima.")]}


def test_prompt_completion_strings_stay_strings():
    row = {"prompt": "The sky is", "completion": " blue."}
    assert detect_sft_format([row], "pc.jsonl") == "prompt_completion"
    assert to_prompt_completion(row, "prompt_completion", system_prompt="unused") == row


def test_prompt_completion_strings_as_chat():
    # apply_chat_template: true -> a user turn and an assistant answer (what the RL stage generates from).
    row = {"prompt": "What is 6 × 7?", "answer": "42"}
    out = to_prompt_completion(row, "prompt_completion", {"answer": "completion"}, as_chat=True)
    assert out == {"prompt": [user("What is 6 × 7?")], "completion": [assistant("42")]}
    sys_out = to_prompt_completion(row, "prompt_completion", {"answer": "completion"}, "Be brief.", as_chat=True)
    assert sys_out["prompt"] == [{"role": "system", "content": "Be brief."}, user("What is 6 × 7?")]


def test_prompt_completion_messages():
    row = {"prompt": [user("6 × 7?")], "completion": [assistant("42.")]}
    assert detect_sft_format([row], "pc.jsonl") == "prompt_completion"
    assert to_prompt_completion(row, "prompt_completion") == {"prompt": [user("6 × 7?")], "completion": [assistant("42.")]}
    mixed = {"prompt": [user("6 × 7?")], "completion": "42."}  # string completion next to a message prompt
    assert to_prompt_completion(mixed, "prompt_completion")["completion"] == [assistant("42.")]


def test_text():
    row = {"text": "Once upon a time."}
    assert detect_sft_format([row], "t.jsonl") == "text"
    assert to_prompt_completion(row, "text") == row


@pytest.mark.parametrize(
    "name, fmt",
    [
        ("alpaca.jsonl", "alpaca"),
        ("alpaca.csv", "alpaca"),
        ("alpaca.parquet", "alpaca"),
        ("sharegpt.jsonl", "sharegpt"),
        ("messages.jsonl", "messages"),
        ("prompt_completion.jsonl", "prompt_completion"),
        ("prompt_completion_messages.jsonl", "prompt_completion"),
        ("text.jsonl", "text"),
    ],
)
def test_shipped_format_examples(name, fmt):
    path = str(FORMATS_DIR / name)
    rows = read_first_rows(path, n=100)
    assert 6 <= len(rows) <= 10
    assert detect_sft_format(rows, path) == fmt
    for i, row in enumerate(rows):
        out = to_prompt_completion(row, fmt, index=i, source=path)
        if fmt == "text":
            assert out["text"]
        else:
            assert out["prompt"] and out["completion"]


def test_sample_data_is_300_alpaca_rows():
    path = str(EXAMPLES / "sample_data.jsonl")
    rows = read_first_rows(path, n=1000)
    assert len(rows) == 300
    assert detect_sft_format(rows, path) == "alpaca"
    for i, row in enumerate(rows):
        assert len(row["output"].split()) <= 60
        to_prompt_completion(row, "alpaca", index=i, source=path)


def test_describe_format():
    assert describe_format("alpaca") == "alpaca (instruction/input/output)"
    assert describe_format("pairwise").startswith("pairwise (")
    assert all(describe_format(f) != f for f in SFT_FORMATS)


# ---------------------------------------------------------------- column mapping


def test_column_mapping_renames_before_detection():
    rows = [{"question": "What is 3 + 4?", "answer": "7", "id": 1}]
    mapping = {"question": "prompt", "answer": "completion"}
    assert detect_sft_format(rows, "qa.jsonl", mapping) == "prompt_completion"
    assert to_prompt_completion(rows[0], "prompt_completion", mapping) == {"prompt": "What is 3 + 4?", "completion": "7"}


def test_column_mapping_to_alpaca_and_messages():
    row = {"task": "Name a fruit.", "context": "", "response": "Apple."}
    mapping = {"task": "instruction", "context": "input", "response": "output"}
    assert detect_sft_format([row], "x.jsonl", mapping) == "alpaca"
    chat = {"dialog": [user("Hi"), assistant("Hello")]}
    assert detect_sft_format([chat], "x.jsonl", {"dialog": "messages"}) == "messages"
    assert to_prompt_completion(chat, "messages", {"dialog": "messages"})["completion"] == [assistant("Hello")]


# ---------------------------------------------------------------- clear errors


def test_unknown_columns_error_lists_columns_and_formats():
    rows = [{"a": 1, "b": 2, "c": 3}]
    with pytest.raises(ConfigError) as err:
        detect_sft_format(rows, "x.jsonl")
    msg = single_line(err)
    assert msg.startswith("data file x.jsonl: cannot detect the dataset format; columns found: a, b, c; ")
    for label in (
        "alpaca (instruction/input/output)",
        "sharegpt (conversations[from,value])",
        "messages (messages[role,content])",
        "prompt_completion (prompt/completion)",
        "text (text)",
    ):
        assert label in msg
    assert msg.endswith("set dataset_format and column_mapping to choose one")


def test_unknown_error_mentions_mapping_result():
    with pytest.raises(ConfigError, match=r"columns found: q, a \(after column_mapping: prompt, a\)"):
        detect_sft_format([{"q": "x", "a": "y"}], "x.jsonl", {"q": "prompt"})


def test_mixed_formats_error():
    rows = [{"instruction": "Hi", "output": "Hello"}, {"text": "plain text"}]
    with pytest.raises(ConfigError) as err:
        detect_sft_format(rows, "mixed.jsonl")
    msg = single_line(err)
    assert "mixed.jsonl" in msg and "row 0: alpaca" in msg and "row 1: text" in msg
    assert "dataset_format" in msg


def test_wrong_types_are_not_detected():
    with pytest.raises(ConfigError, match="cannot detect"):
        detect_sft_format([{"messages": "not a list"}], "x.jsonl")
    with pytest.raises(ConfigError, match="cannot detect"):
        detect_sft_format([{"instruction": "x", "output": ["a", "b"]}], "x.jsonl")


def test_empty_rows_error():
    with pytest.raises(ConfigError, match="empty.jsonl: no rows.*is the data empty"):
        detect_sft_format([], "empty.jsonl")


def test_row_without_assistant_turn_names_row():
    row = {"messages": [user("Hello?")]}
    with pytest.raises(ConfigError) as err:
        to_prompt_completion(row, "messages", index=7, source="chat.jsonl")
    assert "chat.jsonl row 7" in single_line(err) and "no assistant turn" in str(err.value)


@pytest.mark.parametrize(
    "row, fmt",
    [
        ({"instruction": "Say hi.", "input": "", "output": "  "}, "alpaca"),
        ({"messages": [user("Hi"), assistant("")]}, "messages"),
        ({"prompt": "Hi", "completion": ""}, "prompt_completion"),
        ({"text": ""}, "text"),
    ],
)
def test_empty_completion_names_row(row, fmt):
    with pytest.raises(ConfigError, match=r"d\.jsonl row 3: .*empty"):
        to_prompt_completion(row, fmt, index=3, source="d.jsonl")


def test_unknown_role_and_format():
    with pytest.raises(ConfigError, match="unknown role 'narrator'"):
        to_prompt_completion({"conversations": [{"from": "narrator", "value": "x"}]}, "sharegpt", index=0)
    with pytest.raises(ConfigError, match="unknown SFT dataset_format 'chatml'; accepted: alpaca"):
        to_prompt_completion({"text": "x"}, "chatml")


def test_missing_column_for_chosen_format():
    with pytest.raises(ConfigError, match=r"row 2: missing column 'output' for format alpaca"):
        to_prompt_completion({"instruction": "x"}, "alpaca", index=2, source="d.jsonl")


# ---------------------------------------------------------------- prompt-only rows (RL)


def test_prompt_column_string_keeps_extra_columns():
    rows = [{"prompt": "What is 7 + 5? Answer with just the number.", "answer": "12"}]
    assert detect_prompt_column(rows, "a.jsonl") == "prompt"
    assert to_prompt_row(rows[0], "prompt") == rows[0]


def test_prompt_column_messages():
    rows = [{"prompt": [system("Be brief."), user("Hi")], "id": 3}]
    assert detect_prompt_column(rows, "a.jsonl") == "prompt"
    assert to_prompt_row(rows[0], "prompt") == {"prompt": [system("Be brief."), user("Hi")], "id": 3}


def test_question_column():
    rows = [{"question": "What is 2 + 2?", "answer": "4"}]
    assert detect_prompt_column(rows, "gsm.jsonl") == "question"
    assert to_prompt_row(rows[0], "question") == {"prompt": "What is 2 + 2?", "answer": "4"}


def test_messages_ending_in_user_turn():
    rows = [{"messages": [{"from": "human", "value": "Tell me a joke."}], "topic": "humor"}]
    assert detect_prompt_column(rows, "c.jsonl") == "messages"
    assert to_prompt_row(rows[0], "messages") == {"prompt": [user("Tell me a joke.")], "topic": "humor"}
    with pytest.raises(ConfigError, match="cannot detect"):
        detect_prompt_column([{"messages": [user("Hi"), assistant("Hello")]}], "c.jsonl")


def test_prompt_column_mapping_and_error():
    rows = [{"query": "Hi?", "gold": "Hello"}]
    with pytest.raises(ConfigError) as err:
        detect_prompt_column(rows, "q.jsonl")
    msg = single_line(err)
    assert "columns found: query, gold" in msg and "prompt (string or messages)" in msg and "question" in msg
    assert detect_prompt_column(rows, "q.jsonl", {"query": "prompt"}) == "prompt"
    assert to_prompt_row(rows[0], "prompt", {"query": "prompt"}) == {"prompt": "Hi?", "gold": "Hello"}


def test_empty_prompt_row_names_row():
    with pytest.raises(ConfigError, match=r"p\.jsonl row 4: prompt is empty"):
        to_prompt_row({"prompt": " ", "answer": "1"}, "prompt", index=4, source="p.jsonl")


def test_arithmetic_example_files():
    for name, n in (("train.jsonl", None), ("eval.jsonl", 50)):
        path = EXAMPLES / "arithmetic" / name
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        assert n is None or len(rows) == n
        assert detect_prompt_column(rows, str(path)) == "prompt"
        for row in rows:
            assert to_prompt_row(row, "prompt")["answer"].lstrip("-").isdigit()

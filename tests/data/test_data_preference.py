"""Preference (DPO) format detection, normalisation and unusable-pair screening (fnsft.data.preference)."""

from pathlib import Path

import pytest

from fnsft.data.files import read_first_rows
from fnsft.data.preference import (
    PREFERENCE_FORMATS,
    detect_preference_format,
    normalize_preference_row,
    normalize_preference_rows,
)
from fnsft.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FORMATS_DIR = EXAMPLES / "formats"
CLEAN = {"identical": 0, "empty_response": 0, "missing_prompt": 0}


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def single_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------- one test per format


def test_explicit_strings():
    rows = [{"prompt": "Capital of Peru?", "chosen": "Lima.", "rejected": "Quito.", "score": 3}]
    assert detect_preference_format(rows, "p.jsonl") == "prompt_chosen_rejected"
    out, report = normalize_preference_rows(rows, "prompt_chosen_rejected", "p.jsonl")
    assert out == [{"prompt": "Capital of Peru?", "chosen": "Lima.", "rejected": "Quito."}]
    assert report == {"total": 1, "dropped": 0, "reasons": CLEAN}


def test_explicit_conversational():
    rows = [{"prompt": [user("2 + 2?")], "chosen": [assistant("4")], "rejected": [assistant("5")]}]
    assert detect_preference_format(rows, "p.jsonl") == "prompt_chosen_rejected"
    out, _ = normalize_preference_rows(rows, "prompt_chosen_rejected", "p.jsonl")
    assert out == [{"prompt": [user("2 + 2?")], "chosen": [assistant("4")], "rejected": [assistant("5")]}]


def test_explicit_string_prompt_with_full_conversations():
    # UltraFeedback style: chosen/rejected repeat the prompt as a user turn.
    row = {
        "prompt": "2 + 2?",
        "chosen": [user("2 + 2?"), assistant("4")],
        "rejected": [user("2 + 2?"), assistant("22")],
    }
    out, _ = normalize_preference_rows([row], "prompt_chosen_rejected", "p.jsonl")
    assert out == [{"prompt": [user("2 + 2?")], "chosen": [assistant("4")], "rejected": [assistant("22")]}]


def test_implicit_prompt():
    shared = [{"role": "system", "content": "Be brief."}, user("Name a planet with rings.")]
    rows = [{"chosen": shared + [assistant("Saturn.")], "rejected": shared + [assistant("Mercury.")]}]
    assert detect_preference_format(rows, "i.jsonl") == "implicit_prompt"
    out, _ = normalize_preference_rows(rows, "implicit_prompt", "i.jsonl")
    assert out == [{"prompt": shared, "chosen": [assistant("Saturn.")], "rejected": [assistant("Mercury.")]}]


def test_implicit_prompt_mismatch_is_unusable():
    row = {"chosen": [user("A?"), assistant("a")], "rejected": [user("B?"), assistant("b")]}
    assert normalize_preference_row(row, "implicit_prompt") == (None, "missing_prompt")
    with pytest.raises(ConfigError, match=r"i\.jsonl: 1 unusable preference pair \(missing or mismatched prompt: row 0\)"):
        normalize_preference_rows([row], "implicit_prompt", "i.jsonl")


def test_hh_rlhf():
    prefix = "\n\nHuman: Hi!\n\nAssistant: Hello!\n\nHuman: Capital of Peru?\n\nAssistant:"
    rows = [{"chosen": prefix + " Lima.", "rejected": prefix + " Bogotá."}]
    assert detect_preference_format(rows, "hh.jsonl") == "hh_rlhf"
    out, _ = normalize_preference_rows(rows, "hh_rlhf", "hh.jsonl")
    assert out == [{"prompt": prefix, "chosen": " Lima.", "rejected": " Bogotá."}]


@pytest.mark.parametrize(
    "preference, chosen",
    [("a", "Oslo."), ("A", "Oslo."), ("b", "Bergen."), ("B", "Bergen."), (1, "Oslo."), (2, "Bergen."), ("2", "Bergen.")],
)
def test_pairwise(preference, chosen):
    row = {"prompt": "Capital of Norway?", "response_a": "Oslo.", "response_b": "Bergen.", "preference": preference}
    assert detect_preference_format([row], "pw.jsonl") == "pairwise"
    out, _ = normalize_preference_rows([row], "pairwise", "pw.jsonl")
    rejected = "Bergen." if chosen == "Oslo." else "Oslo."
    assert out == [{"prompt": "Capital of Norway?", "chosen": chosen, "rejected": rejected}]


@pytest.mark.parametrize("preference", [0, 3, "tie", True, None, "c"])
def test_pairwise_rejects_ambiguous_preference(preference):
    row = {"prompt": "Q?", "response_a": "x", "response_b": "y", "preference": preference}
    with pytest.raises(ConfigError) as err:
        normalize_preference_rows([row], "pairwise", "pw.jsonl", drop_invalid=True)
    msg = single_line(err)
    assert "pw.jsonl row 0" in msg and "'a' or 'b'" in msg and "1 = response_a, 2 = response_b" in msg


@pytest.mark.parametrize(
    "name, fmt",
    [
        ("pref_explicit.jsonl", "prompt_chosen_rejected"),
        ("pref_implicit.jsonl", "implicit_prompt"),
        ("pref_hh.jsonl", "hh_rlhf"),
        ("pref_pairwise.jsonl", "pairwise"),
    ],
)
def test_shipped_preference_examples(name, fmt):
    path = str(FORMATS_DIR / name)
    rows = read_first_rows(path, n=100)
    assert 6 <= len(rows) <= 10
    assert detect_preference_format(rows, path) == fmt
    out, report = normalize_preference_rows(rows, fmt, path)
    assert len(out) == len(rows) and report["dropped"] == 0


def test_shipped_preferences_file():
    path = str(EXAMPLES / "preferences.jsonl")
    rows = read_first_rows(path, n=1000)
    assert len(rows) == 200
    assert detect_preference_format(rows, path) == "prompt_chosen_rejected"
    out, report = normalize_preference_rows(rows, "prompt_chosen_rejected", path)
    assert len(out) == 200 and report["dropped"] == 0


def test_all_formats_are_covered():
    assert set(PREFERENCE_FORMATS) == {"prompt_chosen_rejected", "implicit_prompt", "hh_rlhf", "pairwise"}


# ---------------------------------------------------------------- detection errors


def test_unknown_columns_error_lists_columns_and_formats():
    rows = [{"question": "Q", "good": "a", "bad": "b"}]
    with pytest.raises(ConfigError) as err:
        detect_preference_format(rows, "prefs.jsonl")
    msg = single_line(err)
    assert "prefs.jsonl: cannot detect the dataset format; columns found: question, good, bad" in msg
    for fmt in PREFERENCE_FORMATS:
        assert fmt + " (" in msg
    assert detect_preference_format(
        rows, "prefs.jsonl", {"question": "prompt", "good": "chosen", "bad": "rejected"}
    ) == "prompt_chosen_rejected"


def test_chosen_rejected_plain_strings_without_prompt_are_not_detected():
    with pytest.raises(ConfigError, match="cannot detect"):
        detect_preference_format([{"chosen": "good", "rejected": "bad"}], "p.jsonl")


def test_mixed_preference_formats_error():
    rows = [
        {"prompt": "Q", "chosen": "a", "rejected": "b"},
        {"prompt": "Q", "response_a": "a", "response_b": "b", "preference": "a"},
    ]
    with pytest.raises(ConfigError, match=r"different preference formats \(row 0: prompt_chosen_rejected, row 1: pairwise\)"):
        detect_preference_format(rows, "p.jsonl")


# ---------------------------------------------------------------- unusable pairs

GOOD = {"prompt": "Capital of Peru?", "chosen": "Lima.", "rejected": "Quito."}


@pytest.mark.parametrize(
    "bad, reason, words",
    [
        ({"prompt": "Q?", "chosen": "Same.", "rejected": " Same. "}, "identical", "identical chosen/rejected: row 1"),
        ({"prompt": "Q?", "chosen": "", "rejected": "No."}, "empty_response", "empty response: row 1"),
        ({"prompt": "Q?", "chosen": "Yes.", "rejected": None}, "empty_response", "empty response: row 1"),
        ({"prompt": "  ", "chosen": "Yes.", "rejected": "No."}, "missing_prompt", "missing or mismatched prompt: row 1"),
        ({"prompt": None, "chosen": "Yes.", "rejected": "No."}, "missing_prompt", "missing or mismatched prompt: row 1"),
    ],
)
def test_unusable_pair_raises_then_drops(bad, reason, words):
    rows = [GOOD, bad, GOOD]
    with pytest.raises(ConfigError) as err:
        normalize_preference_rows(rows, "prompt_chosen_rejected", "preferences.jsonl")
    msg = single_line(err)
    assert msg.startswith("preferences.jsonl: 1 unusable preference pair (")
    assert words in msg
    assert msg.endswith("fix them or set drop_invalid_pairs: true to drop them")

    out, report = normalize_preference_rows(rows, "prompt_chosen_rejected", "preferences.jsonl", drop_invalid=True)
    assert out == [GOOD, GOOD]
    assert report == {"total": 3, "dropped": 1, "reasons": {**CLEAN, reason: 1}}


def test_unusable_conversational_pairs():
    ok = {"prompt": [user("Q?")], "chosen": [assistant("a")], "rejected": [assistant("b")]}
    no_answer = {"prompt": [user("Q?")], "chosen": [user("oops")], "rejected": [assistant("b")]}
    same = {"prompt": [user("Q?")], "chosen": [assistant("a")], "rejected": [assistant("a")]}
    empty_prompt = {"prompt": [], "chosen": [assistant("a")], "rejected": [assistant("b")]}
    out, report = normalize_preference_rows(
        [ok, no_answer, same, empty_prompt], "prompt_chosen_rejected", "c.jsonl", drop_invalid=True
    )
    assert len(out) == 1
    assert report["reasons"] == {"identical": 1, "empty_response": 1, "missing_prompt": 1}


def test_implicit_without_prompt_turns_is_missing_prompt():
    row = {"chosen": [assistant("a")], "rejected": [assistant("b")]}
    assert normalize_preference_row(row, "implicit_prompt") == (None, "missing_prompt")


def test_message_lists_all_reasons():
    rows = [GOOD] * 4 + [
        {"prompt": "Q", "chosen": "x", "rejected": "x"},  # 4
        GOOD,
        {"prompt": "", "chosen": "x", "rejected": "y"},  # 6
        {"prompt": "Q", "chosen": "x", "rejected": "x"},  # 7
        {"prompt": "Q", "chosen": "x", "rejected": ""},  # 8
    ]
    with pytest.raises(ConfigError) as err:
        normalize_preference_rows(rows, "prompt_chosen_rejected", "preferences.jsonl")
    assert single_line(err) == (
        "preferences.jsonl: 4 unusable preference pairs (identical chosen/rejected: rows 4, 7; "
        "empty response: row 8; missing or mismatched prompt: row 6); fix them or set drop_invalid_pairs: true to drop them"
    )


def test_long_row_lists_are_truncated():
    rows = [{"prompt": "Q", "chosen": "x", "rejected": "x"}] * 25 + [GOOD]
    with pytest.raises(ConfigError, match=r"rows 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 and 15 more\)"):
        normalize_preference_rows(rows, "prompt_chosen_rejected", "p.jsonl")


def test_all_rows_unusable_is_an_error_even_when_dropping():
    rows = [{"prompt": "Q", "chosen": "x", "rejected": "x"}]
    with pytest.raises(ConfigError, match="all 1 preference pairs are unusable"):
        normalize_preference_rows(rows, "prompt_chosen_rejected", "p.jsonl", drop_invalid=True)


def test_column_mapping_in_normalisation():
    rows = [{"q": "Q?", "good": "yes", "bad": "no"}]
    mapping = {"q": "prompt", "good": "chosen", "bad": "rejected"}
    out, _ = normalize_preference_rows(rows, "prompt_chosen_rejected", "p.jsonl", column_mapping=mapping)
    assert out == [{"prompt": "Q?", "chosen": "yes", "rejected": "no"}]


def test_hh_identical_and_empty():
    prefix = "\n\nHuman: Hi\n\nAssistant:"
    same = {"chosen": prefix + " Hello", "rejected": prefix + " Hello"}
    empty = {"chosen": prefix + " Hello", "rejected": prefix}
    assert normalize_preference_row(same, "hh_rlhf") == (None, "identical")
    assert normalize_preference_row(empty, "hh_rlhf") == (None, "empty_response")
    diverged = {"chosen": prefix + " Hello", "rejected": "\n\nHuman: Bye\n\nAssistant: Ciao"}
    assert normalize_preference_row(diverged, "hh_rlhf") == (None, "missing_prompt")

"""Human labels of the dataset formats (the ``dataset_format`` YAML key), for logs and errors.

Shared by :mod:`fnsft.data.formats` (SFT) and :mod:`fnsft.data.preference` (DPO), which both
describe formats, so neither has to import the other for them.
"""

from __future__ import annotations

SFT_LABELS = {
    "alpaca": "alpaca (instruction/input/output)",
    "sharegpt": "sharegpt (conversations[from,value])",
    "messages": "messages (messages[role,content])",
    "prompt_completion": "prompt_completion (prompt/completion)",
    "text": "text (text)",
}

PREFERENCE_LABELS = {
    "prompt_chosen_rejected": "prompt_chosen_rejected (prompt/chosen/rejected)",
    "implicit_prompt": "implicit_prompt (chosen/rejected conversations sharing a prompt)",
    "hh_rlhf": "hh_rlhf (chosen/rejected '\\n\\nHuman: ... \\n\\nAssistant: ...' text)",
    "pairwise": "pairwise (prompt/response_a/response_b/preference)",
}


def describe_format(fmt: str) -> str:
    """A short human label for a format, for logs: ``"alpaca (instruction/input/output)"``."""
    return SFT_LABELS.get(fmt) or PREFERENCE_LABELS.get(fmt) or fmt

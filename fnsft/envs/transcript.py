"""One episode's tokens: the model's replies (in the loss) and the environment's turns (masked).

The model generates each turn from exactly the tokens the learner later scores: the transcript
is kept as token ids, the model's own tokens appended as sampled (never re-tokenized), and each
environment or tool turn appended as the chat template renders it (:meth:`ChatFormat.bridge`).
``mask`` is 1 on the model's tokens only, so the loss and the KL cover them alone, for every
algorithm (``completion_mask``); the environment's tokens are attended (``completion_attention``)
and carry GAE's recursion through (:func:`fnsft.rl.advantages.gae` skips masked positions).
The same design as veRL's agent loop and verifiers' multi-turn masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

PLACEHOLDER = "FNSFT_PLACEHOLDER_REPLY"  # a reply no template changes, to find where a turn closes


@dataclass
class Transcript:
    """``messages`` so far; ``prompt_ids`` the first prompt's tokens; ``ids``/``mask`` what follows."""

    messages: list[dict]
    prompt_ids: list[int]
    ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    replies: list[list[int]] = field(default_factory=list)

    def context(self) -> list[int]:
        """The tokens the next reply is generated from."""
        return self.prompt_ids + self.ids

    def add_reply(self, ids: list[int], text: str) -> None:
        self.ids += ids
        self.mask += [1] * len(ids)
        self.replies.append(list(ids))
        self.messages.append({"role": "assistant", "content": text})

    def add_turns(self, ids: list[int], messages: list[dict]) -> None:
        self.ids += ids
        self.mask += [0] * len(ids)
        self.messages += messages


def as_messages(observation: Any) -> list[dict]:
    """An observation as chat messages: a string is the next user turn; a message dict or a list
    of them (``tool`` turns) passes as is."""
    if isinstance(observation, dict):
        return [observation]
    if isinstance(observation, list):
        return [m if isinstance(m, dict) else {"role": "user", "content": str(m)} for m in observation]
    return [{"role": "user", "content": str(observation)}]


class ChatFormat:
    """The chat template applied to episodes, with the tools' schemas (``tools=``).

    A template that ignores ``tools=`` (it renders the same with and without) gets the tools
    described in a system message instead (:func:`fnsft.envs.tools.tool_system_prompt`).
    """

    def __init__(self, tokenizer, schemas: Optional[list[dict]] = None):
        from fnsft.envs.tools import tool_system_prompt

        self.tokenizer = tokenizer
        self.tools = list(schemas or []) or None
        self.system = None
        if self.tools:
            probe = [{"role": "user", "content": "U"}]
            if self._render(probe, False, tools=None) == self._render(probe, False):
                self.system = tool_system_prompt(self.tools)
        base = [{"role": "user", "content": "U"}, {"role": "assistant", "content": PLACEHOLDER}]
        self._base = self._render(base, False)
        # what closes the model's turn after its text (e.g. "<|im_end|>\n")
        self._closing = self._base[self._base.rindex(PLACEHOLDER) + len(PLACEHOLDER):]

    def _render(self, messages: list[dict], add_generation_prompt: bool, tools: Any = "default") -> str:
        tools = self.tools if tools == "default" else tools
        kwargs = {"tools": tools} if tools else {}
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt,
                                                  tokenize=False, **kwargs)

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def first_prompt(self, first: Any) -> Transcript:
        """The transcript of a new episode from ``reset``'s first message (a string or messages)."""
        messages = [dict(m) for m in first] if isinstance(first, list) else [{"role": "user", "content": str(first)}]
        if self.system:
            if messages and messages[0].get("role") == "system":
                messages[0]["content"] = f"{messages[0]['content']}\n\n{self.system}"
            else:
                messages.insert(0, {"role": "system", "content": self.system})
        return Transcript(messages, self._encode(self._render(messages, True)))

    def bridge(self, messages: list[dict], reply_ids: list[int], eos_ids: set[int]) -> list[int]:
        """Tokens between the model's last reply (as sampled) and its next one: the rest of the
        reply's closing, ``messages`` (user or ``tool`` turns) and the next generation prompt."""
        after = self._render([{"role": "user", "content": "U"}, {"role": "assistant", "content": PLACEHOLDER},
                              *messages], True)
        if not after.startswith(self._base):
            from fnsft.errors import StageError

            raise StageError("the chat template renders a conversation differently once a turn follows the "
                             "assistant's reply; multi-turn episodes need a template whose earlier turns stay as "
                             "they were (set chat_template)")
        closing = self._closing
        if reply_ids and reply_ids[-1] in eos_ids:  # the model already wrote its end of turn
            eos = self.tokenizer.decode([reply_ids[-1]])
            closing = closing[len(eos):] if closing.startswith(eos) else closing
        return self._encode(closing + after[len(self._base):])

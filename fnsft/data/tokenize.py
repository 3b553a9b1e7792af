"""SFT rows to TRL's processed columns in one pass, as a Ray Data batch function (YAML
``stage_configs.sft.data_streaming``).

:class:`SFTTokenizeBatch` runs in Ray Data's workers (``map_batches`` with a callable class, so
each worker loads the tokenizer once): it parses a batch of raw rows, converts them to TRL's
prompt/completion shape (:func:`fnsft.data.formats.to_prompt_completion`) and tokenizes them the
way TRL 1.16's ``SFTTrainer._prepare_dataset`` does. Its output holds ``input_ids`` (and
``completion_mask`` for prompt/completion rows), so TRL finds the set processed (``is_processed``:
an ``input_ids`` column) and only builds labels and truncates; it does not tokenize again.

The same pass adds ``length`` (tokens before truncation), ``truncated`` (``length >
max_length``) and ``row_id`` (a 64-bit hash of the tokens): the worker sums them as it streams,
so the truncation count and useful tokens need no second pass over the data, and ``row_id``
keeps the held-out rows out of the training stream (:func:`row_id`).
"""

from __future__ import annotations

import hashlib
import json
from array import array
from typing import Any, Iterable, Optional

from fnsft.errors import ConfigError

# The columns the stream carries to the Train workers (TRL reads the first two).
STREAM_COLUMNS = ("input_ids", "completion_mask", "length", "truncated", "row_id")


def row_id(input_ids: Iterable[int]) -> int:
    """A signed 64-bit id of a tokenized row (blake2b of its token ids): equal rows share it."""
    digest = hashlib.blake2b(array("q", input_ids).tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def _ids(out: Any) -> list[int]:
    """``input_ids`` of an ``apply_chat_template(..., return_dict=True)`` or a tokenizer call."""
    return list(out["input_ids"])


def tokenize_sft_row(tokenizer, row: dict) -> dict[str, list[int]]:
    """One converted row (``{"text"}`` or ``{"prompt", "completion"}``) tokenized as TRL 1.16's
    ``SFTTrainer`` tokenizes it: plain strings get the EOS token appended (TRL's ``add_eos``),
    conversations go through the chat template; the completion starts where the tokenized
    prompt and prompt+completion diverge (TRL's ``common_prefix_length``)."""
    eos = tokenizer.eos_token
    if "text" in row:
        text = row["text"] if row["text"].endswith(eos) else row["text"] + eos
        return {"input_ids": _ids(tokenizer(text=text))}
    prompt, completion = row["prompt"], row["completion"]
    if isinstance(prompt, list):  # conversational
        prompt_ids = _ids(tokenizer.apply_chat_template(prompt, tokenize=True, return_dict=True,
                                                        add_generation_prompt=True))
        full = _ids(tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=True))
    else:
        completion = completion if completion.endswith(eos) else completion + eos
        prompt_ids = _ids(tokenizer(text=prompt))
        full = _ids(tokenizer(text=prompt + completion))
    start = 0
    while start < min(len(prompt_ids), len(full)) and prompt_ids[start] == full[start]:
        start += 1
    return {"input_ids": full, "completion_mask": [0] * start + [1] * (len(full) - start)}


def find_line(path: str, text: Optional[str]) -> Optional[int]:
    """The 1-based number of the first line of the local file ``path`` equal to ``text`` (a row
    Ray Data's ``read_text`` gave without its line number), or None (not found, not readable here)."""
    if text is None:
        return None
    try:
        with open(path, "rb") as f:
            want = text.encode("utf-8")
            for n, line in enumerate(f, start=1):
                if line.rstrip(b"\r\n") == want:
                    return n
    except OSError:
        return None
    return None


class SFTTokenizeBatch:
    """Ray Data ``map_batches`` callable: raw rows -> TRL's processed SFT columns.

    ``fmt``, ``column_mapping``, ``system_prompt``, ``as_chat``: as the SFT stage's config
    (:class:`fnsft.stages.sft.SFTConfig`). ``json_lines``: each row's ``text`` column is one JSON
    Lines line to parse (``ray.data.read_text``); otherwise rows arrive as columns (CSV,
    parquet). ``exclude``: ``row_id`` values to drop (the held-out rows); ``skip_from``: the name of
    a :class:`~fnsft.data.stream_skip.SkipRows` actor whose ids are dropped too (read once, when
    this instance starts: each Ray Data execution, i.e. each epoch, starts new ones). ``source``
    names the data in errors.
    """

    def __init__(self, tokenizer_path: str, *, fmt: str, max_length: int, source: str,
                 column_mapping: Optional[dict] = None, system_prompt: Optional[str] = None,
                 as_chat: bool = False, chat_template: Optional[str] = None, trust_remote_code: bool = False,
                 json_lines: bool = False, exclude: Iterable[int] = (), skip_from: Optional[str] = None):
        from fnsft.models.loading import load_tokenizer

        self.tokenizer = load_tokenizer(tokenizer_path, trust_remote_code, chat_template)
        self.fmt, self.max_length, self.source = fmt, max_length, source
        self.mapping, self.system_prompt, self.as_chat = column_mapping or None, system_prompt, as_chat
        self.json_lines, self.exclude = json_lines, frozenset(exclude)
        if skip_from:  # a resumed epoch: the rows trained on before the restart (fnsft.data.stream_skip)
            from fnsft.data.stream_skip import skip_ids

            self.exclude |= skip_ids(skip_from)

    def _parse(self, row: dict) -> dict:
        if not self.json_lines:
            return row
        try:
            parsed = json.loads(row["text"])
        except json.JSONDecodeError as e:
            raise ConfigError(f"data file {self._where(row)}: invalid JSON ({e.msg}): {row['text'][:60]!r}; "
                              "each line must be one JSON object") from None
        if not isinstance(parsed, dict):
            raise ConfigError(f"data file {self._where(row)}: expected a JSON object per line, got "
                              f"{type(parsed).__name__}: {row['text'][:60]!r}")
        return parsed

    def _where(self, raw: dict) -> str:
        """Where a bad raw row sits: ``<file> line N`` for JSON Lines (the file searched for the
        row's text: only on this error path), ``<file> record N`` for a .json list (the reader
        names it), else the stage's data path."""
        if raw.get("where"):
            return raw["where"]
        line = find_line(raw.get("path"), raw.get("text")) if raw.get("path") else None
        return f"{raw['path']} line {line}" if line else self.source

    def _convert(self, raw: dict) -> dict:
        from fnsft.data.formats import to_prompt_completion

        args = (self.fmt, self.mapping, self.system_prompt)
        try:
            return to_prompt_completion(self._parse(raw), *args, source=self.source, as_chat=self.as_chat)
        except ConfigError:
            if not self.json_lines:
                raise
            # the same conversion again, its message now naming the row's file and line
            return to_prompt_completion(self._parse(raw), *args, source=self._where(raw), as_chat=self.as_chat)

    def rows(self, raw_rows: Iterable[dict]) -> list[dict]:
        """The processed rows of ``raw_rows`` (the held-out ones left out), as dicts."""
        out = []
        for raw in raw_rows:
            row = self._convert(raw)
            tokens = tokenize_sft_row(self.tokenizer, row)
            rid = row_id(tokens["input_ids"])
            if rid in self.exclude:
                continue
            n = len(tokens["input_ids"])
            out.append({**tokens, "length": n, "truncated": n > self.max_length, "row_id": rid})
        return out

    def __call__(self, batch):
        """A pyarrow batch in, a pyarrow table out (one schema for every block, even an empty one)."""
        import pyarrow as pa

        rows = self.rows(batch.to_pylist())
        fields = [("input_ids", pa.list_(pa.int32()))]
        if self.fmt != "text":
            fields.append(("completion_mask", pa.list_(pa.int8())))
        fields += [("length", pa.int32()), ("truncated", pa.bool_()), ("row_id", pa.int64())]
        schema = pa.schema(fields)
        return pa.Table.from_pydict({name: [r[name] for r in rows] for name in schema.names}, schema=schema)

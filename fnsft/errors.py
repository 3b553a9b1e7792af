"""The one error type users see.

Anything raised as :class:`FnsftError` is printed by the CLI on one line (no traceback) and
exits with status 2 for bad input. Messages name the key, file or row at fault and say what
would be accepted.
"""


class FnsftError(Exception):
    """Base class for errors meant for the user."""

    exit_code = 1


class ConfigError(FnsftError):
    """Bad input: config keys, values, files, datasets. Raised before Ray or a model starts."""

    exit_code = 2


class StageError(FnsftError):
    """A stage failed while running."""

    exit_code = 1


class BudgetExhausted(FnsftError):
    """A call budget (``max_calls``, a judge's ``max_judge_calls``) is spent.

    Raised only after every answer already received is in the stage's cache, so a rerun with a
    larger budget pays only for what is still missing.
    """

    exit_code = 1

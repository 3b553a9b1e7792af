"""Function judges used by the judge tests (referenced as ``file.py:name``)."""

CALLS = {"n": 0}


def always_a(prompt, response_a, response_b):
    return "A"


def longer(prompt, response_a, response_b):
    return 1.0 if len(response_a) > len(response_b) else 0.0 if len(response_a) < len(response_b) else 0.5


def letter_share(prompt, response):
    """Pointwise on [0, 1]: share of non-space characters that are 'a' (dense, learnable)."""
    chars = [c for c in response if not c.isspace()]
    return sum(c == "a" for c in chars) / len(chars) if chars else 0.0


def garbage(prompt, response):
    return "I cannot rate this."


def broken(prompt, response):
    raise RuntimeError("judge down")


def with_principles(prompt, response, principles):
    return 1.0 if "kind" in principles else 0.0


def the_share(prompt, response):
    """Pointwise on [0, 1]: share of non-space characters in {t, h, e} — dense, so a tiny model learns it."""
    chars = [c for c in response if not c.isspace()]
    return sum(c in "the" for c in chars) / len(chars) if chars else 0.0

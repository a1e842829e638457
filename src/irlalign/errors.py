"""Turning library exceptions into the one-line errors the command line prints."""

from __future__ import annotations


def root_cause(err: BaseException) -> str:
    """`Type: first line` of the innermost exception: libraries wrap the useful one in theirs."""
    while (
        inner := err.__cause__ or (None if err.__suppress_context__ else err.__context__)
    ) is not None:
        err = inner
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__

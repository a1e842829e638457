"""Labelled output of the rows the quickstart trains side by side: every line a worker process
prints (its own, transformers' logging, warnings) starts with `[<row>] `, so two interleaved
runs can be told apart."""

from __future__ import annotations

import io
import sys
from typing import TextIO


class LabelledLines(io.TextIOBase):
    """A text stream that writes whole lines to ``stream``, each prefixed with ``[label] ``.

    A line is written in one call once complete, so lines of processes sharing a terminal do not
    cut into each other. It reports itself as no terminal, so progress bars (which redraw one
    line in place) stay off in a worker."""

    def __init__(self, stream: TextIO, label: str):
        self.stream, self.label = stream, label
        self._partial = ""

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str | None:
        return getattr(self.stream, "encoding", None)

    def fileno(self) -> int:
        return self.stream.fileno()

    def write(self, text: str) -> int:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        if lines:
            self.stream.write("".join(f"[{self.label}] {line}\n" for line in lines))
            self.stream.flush()
        return len(text)

    def flush(self) -> None:
        if self._partial:
            self.stream.write(f"[{self.label}] {self._partial}\n")
            self._partial = ""
        self.stream.flush()


def label_output(label: str) -> None:
    """Prefix this process's stdout and stderr lines with ``[label] `` from now on. A worker
    that runs several rows relabels the same streams: loggers created for an earlier row keep
    writing to them."""
    for name in ("stdout", "stderr"):
        current = getattr(sys, name)
        if isinstance(current, LabelledLines):
            current.flush()
            current.label = label
        else:
            setattr(sys, name, LabelledLines(current, label))

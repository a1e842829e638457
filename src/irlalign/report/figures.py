"""The figures of a report, by run and by section of the page."""

from __future__ import annotations

from dataclasses import dataclass, field

from irlalign.report.collect import Run


@dataclass(frozen=True)
class Figure:
    name: str  # file name under `<out stem>_files/`
    title: str
    png: bytes


@dataclass
class RunFigures:
    """A run's figures, by the section of the page that shows them."""

    curves: list[Figure] = field(default_factory=list)
    best_of_n: list[Figure] = field(default_factory=list)
    frontier: list[Figure] = field(default_factory=list)
    tables: list[Figure] = field(default_factory=list)


@dataclass
class Report:
    runs: list[Run]
    figures: dict[str, RunFigures]  # by run anchor
    overlays: list[Figure]

"""A self-contained HTML report of run folders: configs, learning curves, best-of-N curves,
quality–diversity frontiers, final metrics and samples (`irlalign report`)."""

from irlalign.report.build import write_report

__all__ = ["write_report"]

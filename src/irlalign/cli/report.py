"""`irlalign report RUN [RUN ...] --out report.html`: one self-contained HTML page of run
folders (see `irlalign.report`)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run folders")
    parser.add_argument("--out", default="report.html", help="HTML file to write")
    parser.add_argument("--title", default=None, help="page title (default: irlalign report)")
    parser.add_argument(
        "--no-children",
        dest="children",
        action="store_false",
        help="leave out the child runs of pipeline folders",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from irlalign.report import write_report

    out = write_report(args.runs, args.out, children=args.children, title=args.title)
    print(f"written: {out} (figures also in {out.parent / (out.stem + '_files')}/)")
    return 0

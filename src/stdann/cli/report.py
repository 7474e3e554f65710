"""`stdann report RUN_DIR|SWEEP_DIR`: one self-contained HTML page of a run or of a sweep / study."""

from __future__ import annotations

import argparse
from pathlib import Path

from stdann.errors import UsageError
from stdann.reports.html import write_report
from stdann.reports.markdown import markdown_for


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report",
        help="one self-contained HTML report of a run folder or a sweep / study folder",
        description=(
            "Write one self-contained HTML file (figures embedded, no network resources) from the files "
            "of a run folder (made by `stdann train`, analysed by `stdann analyze`): summary and versions, "
            "headline tuning numbers trained beside untrained, the unit-level and smoothed maps of every block with the population bias R beside its chance level, the macaque MT comparison table, tuning "
            "figures, the training curve, the direction convention and the exact config.yaml; or of a sweep / "
            "study folder (study.json, made by `stdann sweep`): one row per condition, the study's figures and "
            "links to each condition's own report. Reads files only: it never runs an analysis."
        ),
    )
    p.add_argument("path", metavar="PATH", help="run folder (has config.yaml) or sweep / study folder (has study.json)")
    p.add_argument("--out", metavar="FILE", default=None, help="HTML file to write (default: PATH/report.html)")
    p.add_argument("--markdown", action="store_true",
                   help="print Markdown tables of the metrics instead of writing HTML (for docs and notes)")
    p.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    if args.markdown:
        print(markdown_for(args.path))
        return 0
    if args.out is not None and Path(args.out).is_dir():
        raise UsageError(f"--out {args.out} is a folder; give the HTML file to write, e.g. --out "
                         f"{Path(args.out) / 'report.html'}")
    out = write_report(args.path, args.out)
    print(f"wrote {out}")
    return 0

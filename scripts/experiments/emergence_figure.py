"""One emergence figure from several emergence study folders (docs/emergence.md §14).

    python scripts/experiments/emergence_figure.py OUT_DIR STUDY[:NAME[:LABEL]] ...

Each STUDY is a folder written by ``stdann emergence``; its conditions are drawn together, renamed
NAME (and relabelled LABEL) when given, so that runs of one variant made in different folders (e.g.
a second seed added with ``--first-seed``) share a colour. The untrained reference range of the
first folder that has one is shaded. Writes OUT_DIR/emergence_<block>.png for every block.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from stdann.reports.figures.study import study_figures


def merged(specs: list[str]) -> dict:
    out: dict = {}
    for spec in specs:
        folder, *rest = spec.split(":", 2)
        study = json.loads((Path(folder) / "study.json").read_text())
        if not out:
            out = {**study, "conditions": []}
        if not out.get("untrained_reference"):
            out["untrained_reference"] = study.get("untrained_reference")
        for c in study["conditions"]:
            c = dict(c)
            if rest:
                c["name"] = rest[0]
            if len(rest) > 1:
                c["label"] = rest[1]
            out["conditions"].append(c)
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__)
        return 2
    for path in study_figures(merged(argv[1:]), Path(argv[0])):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

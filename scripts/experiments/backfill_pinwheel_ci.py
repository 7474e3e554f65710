"""Add the pinwheel-density CI and the map span to a study analysed before they existed.

The study behind docs/results.md was started at commit d3f60d5, before the analysis stored
``pinwheel_density_ci`` (exact Poisson CI of the count) and ``map_span_spacings`` (√A / Λ). Both
follow exactly from numbers the study did store: a density d = n·Λ²/A with n pinwheels gives the
analysed area A = n·Λ²/d, and from (n, A, Λ) the library's own functions give the CI and the span.
A block with no pinwheel (d = 0) does not determine A, so it gets neither (left missing).

    python scripts/experiments/backfill_pinwheel_ci.py runs/study

Rewrites every ``condition.json`` under the study and ``study.json`` (atomically), touching only
summaries that lack the two fields; prints what it added.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from stdann.ephys.pinwheels import map_span, pinwheel_density_ci
from stdann.fileio import atomic_write_text


def backfill_summary(s: dict) -> bool:
    """Add the two fields to one network's summary in place; True when something was added."""
    if "pinwheel_density_ci" in s or not isinstance(s.get("pinwheel_density"), (int, float)):
        return False
    n = (s.get("pinwheels") or {}).get("n_pinwheels")
    lam, d = s.get("column_spacing_mm"), s["pinwheel_density"]
    if not n or not lam or d <= 0:
        return False
    area = n * lam**2 / d
    s["pinwheel_density_ci"] = list(pinwheel_density_ci(int(n), area, lam))
    s["map_span_spacings"] = map_span(area, lam)
    return True


def backfill_entry(entry: dict) -> int:
    """Backfill every block and network of one study entry; returns the number of summaries changed."""
    changed = 0
    for block in (entry.get("metrics") or {}).values():
        for net in ("trained", "untrained"):
            if isinstance(block.get(net), dict):
                changed += backfill_summary(block[net])
    return changed


def main(root: Path) -> None:
    files = sorted(root.glob("**/condition.json")) + [root / "study.json"]
    for path in files:
        data = json.loads(path.read_text())
        entries = data.get("conditions", []) if path.name == "study.json" else [data]
        changed = sum(backfill_entry(e) for e in entries)
        if changed:
            atomic_write_text(path, json.dumps(data, indent=1))
        print(f"{path}: {changed} summaries backfilled")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

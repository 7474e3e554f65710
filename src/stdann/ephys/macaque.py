"""The macaque MT reference table (``reference/macaque_mt.yaml``) and the model-vs-monkey rows."""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml

from stdann.ephys.registry import METRICS, as_number, ci, get
from stdann.ephys.verdicts import COMPARISON_TEXT, compare_intervals


def load_reference() -> dict[str, Any]:
    """The macaque MT reference table (``stdann/ephys/reference/macaque_mt.yaml``)."""
    text = resources.files("stdann.ephys").joinpath("reference/macaque_mt.yaml").read_text()
    return yaml.safe_load(text)


def range_verdict(v, low, high) -> str | None:
    """``inside`` / ``below`` / ``above`` the macaque range [low, high]; None without a value or range."""
    v, low, high = as_number(v), as_number(low), as_number(high)
    if v is None or low is None or high is None:
        return None
    return "below" if v < low else "above" if v > high else "inside"


def comparison_rows(blocks_metrics: dict, ref: dict) -> list[dict]:
    """One row per reference quantity with a ``metric`` and per block: macaque range, trained and
    untrained values with their CIs, the trained-vs-untrained verdict and where the trained value
    lies against the range."""
    rows = []
    for qname, q in ref["quantities"].items():
        key = q.get("metric")
        if not key:
            continue
        for b, by_net in blocks_metrics.items():
            row = {"quantity": qname, "block": b, "metric": key, "macaque_low": q.get("low"),
                   "macaque_high": q.get("high"), "unit": q.get("unit"),
                   "sources": "; ".join(map(str, q.get("sources", []))), "note": q.get("note", "")}
            for label in ("trained", "untrained"):
                s = by_net.get(label) or {}
                row[f"{label}_median"] = get(s, key)
                c = ci(s, key) if key in METRICS else None
                row[f"{label}_ci_low"], row[f"{label}_ci_high"] = c if c else (None, None)
            where = range_verdict(row["trained_median"], row["macaque_low"], row["macaque_high"])
            row["trained_in_macaque_range"] = None if where is None else where == "inside"
            row["trained_vs_macaque"] = where
            v = compare_intervals(row["trained_median"], (row["trained_ci_low"], row["trained_ci_high"]),
                                  row["untrained_median"], (row["untrained_ci_low"], row["untrained_ci_high"]))
            row["trained_vs_untrained"] = v
            row["trained_vs_untrained_text"] = COMPARISON_TEXT[v]
            rows.append(row)
    return rows

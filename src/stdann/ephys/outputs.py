"""What the analysis writes into a run folder: metrics.json and tables/*.csv (no figures here).

* ``metrics.json``: see ``stdann.ephys.metrics_record.build_metrics`` (NaN written as null, ±inf as the
  strings "inf" / "-inf");
* ``tables/ephys_summary.csv``: every scalar of every network's block summary, with its CI;
* ``tables/macaque_comparison.csv``: the rows of ``ephys.macaque.comparison_rows``;
* ``tables/units_<block>_<network>.csv``: one row per unit: position, channel, responsiveness,
  peak, best condition and (responsive units) its tuning metrics, blank response, blank-subtracted
  DSI and vector strength, and the consistency of its preferred direction across SF/TF;
* ``tables/pinwheels_<block>_<network>.csv``: pinwheels of the analysed map (sheet mm, charge);
* ``tables/smoothness_<block>.csv``: the smoothness curves with their shuffled controls.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from stdann.ephys.registry import NETWORKS
from stdann.fileio import jsonable, write_json

UNIT_COLUMNS = ("preferred_direction", "preferred_axis", "dsi", "di", "cv_direction", "cv_axial", "axial_ratio")
# per responsive unit, when measured: blank response and the blank-subtracted measures, the preferred direction at the
# second-best sampled condition and whether it agrees with the best one (1/0)
BLANK_COLUMNS = ("blank", "blank_ratio", "dsi_blank", "vector_strength_blank", "preferred_direction_second", "consistent")


def write_metrics(path: Path, metrics: dict) -> dict:
    """Write ``metrics`` as JSON (atomically) and return the JSON-able form."""
    clean = jsonable(metrics)
    write_json(path, clean, allow_nan=False)
    return clean


def _write_rows(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not rows:
        path.write_text("")
        return
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in jsonable(r).items()})


def _write_columns(path: Path, cols: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrs = [np.asarray(v) for v in cols.values()]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(cols))
        for row in zip(*arrs):
            w.writerow(["" if (isinstance(v, float) and math.isnan(v)) else (f"{v:.6g}" if isinstance(v, float) else v)
                        for v in (x.item() if hasattr(x, "item") else x for x in row)])


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, (bool, np.bool_))


def summary_rows(metrics: dict) -> list[dict]:
    """(block, network, metric, value, CI) for every scalar of every network summary, one level of
    nesting written as ``parent.key`` (e.g. ``direction_bias.resultant_length``)."""
    rows = []
    for b, entry in metrics["blocks"].items():
        for label in NETWORKS:
            s = entry.get(label)
            if not s:
                continue
            flat = {}
            for k, v in s.items():
                if isinstance(v, dict):
                    flat.update({f"{k}.{kk}": vv for kk, vv in v.items() if _is_number(vv)})
                elif _is_number(v):
                    flat[k] = v
            for k, v in flat.items():
                c = s.get(k.replace("_median", "_ci")) if k.endswith("_median") else s.get(f"{k}_ci")
                c = c if isinstance(c, (list, tuple)) else None
                rows.append({"block": b, "network": label, "metric": k, "value": v,
                             "ci_low": c[0] if c else None, "ci_high": c[1] if c else None})
    return rows


def unit_table(details: dict) -> dict[str, np.ndarray]:
    """The columns of ``units_<block>_<network>.csv`` (responsive units' metrics, NaN elsewhere)."""
    resp = details["responsive"]
    n = resp.size
    xy = details["coordinates"]
    cols = {"unit": np.arange(n), "channel": details["channel"], "x_mm": xy[:, 0], "y_mm": xy[:, 1],
            "responsive": resp.astype(int), "peak": details["peak"], "best_condition": details["best"]}
    if details["metrics"] is not None:
        for k in UNIT_COLUMNS + ("bandwidth",):
            col = np.full(n, np.nan)
            col[resp] = details["bandwidth"] if k == "bandwidth" else details["metrics"][k]
            cols[k] = col
        for k in BLANK_COLUMNS:
            if k in details:
                col = np.full(n, np.nan)
                col[resp] = details[k]
                cols[k] = col
    return cols


def write_tables(folder: Path, metrics: dict, results: dict) -> None:
    """All tables/*.csv (module docstring); ``results`` = {network: {block: (summary, details)}}."""
    _write_rows(folder / "ephys_summary.csv", summary_rows(metrics))
    _write_rows(folder / "macaque_comparison.csv", metrics["comparison"])
    for label, res in results.items():
        for b, (_, d) in res.items():
            _write_columns(folder / f"units_{b}_{label}.csv", unit_table(d))
            if "pinwheels" in d:
                pw = d["pinwheels"]
                _write_columns(folder / f"pinwheels_{b}_{label}.csv", {"x_mm": pw[:, 0], "y_mm": pw[:, 1], "charge": pw[:, 2]})
    for b in metrics["blocks"]:
        cols = {}
        for label, res in results.items():
            c = res[b][1].get("smoothness_curve")
            if c is None:
                continue
            cols.setdefault("distance_mm", c["bin_centres"])
            cols[f"{label}_mean_delta_deg"] = c["mean_delta"]
            cols[f"{label}_shuffled_delta_deg"] = c["shuffled_delta"]
            cols[f"{label}_n_pairs"] = c["n_pairs"]
        if cols:
            _write_columns(folder / f"smoothness_{b}.csv", cols)

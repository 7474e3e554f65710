"""The view model of a study's report: its conditions (α, seeds, controls, levers) read from
study.json and the conditions' run folders, as plain dicts for the templates.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from stdann import DIRECTION_CONVENTION
from stdann.ephys.registry import (DIRECTION_HEADLINE, HEADLINE, NETWORKS, as_number,
                                   format_number, format_value, format_with_ci, get, metric)
from stdann.topography.sheets import MT_BLOCK
from stdann.reports.markdown import seed_agreement
from stdann.reports.view import (
    RANGE_CSS, figure_groups, footer, number_figures, read_json, read_pngs, stored_verdict, verdict_class, version_rows,
)


# -- study report -------------------------------------------------------------------------------------------------
def _cond_dir(study: Path, rd) -> Path:
    """A condition's run folder: absolute, else relative to the study folder, else to the working directory."""
    p = Path(rd)
    if p.is_absolute() or (study / p).exists() or not p.exists():
        return p if p.is_absolute() else study / p
    return p


def _cond_link(study: Path, c: dict) -> dict:
    rd = c.get("run_dir")
    if not rd:
        return {"href": None, "text": "no run folder", "command": None}
    rep = _cond_dir(study, rd) / "report.html"
    if rep.is_file():
        return {"href": Path(os.path.relpath(rep.resolve(), study.resolve())).as_posix(), "text": "report", "command": None}
    return {"href": None, "text": "no report.html", "command": f"stdann report {rd}"}


def _task_cells(task: Any) -> dict[str, str]:
    if not isinstance(task, dict):
        return {}
    return {str(k): (format_number(v) if as_number(v) is not None or v is None else str(v))
            for k, v in task.items() if not isinstance(v, (dict, list))}


def _overrides_text(ov) -> str:
    if isinstance(ov, (list, tuple)):
        return ", ".join(map(str, ov))
    if isinstance(ov, dict):
        return ", ".join(f"{k}={v}" for k, v in ov.items())
    return str(ov or "")


OTHER_BLOCK_KEYS = ("fraction_direction_selective", "direction_bias.resultant_length", "pinwheel_density", "smoothness")


def _entry(c: dict, block: str) -> dict:
    return (c.get("metrics") or {}).get(block) or {}


def _verdict_cells(e: dict) -> dict:
    """The headline and classic-DSI cells of one block of one condition, with their verdicts."""
    tr, un = e.get("trained") or {}, e.get("untrained") or {}
    v, vtext = stored_verdict(e, DIRECTION_HEADLINE)
    dv, dvtext = stored_verdict(e, "dsi_median")
    return {"head_trained": format_with_ci(tr, DIRECTION_HEADLINE), "head_untrained": format_with_ci(un, DIRECTION_HEADLINE),
            "verdict": (v or "no verdict").replace("_", " "), "verdict_title": vtext, "css": verdict_class(v, 1),
            "verdict_key": v,
            "dsi_trained": format_with_ci(tr, "dsi_median"), "dsi_untrained": format_with_ci(un, "dsi_median"),
            "dsi_verdict": (dv or "no verdict").replace("_", " "), "dsi_verdict_title": dvtext,
            "dsi_css": verdict_class(dv, 1)}


def _other_block_rows(conds: list[dict]) -> list[dict]:
    """Every block but MT of every condition: headline, classic DSI and :data:`OTHER_BLOCK_KEYS`."""
    rows, blocks = [], sorted({b for c in conds for b in (c.get("metrics") or {}) if b != MT_BLOCK})
    for c in conds:
        for b in blocks:
            e = _entry(c, b)
            tr, un = e.get("trained") or {}, e.get("untrained") or {}
            if tr or un:
                rows.append({"name": c.get("name"), "block": b, **_verdict_cells(e),
                             "pairs": [f"{format_value(k, get(tr, k))} / {format_value(k, get(un, k))}" for k in OTHER_BLOCK_KEYS]})
    return rows


def _range_cell(c: dict) -> dict | None:
    """The MT headline against the untrained reference range, when the study measured one."""
    rv = ((c.get("range_verdicts") or {}).get(MT_BLOCK) or {}).get(DIRECTION_HEADLINE)
    if not rv:
        return None
    v = rv.get("verdict")
    return {"text": (v or "").replace("_", " "), "title": rv.get("text", ""),
            "css": RANGE_CSS.get(v, "na")}


def study_view(study: Path) -> dict:
    """Everything the study template shows, read from study.json (and the conditions' run.json)."""
    study = Path(study)
    s = read_json(study / "study.json")
    conds = [c for c in (s.get("conditions") or []) if isinstance(c, dict)]
    kind = s.get("kind", "study")
    task_keys = list(dict.fromkeys(k for c in conds for k in _task_cells(c.get("task"))))

    explicit = (DIRECTION_HEADLINE, "dsi_median", "fraction_direction_selective")
    shown = [k for k in HEADLINE if k not in explicit
             and any(as_number(get(_entry(c, MT_BLOCK).get(n) or {}, k)) is not None for c in conds for n in NETWORKS)]
    counts = {"above": 0, "below": 0, "other": 0}
    rows = []
    for c in conds:
        e = _entry(c, MT_BLOCK)
        tr, un = e.get("trained") or {}, e.get("untrained") or {}
        cells = _verdict_cells(e)
        counts[cells["verdict_key"] if cells["verdict_key"] in ("above", "below") else "other"] += 1
        tc = _task_cells(c.get("task"))
        rows.append({"name": c.get("name"), "label": c.get("label"), "seed": c.get("seed"),
                     "overrides": _overrides_text(c.get("overrides")), "status": c.get("status"), **cells,
                     "frac_trained": format_with_ci(tr, "fraction_direction_selective"),
                     "frac_untrained": format_with_ci(un, "fraction_direction_selective"),
                     "metrics": [f"{format_value(k, get(tr, k))} / {format_value(k, get(un, k))}" for k in shown],
                     "task": [tc.get(k, "") for k in task_keys], "link": _cond_link(study, c),
                     "range": _range_cell(c)})
    orows = _other_block_rows(conds)
    controls = s.get("controls")
    control_rows = None
    if isinstance(controls, dict):
        control_rows = [(str(k), json.dumps(v, default=str) if isinstance(v, (dict, list)) else
                         (format_number(v) if as_number(v) is not None else str(v))) for k, v in controls.items()]
    versions = s.get("versions")
    for c in conds if not versions else []:
        if c.get("run_dir"):
            versions = read_json(_cond_dir(study, c["run_dir"]) / "run.json").get("versions")
            if versions:
                break
    cfg = s.get("config")
    cfg_text = cfg if isinstance(cfg, str) else (yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)
                                                 if cfg is not None else None)
    groups = figure_groups(read_pngs(study / "figures"))
    n_images = number_figures(groups, [])
    return {
        "kind": "study", "title": f"stdann {kind} report: {study.resolve().name}",
        "subtitle": f"{kind} with {len(conds)} conditions" + (f", created {s.get('created')}" if s.get("created") else ""),
        "mt_block": MT_BLOCK, "n_conditions": len(conds), "counts": counts,
        "headline_label": metric(DIRECTION_HEADLINE).label,
        "columns": [metric(k).column for k in shown], "task_keys": task_keys, "rows": rows,
        "other_columns": [metric(k).column for k in OTHER_BLOCK_KEYS],
        "other_rows": orows, "seed_agreement": seed_agreement(s, MT_BLOCK), "controls": control_rows,
        "reference_seeds": (s.get("untrained_reference") or {}).get("seeds"),
        "controls_raw": json.dumps(controls, indent=2, default=str) if controls and control_rows is None else None,
        "figure_groups": groups, "n_images": n_images, "convention": DIRECTION_CONVENTION,
        "batchnorm": s.get("batchnorm"),
        "settings": [(k, v) for k, v in (("kind", kind), ("created", s.get("created")), ("folder", str(study.resolve())),
                                          ("direction convention", DIRECTION_CONVENTION),
                                          ("BatchNorm during measurement", s.get("batchnorm"))) if v],
        "versions": version_rows(versions), "config_yaml": cfg_text, "footer": footer(),
    }

"""Markdown tables of a run's metrics.json or a study's study.json (for docs and notes).

Numbers are read from the files, never typed by hand: ``stdann report PATH --markdown``.
"""

from __future__ import annotations

import json
from pathlib import Path


def _f(v, nd: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, (int, float)):
        return f"{v:.{nd}f}"
    return str(v)


def _ci(d: dict, key: str, ci_key: str | None = None) -> str:
    v = d.get(key)
    ci = d.get(ci_key or key.replace("_median", "_ci"))
    if v is None:
        return "—"
    if ci and len(ci) == 2 and ci[0] is not None:
        return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{v:.3f}"


def verdict(t: dict, u: dict, key: str = "dsi_median", ci_key: str = "dsi_ci") -> str:
    """'above' / 'below' when the 95% CIs do not overlap, else 'overlapping' — the rule of the
    HTML report (:func:`stdann.reports.html.compare`), in one word."""
    from stdann.reports.html import compare

    tc, uc = t.get(ci_key), u.get(ci_key)
    if not tc or not uc or None in tc or None in uc:
        return "no CI"
    return {"above": "above", "below": "below"}.get(compare(t.get(key), tc, u.get(key), uc)[1], "overlapping")


def run_markdown(metrics: dict) -> str:
    lines = ["| block | median DSI trained | median DSI untrained | DSI | fraction DS trained | fraction DS untrained | "
             "CV dir. trained / untrained | CV axial trained / untrained | pinwheels/Λ² (mean removed) | Λ (mm) | smoothness |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for b, e in metrics.get("blocks", {}).items():
        t, u = e.get("trained", {}), e.get("untrained", {})
        mr = (t.get("mean_removed") or {}).get("pinwheel_density")
        lines.append(
            f"| {b} | {_ci(t, 'dsi_median', 'dsi_ci')} | {_ci(u, 'dsi_median', 'dsi_ci')} | {verdict(t, u)} | "
            f"{_ci(t, 'fraction_direction_selective', 'fraction_direction_selective_ci')} | "
            f"{_ci(u, 'fraction_direction_selective', 'fraction_direction_selective_ci')} | "
            f"{_f(t.get('cv_direction_median'))} / {_f(u.get('cv_direction_median'))} | "
            f"{_f(t.get('cv_axial_median'))} / {_f(u.get('cv_axial_median'))} | "
            f"{_f(t.get('pinwheel_density'), 2)} ({_f(mr, 2)}) | {_f(t.get('column_spacing_mm'), 2)} | "
            f"{_f(t.get('smoothness'))} |")
    return "\n".join(lines)


def study_markdown(study: dict, block: str | None = None) -> str:
    blocks = study.get("blocks") or []
    out = []
    for b in ([block] if block else blocks):
        out.append(f"**{b}**\n")
        out.append("| condition | seed | median DSI trained | median DSI untrained | DSI | fraction DS trained | "
                   "fraction DS untrained | CV axial | axial ratio | pinwheels/Λ² | smoothness (p) | probe dir. R² | InfoNCE |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for c in study.get("conditions", []):
            m = (c.get("metrics") or {}).get(b) or {}
            t, u = m.get("trained", {}), m.get("untrained", {})
            task = c.get("task") or {}
            probe = (task.get("probe_trained") or {}).get("direction_r2")
            out.append(
                f"| {c.get('label', c.get('name'))} | {c.get('seed')} | {_ci(t, 'dsi_median', 'dsi_ci')} | "
                f"{_ci(u, 'dsi_median', 'dsi_ci')} | {verdict(t, u)} | "
                f"{_ci(t, 'fraction_direction_selective', 'fraction_direction_selective_ci')} | "
                f"{_ci(u, 'fraction_direction_selective', 'fraction_direction_selective_ci')} | "
                f"{_f(t.get('cv_axial_median'))} | {_f(t.get('axial_ratio_median'))} | {_f(t.get('pinwheel_density'), 2)} | "
                f"{_f(t.get('smoothness'))} ({_f(t.get('smoothness_p'), 2)}) | {_f(probe)} | {_f(task.get('final_infonce'))} |")
        out.append("")
    return "\n".join(out)


def markdown_for(path: str | Path) -> str:
    path = Path(path)
    if (path / "study.json").is_file():
        return study_markdown(json.loads((path / "study.json").read_text()))
    if (path / "metrics.json").is_file():
        return run_markdown(json.loads((path / "metrics.json").read_text()))
    raise FileNotFoundError(f"{path} has neither study.json nor metrics.json (run `stdann analyze` or `stdann sweep`)")

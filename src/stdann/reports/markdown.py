"""Markdown tables of a run's metrics.json or a study's study.json (for docs and notes).

Numbers and verdicts are read from the files (the verdicts were decided by the analysis), metric
labels and formats come from the metric registry: ``stdann report PATH --markdown``.
"""

from __future__ import annotations

from pathlib import Path

from stdann.ephys.registry import DIRECTION_HEADLINE, format_value, format_with_ci, get
from stdann.errors import MissingFileError
from stdann.reports.view import range_span, read_json

SHORT = {"above": "above", "below": "below", "not_distinguishable": "overlapping", "no_ci": "no CI",
         "missing": "missing"}


def verdict(entry: dict, key: str = "dsi_median") -> str:
    """The stored trained-vs-untrained verdict of ``key`` in one word ("—" when none is stored)."""
    v = get(entry, f"trained_vs_untrained.{key}.verdict")
    return SHORT.get(v, "—")


def _v(summary: dict, key: str) -> str:
    return format_value(key, get(summary, key)).replace("n/a", "—")


def _ci(summary: dict, key: str) -> str:
    return format_with_ci(summary, key).replace("n/a", "—")


def run_markdown(metrics: dict) -> str:
    """One row per block: the headline direction measure (blank-subtracted vector strength) with its
    stored verdict, the blank-subtracted and classic DSI, the SF/TF consistency of the preferred
    direction, then the classic selectivity and map columns; trained / untrained throughout."""
    h = DIRECTION_HEADLINE
    lines = ["| block | vector strength (blank-sub.) trained | untrained | headline | median DSI trained | "
             "median DSI untrained | DSI | DSI blank-sub. trained / untrained | SF/TF consistency trained / untrained "
             "(chance 0.25) | fraction DS trained | fraction DS untrained | CV dir. trained / untrained | "
             "CV axial trained / untrained | bias R trained / untrained (chance) | pinwheels/Λ² (map with mean) | Λ (mm) | "
             "smoothness (p) | excluded (sf, tf) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for b, e in metrics.get("blocks", {}).items():
        t, u = e.get("trained", {}), e.get("untrained", {})
        r = "direction_bias.resultant_length"
        lines.append(
            f"| {b} | {_ci(t, h)} | {_ci(u, h)} | {verdict(e, h)} | {_ci(t, 'dsi_median')} | {_ci(u, 'dsi_median')} | "
            f"{verdict(e)} | {_v(t, 'dsi_blank_median')} / {_v(u, 'dsi_blank_median')} | "
            f"{_v(t, 'direction_consistency')} / {_v(u, 'direction_consistency')} | "
            f"{_ci(t, 'fraction_direction_selective')} | {_ci(u, 'fraction_direction_selective')} | "
            f"{_v(t, 'cv_direction_median')} / {_v(u, 'cv_direction_median')} | "
            f"{_v(t, 'cv_axial_median')} / {_v(u, 'cv_axial_median')} | "
            f"{_v(t, r)} / {_v(u, r)} ({_v(t, 'direction_bias.chance_resultant_length')}) | "
            f"{_v(t, 'pinwheel_density')} ({_v(t, 'map_with_mean.pinwheel_density')}) | {_v(t, 'column_spacing_mm')} | "
            f"{_v(t, 'smoothness')} ({_v(t, 'smoothness_detail.p_value')}) | {_excluded(t)} |")
    return "\n".join(lines + _run_range_table(metrics))


def _range_cells(trained: dict, rv: dict) -> list[str]:
    """Trained value with CI, the untrained range, the range verdict — for the headline and the classic DSI."""
    cells = []
    for k in (DIRECTION_HEADLINE, "dsi_median"):
        r = (rv.get(k) or {}).get("range")
        cells += [_ci(trained, k), range_span(k, r) if r else "—", RANGE_SHORT.get((rv.get(k) or {}).get("verdict"), "—")]
    return cells


def _run_range_table(metrics: dict) -> list[str]:
    """Each block's trained network against the untrained reference (``ephys.untrained_seeds``)."""
    n = (metrics.get("untrained_reference") or {}).get("seeds")
    if not n:
        return []
    out = ["", f"**Against {n} untrained networks** (seeds 0 … {n - 1} of this configuration; the trained 95% CI "
               "against their range)\n",
           "| block | vector strength trained | untrained range | verdict | classic DSI trained | untrained range | "
           "verdict |", "|---|---|---|---|---|---|---|"]
    for b, e in metrics.get("blocks", {}).items():
        out.append(f"| {b} | " + " | ".join(_range_cells(e.get("trained") or {}, e.get("range_verdicts") or {})) + " |")
    return out


def range_lines(metrics: dict) -> list[str]:
    """One line per block: the headline measure against the untrained reference range, when measured
    (``ephys.untrained_seeds``)."""
    n = (metrics.get("untrained_reference") or {}).get("seeds")
    if not n:
        return []
    lines = [f"  against {n} untrained networks (seeds 0 ... {n - 1}, measured the same way):"]
    for block, e in metrics.get("blocks", {}).items():
        rv = (e.get("range_verdicts") or {}).get(DIRECTION_HEADLINE) or {}
        lines.append(f"    {block}: vector strength {format_with_ci(e.get('trained') or {}, DIRECTION_HEADLINE)} vs "
                     f"untrained range {range_span(DIRECTION_HEADLINE, rv.get('range'), sep='-')}: "
                     f"{rv.get('text', 'not compared')}")
    return lines


def _excluded(summary: dict) -> str:
    """The grating conditions excluded for the block as aliased ("—" when none or not stated)."""
    pairs = get(summary, "sampling.excluded_conditions")
    if not pairs:
        return "none" if isinstance(get(summary, "sampling"), dict) else "—"
    return ", ".join(f"({sf:g}, {tf:g})" for sf, tf in pairs)


def _task_cells(task: dict) -> str:
    """Task loss (nats below chance: ln(K+1) for InfoNCE, ln(classes) for the supervised positive
    control's cross-entropy) and held-out top-1 (instances, or directions for the positive control)."""
    fin, below, top1 = task.get("final_infonce"), task.get("nats_below_chance"), task.get("heldout_top1")
    if fin is None:
        fin = task.get("final_loss")
    side = "" if below is None else (f" ({below:.2f} below)" if below >= 0 else f" ({-below:.2f} above)")
    loss = "—" if fin is None else f"{fin:.2f}{side}"
    return f"{loss} | {'—' if top1 is None else format(top1, '.2f')}"


def seed_agreement(study: dict, block: str) -> list[dict]:
    """Per condition with more than one seed: each seed's stored headline and classic-DSI verdicts in
    ``block`` and whether the seeds agree (``agree`` / ``mixed``): a verdict one seed gives and another
    does not is not a finding."""
    by_name: dict[str, list[dict]] = {}
    for c in study.get("conditions", []):
        by_name.setdefault(c.get("name"), []).append(c)
    rows = []
    for name, conds in by_name.items():
        if len(conds) < 2:
            continue
        conds = sorted(conds, key=lambda c: c.get("seed", 0))
        entries = [((c.get("metrics") or {}).get(block) or {}) for c in conds]
        head = [verdict(e, DIRECTION_HEADLINE) for e in entries]
        dsi = [verdict(e) for e in entries]
        rows.append({"condition": conds[0].get("label", name), "seeds": [c.get("seed") for c in conds],
                     "headline": head, "dsi": dsi,
                     "agreement": "agree" if len(set(head)) == 1 and len(set(dsi)) == 1 else "mixed"})
    return rows


def _agreement_table(study: dict, block: str) -> list[str]:
    rows = seed_agreement(study, block)
    if not rows:
        return []
    out = [f"**{block}: do the seeds agree?** (each seed's verdict against its own untrained network)\n",
           "| condition | seeds | headline (vector strength) | classic DSI | seeds |", "|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['condition']} | {', '.join(map(str, r['seeds']))} | {' / '.join(r['headline'])} | "
                   f"{' / '.join(r['dsi'])} | {r['agreement']} |")
    return out + [""]


RANGE_SHORT = {"above_range": "above the range", "below_range": "below the range", "inside_range": "inside",
               "no_ci": "no CI", "missing": "—"}


def _range_table(study: dict, block: str) -> list[str]:
    """Each condition's trained network against the untrained reference range (``--untrained-seeds``)."""
    ref = (study.get("untrained_reference") or {}).get("blocks", {}).get(block)
    if not ref:
        return []
    n = (study.get("untrained_reference") or {}).get("seeds")
    out = [f"**{block}: against {n} untrained networks** (seeds 0 … {n - 1}; each condition's 95% CI against "
           "their range)\n",
           "| condition | seed | vector strength trained | untrained range | verdict | classic DSI trained | "
           "untrained range | verdict |", "|---|---|---|---|---|---|---|---|"]
    for c in study.get("conditions", []):
        t = (((c.get("metrics") or {}).get(block) or {}).get("trained")) or {}
        cells = _range_cells(t, (c.get("range_verdicts") or {}).get(block) or {})
        out.append(f"| {c.get('label', c.get('name'))} | {c.get('seed')} | " + " | ".join(cells) + " |")
    return out + [""]


def study_markdown(study: dict, block: str | None = None) -> str:
    """Per block: whether the seeds agree (when a condition has several), the task and the units'
    selectivity against the untrained network (the headline direction measure first), then the map
    (order, column spacing, pinwheels against π and the two controls)."""
    blocks = study.get("blocks") or []
    out = []
    for b in ([block] if block else blocks):
        out += _agreement_table(study, b)
        out += _range_table(study, b)
        out.append(f"**{b}: task and selectivity**\n")
        out.append("| condition | seed | task loss (below chance) | held-out top-1 | vector strength (blank-sub.) trained "
                   "| untrained | headline | median DSI trained | median DSI untrained "
                   "| DSI | SF/TF consistency trained / untrained | fraction DS trained | fraction DS untrained | CV dir. "
                   "| axial ratio | bias R (chance) | probe dir. R² |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for c in study.get("conditions", []):
            e = (c.get("metrics") or {}).get(b) or {}
            t, u = e.get("trained", {}), e.get("untrained", {})
            task = c.get("task") or {}
            probe = (task.get("probe_trained") or {}).get("direction_r2")
            out.append(
                f"| {c.get('label', c.get('name'))} | {c.get('seed')} | {_task_cells(task)} | "
                f"{_ci(t, DIRECTION_HEADLINE)} | {_ci(u, DIRECTION_HEADLINE)} | {verdict(e, DIRECTION_HEADLINE)} | "
                f"{_ci(t, 'dsi_median')} | {_ci(u, 'dsi_median')} | {verdict(e)} | "
                f"{_v(t, 'direction_consistency')} / {_v(u, 'direction_consistency')} | "
                f"{_ci(t, 'fraction_direction_selective')} | "
                f"{_ci(u, 'fraction_direction_selective')} | {_v(t, 'cv_direction_median')} | "
                f"{_v(t, 'axial_ratio_median')} | "
                f"{_v(t, 'direction_bias.resultant_length')} ({_v(t, 'direction_bias.chance_resultant_length')}) | "
                f"{'—' if probe is None else format(probe, '.3f')} |")
        out.append("")
        out.append(f"**{b}: map** (pinwheel density per Λ², π ≈ 3.14 in cat and primate V1 maps)\n")
        out.append("| condition | seed | smoothness (p) | Λ (mm) | span (Λ) | pinwheels | density [95% CI] "
                   "| shuffled positions | random map, same spectrum | map with its mean | axial map | bias R "
                   "| fracture index (random map) |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for c in study.get("conditions", []):
            t = (((c.get("metrics") or {}).get(b) or {}).get("trained")) or {}
            out.append(
                f"| {c.get('label', c.get('name'))} | {c.get('seed')} | "
                f"{_v(t, 'smoothness')} ({_v(t, 'smoothness_detail.p_value')}) | {_v(t, 'column_spacing_mm')} | "
                f"{_v(t, 'map_span_spacings')} | {_v(t, 'pinwheels.n_pinwheels')} | {_ci(t, 'pinwheel_density')} | "
                f"{_v(t, 'controls.shuffled_positions.pinwheel_density')} | "
                f"{_v(t, 'controls.random_map_same_spectrum.pinwheel_density')} | "
                f"{_v(t, 'map_with_mean.pinwheel_density')} | {_v(t, 'axial_map.pinwheel_density')} | "
                f"{_v(t, 'direction_bias.resultant_length')} | {_v(t, 'pinwheel_fracture.median')} "
                f"({_v(t, 'controls.random_map_same_spectrum.pinwheel_fracture.median')}) |")
        out.append("")
    return "\n".join(out)


def markdown_for(path: str | Path) -> str:
    path = Path(path)
    if (path / "study.json").is_file():
        return study_markdown(read_json(path / "study.json"))
    if (path / "metrics.json").is_file():
        return run_markdown(read_json(path / "metrics.json"))
    raise MissingFileError(f"{path} has neither study.json nor metrics.json (run `stdann analyze` or `stdann sweep`)")

"""The view model of one run's report: its training, every analysed block (headline metrics, verdicts,
maps, figures) and its networks' comparison, as plain dicts for the templates.
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from stdann import DIRECTION_CONVENTION
from stdann.fileio import parse_yaml
from stdann.ephys.registry import (DIRECTION_HEADLINE, MAP, METRICS, NETWORKS, SELECTIVITY, as_number,
                                   format_number, format_value, format_with_ci, get, metric)
from stdann.ephys.verdicts import COMPARISON_TEXT
from stdann.reports.figures.training import training_curve_png
from stdann.topography.sheets import MT_BLOCK
from stdann.reports.view import (
    FINDING_KEYS, RANGE_CSS, bias_line, compact, figure_item, figure_groups, figure_key, finding, footer,
    number_figures, range_span, read_json, read_pngs, read_text_or_none, read_train_log, sampling_line, stored_verdict,
    verdict_class, version_rows, with_ci,
)


def _block_view(block: str, entry: dict, bid: str) -> dict:
    """One analysed block: its findings (headline verdicts, then each network's notes), the
    selectivity and map tables, plaids and RDKs."""
    tr, un = entry.get("trained") or {}, entry.get("untrained") or {}
    has_un = bool(un)
    findings = _headline_findings(entry, tr, un, has_un)
    for label, s in (("trained", tr), ("untrained", un)):
        if s:
            findings += _network_findings(label, s)
    selectivity = []
    for key in SELECTIVITY:
        m = metric(key)
        if as_number(get(tr, key)) is None and as_number(get(un, key)) is None:
            continue
        v, vtext = stored_verdict(entry, key) if has_un else ("", "no untrained control")
        selectivity.append({"label": m.column, "trained": format_with_ci(tr, key),
                            "untrained": format_with_ci(un, key) if has_un else "n/a",
                            "verdict": vtext, "css": verdict_class(v, m.sense),
                            "reading": f"higher = {m.reading}" if m.reading else ""})
    maps = []
    for key in MAP:
        t, u = get(tr, key), get(un, key)
        if t is None and u is None:
            continue
        maps.append({"label": metric(key).column, "trained": format_value(key, t), "untrained": format_value(key, u)})
    extra = []
    for name, key in (("plaids", "plaids"), ("random-dot kinematograms", "rdk")):
        if tr.get(key) or un.get(key):
            extra.append({"name": name, "trained": compact(tr.get(key)), "untrained": compact(un.get(key)) if has_un else None})
    return {"name": block, "id": f"block-{bid}", "table_id": f"headline-{bid}", "is_mt": block == MT_BLOCK,
            "findings": findings, "selectivity": selectivity, "maps": maps, "extra": extra}


def _headline_findings(entry: dict, tr: dict, un: dict, has_un: bool) -> list[dict]:
    """The block's metrics beside the untrained control, with their stored verdicts."""
    findings: list[dict] = []
    if not has_un:
        findings.append(finding("No untrained control in metrics.json: the numbers below are NOT compared with the "
                                 "untrained network (re-run `stdann analyze` without --no-control).", css="below"))
    if as_number(get(tr, DIRECTION_HEADLINE)) is None and as_number(get(tr, "dsi_median")) is not None:
        findings.append(finding("No blank-subtracted vector strength in metrics.json (analysed before measurement v2): "
                                 "the headline direction verdict is missing; re-run `stdann analyze`.", css="below"))
    for key in FINDING_KEYS:
        if as_number(get(tr, key)) is None:
            continue
        m = metric(key)
        text = ("headline (direction selective?): " if key == DIRECTION_HEADLINE else "") + \
            f"trained {m.label} {format_with_ci(tr, key)}"
        if has_un:
            v, vtext = stored_verdict(entry, key)
            findings.append(finding(f"{text} vs untrained {format_with_ci(un, key)}:", vtext, verdict_class(v, m.sense)))
        else:
            findings.append(finding(text + "."))
    findings += _range_findings(entry)
    sampled = sampling_line(tr.get("sampling"))
    if sampled:
        findings.append(finding(sampled))
    if tr.get("n_responsive") is not None:
        t = f"{format_number(tr.get('n_responsive'))} of {format_number(tr.get('n_units'))} units responsive (trained)"
        if has_un:
            t += f", {format_number(un.get('n_responsive'))} of {format_number(un.get('n_units'))} (untrained)"
        findings.append(finding(t + "."))
    return findings


def _range_findings(entry: dict) -> list[dict]:
    """The trained network against the untrained reference range (``ephys.untrained_seeds``), per key."""
    out = []
    for key, rv in (entry.get("range_verdicts") or {}).items():
        out.append(finding(f"{metric(key).label} {format_with_ci(entry.get('trained') or {}, key)} against the untrained "
                           f"networks of the reference (range {range_span(key, rv.get('range'))}):", rv.get("text"),
                           RANGE_CSS.get(rv.get("verdict"), "na")))
    return out


def _network_findings(label: str, s: dict) -> list[dict]:
    """One network's notes: its notes, the SF/TF consistency, population bias, pinwheels and smoothness."""
    findings: list[dict] = []
    if s.get("note"):
        findings.append(finding(f"{label}: {s['note']}.", css="below"))
    if s.get("map_note"):
        findings.append(finding(f"{label}: {s['map_note']}."))
    det = s.get("direction_consistency_detail")
    if isinstance(det, dict) and det.get("n"):
        findings.append(finding(
            f"{label}: the preferred direction of {format_number(det.get('k'))} of {format_number(det.get('n'))} "
            f"direction-selective units agrees within {format_number(det.get('tolerance_deg'))}° between their best "
            f"and second-best sampled SF/TF condition (chance {format_number(det.get('chance'))}):",
            det.get("text"), "above" if det.get("above_chance") else "na"))
    elif s.get("direction_consistency_note"):
        findings.append(finding(f"{label}: {s['direction_consistency_note']}."))
    if isinstance(s.get("direction_bias"), dict):
        b = bias_line(s["direction_bias"])
        findings.append(finding(f"{label}: population bias {b['text']}:", b["verdict"], b["css"]))
    if as_number(s.get("pinwheel_density")) is not None:
        findings.append(finding(
            f"{label}: pinwheel density {format_value('pinwheel_density', s.get('pinwheel_density'))} per Λ² on the "
            f"mean-removed smoothed map (Λ = {format_value('column_spacing_mm', s.get('column_spacing_mm'))} mm, "
            f"{format_value('pinwheels.n_pinwheels', get(s, 'pinwheels.n_pinwheels'))} pinwheels, kernel FWHM "
            f"{format_value('maps.kernel_fwhm_mm', get(s, 'maps.kernel_fwhm_mm'))} mm); map with its mean "
            f"{format_value('map_with_mean.pinwheel_density', get(s, 'map_with_mean.pinwheel_density'))}; controls: "
            f"positions shuffled {format_value('controls.shuffled_positions.pinwheel_density', get(s, 'controls.shuffled_positions.pinwheel_density'))}, "
            f"random map with the same spectrum "
            f"{format_value('controls.random_map_same_spectrum.pinwheel_density', get(s, 'controls.random_map_same_spectrum.pinwheel_density'))}. "
            "A density near π is not by itself evidence of a map: read it with the controls and the map order."))
    if as_number(s.get("smoothness")) is not None:
        det = s.get("smoothness_detail") or {}
        t = f"{label}: smoothness index {format_value('smoothness', s['smoothness'])}"
        if det.get("mean_delta_short") is not None and det.get("shuffled_delta_short") is not None:
            t += (f" (units closer than {format_number(det.get('short_mm'))} mm differ in preferred direction by "
                  f"{format_number(det['mean_delta_short'])}° on average, {format_number(det['shuffled_delta_short'])}° "
                  f"with positions shuffled; permutation p = {format_number(det.get('p_value'), kind='p')})")
        order = s.get("map_order") or {}
        css = {"ordered": "above", "not_ordered": "below"}.get(order.get("verdict"), "na")
        findings.append(finding(t + ":", order.get("text", "no map-order verdict in the metrics"), css))
    return findings


def _comparison_view(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        lo, hi = r.get("macaque_low"), r.get("macaque_high")
        where = r.get("trained_vs_macaque")
        m_sense = METRICS[r["metric"]].sense if r.get("metric") in METRICS else 0
        v = r.get("trained_vs_untrained")
        out.append({
            "quantity": r.get("quantity"), "block": r.get("block"),
            "trained": with_ci(r.get("trained_median"), r.get("trained_ci_low"), r.get("trained_ci_high")),
            "untrained": with_ci(r.get("untrained_median"), r.get("untrained_ci_low"), r.get("untrained_ci_high")),
            "verdict": (COMPARISON_TEXT.get(v, "no verdict stored") if v else "no verdict stored").split(" (")[0],
            "verdict_css": verdict_class(v, m_sense),
            "range": "no published value" if as_number(lo) is None and as_number(hi) is None
                     else f"{format_number(lo)} – {format_number(hi)}",
            "where": {"inside": "inside", "below": "below the range", "above": "above the range"}.get(where, "n/a"),
            "where_css": {"inside": "above", "below": "below", "above": "below"}.get(where, "na"),
            "unit": r.get("unit"), "sources": r.get("sources"), "note": r.get("note")})
    return out


def task_line(rows: list[dict[str, float]]) -> str | None:
    """The task at the end of a training log, in words: the InfoNCE of the last log line (mean over
    its interval) against chance ln(K + 1), and the last held-out check (top-1 among n held-out
    pairs, chance 1/n; InfoNCE against ln n) — or, for the supervised positive control (a log with
    ``acc_chance``), its cross-entropy against chance ln(classes) and the held-out direction top-1
    against 1/bins."""
    rows = [r for r in rows if "loss_task" in r]
    if not rows:
        return None
    last = rows[-1]
    if "acc_chance" in last:
        return _supervised_task_line(rows)
    parts = [f"InfoNCE {format_number(last['loss_task'])}"]
    if "loss_task_chance" in last:
        parts[0] += (f" (chance ln(K+1) = {format_number(last['loss_task_chance'])}: "
                     f"{format_number(last['loss_task_chance'] - last['loss_task'])} nats below)")
    held = [r for r in rows if "heldout_top1" in r and "heldout_chance_infonce" in r]
    if held:
        h = held[-1]
        n = round(math.exp(h["heldout_chance_infonce"]))
        parts.append(f"held-out pairs (n = {n}, step {int(h['step'])}): top-1 {format_number(h['heldout_top1'])} "
                     f"(chance {format_number(1 / n)}), top-5 {format_number(h.get('heldout_top5'))}, InfoNCE "
                     f"{format_number(h.get('heldout_infonce'))} (chance ln n = {format_number(h['heldout_chance_infonce'])})")
    return "; ".join(parts) + f" at step {int(last['step'])}"


def _supervised_task_line(rows: list[dict[str, float]]) -> str:
    last = rows[-1]
    parts = [f"direction cross-entropy {format_number(last['loss_task'])}"]
    if "loss_task_chance" in last:
        parts[0] += (f" (chance ln(classes) = {format_number(last['loss_task_chance'])}: "
                     f"{format_number(last['loss_task_chance'] - last['loss_task'])} nats below)")
    parts.append(f"training top-1 {format_number(last.get('acc'))} (chance {format_number(last.get('acc_chance'))})")
    held = [r for r in rows if "heldout_top1" in r and "heldout_chance_top1" in r]
    if held:
        h = held[-1]
        parts.append(f"held-out direction top-1 {format_number(h['heldout_top1'])} (chance "
                     f"{format_number(h['heldout_chance_top1'])}, step {int(h['step'])})")
    return "; ".join(parts) + f" at step {int(last['step'])} (supervised positive control)"


def run_view(run: Path) -> dict:
    """Everything the run template shows, read from the run folder."""
    run = Path(run)
    cfg_text = read_text_or_none(run / "config.yaml")
    try:
        cfg = parse_yaml(cfg_text or "") or {}
    except yaml.YAMLError:
        cfg = {}
    cfg = cfg if isinstance(cfg, dict) else {}
    info = read_json(run / "run.json")
    metrics = read_json(run / "metrics.json")
    topo, data, model, optim = (cfg.get(k) or {} for k in ("topography", "data", "model", "optim"))
    alpha = topo.get("alpha")
    what = (f"3D ResNet-18 (width {model.get('width', '?')}) trained with "
            + ("the spatial loss only" if topo.get("spatial_only") else
               f"MoCo + α·spatial loss, α = {format_number(alpha)}" if alpha is not None else "MoCo")
            + f" on {data.get('source', '?')} video ({data.get('frames', '?')} frames × {data.get('size', '?')}²)")
    last = info.get("last") or {}
    summary = [("trained", what), ("status", info.get("status", "unknown (no run.json)")),
               ("steps", f"{info.get('step', '?')} of {info.get('total_steps', optim.get('max_steps', '?'))}"),
               ("batch size", optim.get("batch_size")), ("device", info.get("device")),
               ("world size", info.get("world_size")), ("last update", info.get("updated")),
               ("last logged loss", f"total {format_number(last.get('loss'))}, task {format_number(last.get('loss_task'))}, "
                                    f"spatial (sum) {format_number(last.get('sl_total'))}" if last else None),
               ("task", task_line(read_train_log(run))),
               ("contrastive pretraining", task_line(read_train_log(run / "pretrain")) if (run / "pretrain").is_dir()
                else None),
               ("folder", str(run.resolve()))]
    blocks = metrics.get("blocks") if isinstance(metrics.get("blocks"), dict) else {}
    order = sorted(blocks, key=lambda b: (b != MT_BLOCK, b))
    block_views = [_block_view(b, blocks[b], f"b{i}") for i, b in enumerate(order)]

    curve = training_curve_png(read_train_log(run))
    extra = {}
    if curve is not None:
        extra["training"] = [figure_item("training curve (logs/train.csv)", curve,
                                     "InfoNCE task loss (and total loss), each block's spatial loss SL_rel, and the "
                                     "learning rate against training step, drawn from logs/train.csv.")]
    groups = figure_groups(read_pngs(run / "figures"), extra)
    # maps go per block, with the population bias beside them
    map_group = next((g for g in groups if g["id"] == "maps"), None)
    map_blocks = []
    if map_group:
        groups.remove(map_group)
        by_block: dict[str, list[dict]] = {}
        for f in map_group["figures"]:
            by_block.setdefault(figure_key(f["name"])[2], []).append(f)
        for b in sorted(by_block, key=lambda b: (b != MT_BLOCK, b)):
            entry = blocks.get(b) or {}
            bias = [{"network": label, **bias_line((entry.get(label) or {}).get("direction_bias")),
                     "kernel": format_value("maps.kernel_fwhm_mm", get(entry.get(label) or {}, "maps.kernel_fwhm_mm")),
                     "mean_removed": "shown" if get(entry.get(label) or {}, "maps.mean_removed_map_shown") else "not shown"}
                    for label in NETWORKS if entry.get(label)]
            map_blocks.append({"block": b, "id": f"maps-{b}", "bias": bias, "figures": by_block[b]})
    n_images = number_figures(groups, map_blocks)
    rules = metrics.get("rules") if isinstance(metrics.get("rules"), dict) else {}
    methods = [("direction convention", metrics.get("direction_convention") or DIRECTION_CONVENTION),
               ("BatchNorm during measurement", metrics.get("batchnorm"))]
    methods += [(k.replace("_", " "), v) for k, v in rules.items()]
    methods += [("stimuli", ", ".join(map(str, metrics.get("stimuli", []))) or None),
                ("stimulus clip", compact(metrics.get("clip")) if metrics.get("clip") else None),
                ("checkpoints", compact(metrics.get("checkpoints")) if metrics.get("checkpoints") else None)]
    return {
        "kind": "run", "title": f"stdann run report: {run.resolve().name}",
        "subtitle": f"{what} — status {info.get('status', 'unknown')}",
        "summary": [(k, v) for k, v in summary if v not in (None, "")],
        "analysed": bool(metrics), "run_path": str(run), "notes": list(metrics.get("notes") or []),
        "versions": version_rows(info.get("versions")),
        "responsive_rule": rules.get("responsive", ""), "selective_rule": rules.get("direction_selective", ""),
        "headline_rule": rules.get("headline", ""),
        "blocks": block_views, "comparison": _comparison_view(metrics.get("comparison") if isinstance(metrics.get("comparison"), list) else []),
        "map_blocks": map_blocks, "figure_groups": groups, "n_images": n_images,
        "convention": DIRECTION_CONVENTION,
        "methods": [(k, v) for k, v in methods if v not in (None, "")],
        "ephys_config": yaml.safe_dump(metrics["ephys_config"], sort_keys=False) if metrics.get("ephys_config") else None,
        "config_yaml": cfg_text, "footer": footer(),
    }

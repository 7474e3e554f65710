"""View models of the HTML report: read a run or study folder, return plain dicts for the templates.

This is the only part of the report that reads files. It decides nothing scientific: verdicts
(trained vs untrained, map order, population bias above chance, macaque range) are read from
metrics.json / study.json, where ``stdann.ephys`` stored them; metrics, labels and formats come
from the metric registry (``stdann.ephys.registry``). What it adds is presentation: text,
formatted numbers, CSS classes and the grouping of figures.
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
import math
import os
import platform
from pathlib import Path
from typing import Any

import yaml

from stdann import DIRECTION_CONVENTION, __version__
from stdann.fileio import read_json_object
from stdann.config import parse_yaml
from stdann.errors import MissingFileError
from stdann.ephys.registry import (DIRECTION_HEADLINE, HEADLINE, MAP, METRICS, NETWORKS, SELECTIVITY, as_number,
                                   format_number, format_value, format_with_ci, get, metric)
from stdann.ephys.population import P_FLOOR
from stdann.ephys.verdicts import COMPARISON_TEXT
from stdann.reports.figures.training import training_curve_png
from stdann.runs.errors import RunFolderError
from stdann.runs.trainlog import read_log
from stdann.topography.sheets import MT_BLOCK

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ReportError(MissingFileError):
    """The folder is not something a report can be made of; the message names what is missing and the
    command that makes it."""


# -- reading -----------------------------------------------------------------------------------------------
def folder_kind(path: str | Path) -> str:
    """"run" (config.yaml), "study" (study.json); otherwise ReportError naming what is missing."""
    p = Path(path)
    if not p.exists():
        raise ReportError(f"{p} does not exist. Make a run with `stdann train --out {p}` (then `stdann analyze {p}`), "
                          f"or a study with `stdann sweep`")
    if not p.is_dir():
        raise ReportError(f"{p} is not a folder; `stdann report` takes a run folder (made by `stdann train`) or a "
                          f"sweep / study folder (made by `stdann sweep`)")
    if (p / "study.json").is_file():
        return "study"
    if (p / "config.yaml").is_file():
        return "run"
    raise ReportError(
        f"{p} is neither a run folder (no config.yaml: made by `stdann train --out {p}`, then analysed with "
        f"`stdann analyze {p}`) nor a sweep / study folder (no study.json: made by `stdann sweep`)")


def read_json(path: Path) -> dict:
    """A JSON object a report reads ({} when the file is absent); a damaged file is a one-line
    :class:`ReportError` saying how the file is made again."""
    if not path.is_file():
        return {}
    return read_json_object(path, ReportError, _REMAKE.get(path.name, "restore it"))


_REMAKE = {  # how each file a report reads is made again
    "metrics.json": "make it again with `stdann analyze RUN`",
    "run.json": "move it away (the report then lacks the run's status) or continue the run with `stdann train --resume`",
    "study.json": "rerun the same `stdann sweep` / `stdann emergence` command, which rewrites it",
}


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _read_train_log(run: Path) -> list[dict[str, float]]:
    try:
        rows = read_log(run)
    except (OSError, RunFolderError):  # a damaged log: the report goes without its training curve
        return []
    # finite values only: the held-out columns are NaN on the steps without a check
    return [{k: v for k, v in r.items() if as_number(v) is not None} for r in rows]


def _read_pngs(folder: Path) -> list[tuple[str, bytes]]:
    out = []
    if folder.is_dir():
        for p in sorted(folder.glob("*.png")):
            try:
                data = p.read_bytes()
            except OSError:
                continue
            if data[:8] == PNG_MAGIC:
                out.append((p.name, data))
    return out


# -- figures ------------------------------------------------------------------------------------------------
FIGURE_GROUPS = (  # (group id, heading, filename prefixes in display order)
    ("curves", "Sweep and emergence curves", ("sweep", "tradeoff", "trade_off", "emergence", "alpha", "study", "curve")),
    ("maps", "Maps", ("unit_map", "direction_map", "axial_map", "map")),
    ("tuning", "Tuning", ("tuning", "polar", "plaid", "rdk", "coherence")),
    ("histograms", "Histograms", ("histogram",)),
    ("smoothness", "Smoothness", ("smoothness",)),
    ("positions", "Positions", ("positions", "swap", "sheet")),
    ("training", "Training", ("training", "train", "loss")),
)
CAPTIONS = {
    "unit_map": "Unit-level map (the primary map): every responsive unit at its cortical position, hue = its preferred "
                "direction, no smoothing; light grey = not responsive. Panel titles give the population bias R with its "
                "chance level.",
    "direction_map": "Smoothed direction map: hue = preferred direction of the kernel-weighted units, brightness = |z| "
                     "(selectivity and agreement); kernel FWHM chosen against the measured column spacing. Beside it, "
                     "where R is above chance, the same map with its mean vector removed (labelled). Dots = pinwheels "
                     "of the mean-removed map (white +1, black −1).",
    "axial_map": "Axial map with its mean vector removed (the map its pinwheels are counted on): hue = preferred axis "
                 "(180° periodic), brightness = |z|, same kernel as the direction map.",
    "tuning_examples": "Example tuning curves of responsive units at their best spatial/temporal frequency, "
                       "ordered from high to low DSI, each normalised to its peak.",
    "histograms": "Distributions over responsive units (DSI, DI, CV_direction, bandwidth); grey band = macaque MT range.",
    "smoothness": "Mean |Δ preferred direction| against cortical distance, solid = real positions, dashed = positions "
                  "shuffled; 90° = chance.",
    "positions": "Unit positions on the cortical sheet (swap optimisation).",
}


def figure_key(name: str) -> tuple[str, int, str]:
    """(group id, rank of the matching prefix, block or "") of a figure file name."""
    stem = Path(name).stem.lower()
    for gid, _, prefixes in FIGURE_GROUPS:
        for i, p in enumerate(prefixes):
            if stem.startswith(p):
                return gid, i, Path(name).stem[len(p):].strip("_")
    return "other", 0, ""


def _caption(name: str) -> str:
    stem = Path(name).stem
    for key, text in CAPTIONS.items():
        if stem.startswith(key):
            rest = stem[len(key):].strip("_")
            return (f"{rest}: " if rest else "") + text
    return stem.replace("_", " ")


def _figure(name: str, data: bytes, caption: str) -> dict:
    return {"name": name, "caption": caption, "src": "data:image/png;base64," + base64.b64encode(data).decode("ascii")}


def figure_groups(figs: list[tuple[str, bytes]], extra: dict[str, list[dict]] | None = None) -> list[dict]:
    """[{id, heading, figures: [...]}] in FIGURE_GROUPS order, figures ordered by prefix then name."""
    groups: dict[str, list[dict]] = {}
    for name, data in sorted(figs, key=lambda f: (figure_key(f[0])[2], figure_key(f[0])[1], f[0])):
        groups.setdefault(figure_key(name)[0], []).append(_figure(name, data, _caption(name)))
    for gid, items in (extra or {}).items():
        groups.setdefault(gid, []).extend(items)
    headings = {gid: h for gid, h, _ in FIGURE_GROUPS} | {"other": "Other figures"}
    order = [g for g, _, _ in FIGURE_GROUPS] + ["other"]
    return [{"id": gid, "heading": headings[gid], "figures": groups[gid]} for gid in order if gid in groups]


def _number_figures(groups: list[dict], maps: list[dict]) -> int:
    n = 0
    for fig in [f for m in maps for f in m["figures"]] + [f for g in groups for f in g["figures"]]:
        fig["id"] = f"fig-{n}"
        n += 1
    return n


# -- verdicts as shown ------------------------------------------------------------------------------------------
def verdict_class(verdict: str | None, sense: int) -> str:
    """CSS class of a stored trained-vs-untrained verdict: green when the trained network is the more
    direction selective / ordered (per the metric's sense), red when less, plain without a reading."""
    if verdict in ("above", "below"):
        if sense == 0:
            return "neutral"
        return "above" if (verdict == "above") == (sense > 0) else "below"
    return "same" if verdict == "not_distinguishable" else "na"


def _stored_verdict(entry: dict, key: str) -> tuple[str | None, str]:
    v = get(entry, f"trained_vs_untrained.{key}") if isinstance(entry, dict) else None
    if not isinstance(v, dict):
        return None, "no verdict in the metrics (re-run `stdann analyze`)"
    return v.get("verdict"), v.get("text") or COMPARISON_TEXT.get(v.get("verdict"), "")


def _p_text(p) -> str:
    """"= 0.012", or "< 1e-09" for a p-value stored as 0 (below the computation's accuracy)."""
    return f"< {P_FLOOR:.0e}" if as_number(p) == 0 else f"= {format_number(p, kind='p')}"


def bias_line(bias: dict | None) -> dict:
    """{"text", "css"} of one network's population bias: R at its mean direction beside its chance level."""
    if not isinstance(bias, dict) or as_number(bias.get("resultant_length")) is None:
        return {"text": "n/a", "verdict": "n/a", "css": "na"}
    text = (f"R = {format_value('direction_bias.resultant_length', bias.get('resultant_length'))} at "
            f"{format_value('direction_bias.mean_direction_deg', bias.get('mean_direction_deg'))}°; chance "
            f"{format_value('direction_bias.chance_resultant_length', bias.get('chance_resultant_length'))} "
            f"(95th percentile for {bias.get('n_channels', '?')} channels, p {_p_text(bias.get('p_value'))})")
    above = bool(bias.get("above_chance"))
    return {"text": text, "verdict": "above chance" if above else "not above chance", "css": "warnc" if above else "na"}


# -- run report ----------------------------------------------------------------------------------------------------
def _finding(text: str, verdict: str | None = None, css: str = "") -> dict:
    return {"text": text, "verdict": verdict, "css": css}


# findings of a block, in this order: the headline direction measure first
FINDING_KEYS = (DIRECTION_HEADLINE, "dsi_blank_median", "direction_consistency", "dsi_median",
                "fraction_direction_selective", "cv_direction_median", "axial_ratio_median", "blank_ratio_median")


def _pairs(conditions) -> str:
    """(sf, tf) pairs as given (frequencies are stimulus settings: printed exactly, not rounded)."""
    return ", ".join(f"({sf:g}, {tf:g})" for sf, tf in conditions)


def sampling_line(sampling: dict | None) -> str | None:
    """The grating conditions a block samples and those excluded as aliased, in words (metrics.json
    ``sampling``); None for an older metrics.json without it."""
    if not isinstance(sampling, dict) or "n_conditions" not in sampling:
        return None
    t, h, w = (sampling.get("stage_input_stride_thw") or ["?"] * 3)[:3]
    text = (f"Gratings: {sampling.get('n_conditions_sampled')} of {sampling.get('n_conditions')} (sf, tf) conditions "
            f"sampled (the block's stage reads the clip at stride {t} frames × {h} px: sf < "
            f"{sampling.get('max_sf_sampled'):g} cycles/px, tf < {sampling.get('max_tf_sampled'):g} cycles/frame)")
    excluded = sampling.get("excluded_conditions") or []
    text += f"; excluded as aliased: {_pairs(excluded)}" if excluded else "; none excluded"
    if sampling.get("dot_offsets") is not None:
        text += f"; dot fields shifted over {sampling['dot_offsets']} frame(s)"
    return text + "."


def _block_view(block: str, entry: dict, bid: str) -> dict:
    tr, un = entry.get("trained") or {}, entry.get("untrained") or {}
    has_un = bool(un)
    findings: list[dict] = []
    if not has_un:
        findings.append(_finding("No untrained control in metrics.json: the numbers below are NOT compared with the "
                                 "untrained network (re-run `stdann analyze` without --no-control).", css="below"))
    if as_number(get(tr, DIRECTION_HEADLINE)) is None and as_number(get(tr, "dsi_median")) is not None:
        findings.append(_finding("No blank-subtracted vector strength in metrics.json (analysed before measurement v2): "
                                 "the headline direction verdict is missing; re-run `stdann analyze`.", css="below"))
    for key in FINDING_KEYS:
        if as_number(get(tr, key)) is None:
            continue
        m = metric(key)
        text = ("headline (direction selective?): " if key == DIRECTION_HEADLINE else "") + \
            f"trained {m.label} {format_with_ci(tr, key)}"
        if has_un:
            v, vtext = _stored_verdict(entry, key)
            findings.append(_finding(f"{text} vs untrained {format_with_ci(un, key)}:", vtext, verdict_class(v, m.sense)))
        else:
            findings.append(_finding(text + "."))
    sampled = sampling_line(tr.get("sampling"))
    if sampled:
        findings.append(_finding(sampled))
    if tr.get("n_responsive") is not None:
        t = f"{format_number(tr.get('n_responsive'))} of {format_number(tr.get('n_units'))} units responsive (trained)"
        if has_un:
            t += f", {format_number(un.get('n_responsive'))} of {format_number(un.get('n_units'))} (untrained)"
        findings.append(_finding(t + "."))
    for label, s in (("trained", tr), ("untrained", un)):
        if not s:
            continue
        if s.get("note"):
            findings.append(_finding(f"{label}: {s['note']}.", css="below"))
        if s.get("map_note"):
            findings.append(_finding(f"{label}: {s['map_note']}."))
        det = s.get("direction_consistency_detail")
        if isinstance(det, dict) and det.get("n"):
            findings.append(_finding(
                f"{label}: the preferred direction of {format_number(det.get('k'))} of {format_number(det.get('n'))} "
                f"direction-selective units agrees within {format_number(det.get('tolerance_deg'))}° between their best "
                f"and second-best sampled SF/TF condition (chance {format_number(det.get('chance'))}):",
                det.get("text"), "above" if det.get("above_chance") else "na"))
        elif s.get("direction_consistency_note"):
            findings.append(_finding(f"{label}: {s['direction_consistency_note']}."))
        if isinstance(s.get("direction_bias"), dict):
            b = bias_line(s["direction_bias"])
            findings.append(_finding(f"{label}: population bias {b['text']}:", b["verdict"], b["css"]))
        if as_number(s.get("pinwheel_density")) is not None:
            findings.append(_finding(
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
            findings.append(_finding(t + ":", order.get("text", "no map-order verdict in the metrics"), css))

    selectivity = []
    for key in SELECTIVITY:
        m = metric(key)
        if as_number(get(tr, key)) is None and as_number(get(un, key)) is None:
            continue
        v, vtext = _stored_verdict(entry, key) if has_un else ("", "no untrained control")
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
            extra.append({"name": name, "trained": _compact(tr.get(key)), "untrained": _compact(un.get(key)) if has_un else None})
    return {"name": block, "id": f"block-{bid}", "table_id": f"headline-{bid}", "is_mt": block == MT_BLOCK,
            "findings": findings, "selectivity": selectivity, "maps": maps, "extra": extra}


def _compact(d) -> str:
    if not isinstance(d, dict):
        return "n/a"
    return ", ".join(f"{k} {format_number(v)}" for k, v in d.items() if not isinstance(v, (dict, list)) and k != "criterion")


def _comparison_view(rows: list[dict]) -> list[dict]:
    out = []
    for r in rows:
        lo, hi = r.get("macaque_low"), r.get("macaque_high")
        where = r.get("trained_vs_macaque")
        m_sense = METRICS[r["metric"]].sense if r.get("metric") in METRICS else 0
        v = r.get("trained_vs_untrained")
        out.append({
            "quantity": r.get("quantity"), "block": r.get("block"),
            "trained": _with_ci(r.get("trained_median"), r.get("trained_ci_low"), r.get("trained_ci_high")),
            "untrained": _with_ci(r.get("untrained_median"), r.get("untrained_ci_low"), r.get("untrained_ci_high")),
            "verdict": (COMPARISON_TEXT.get(v, "no verdict stored") if v else "no verdict stored").split(" (")[0],
            "verdict_css": verdict_class(v, m_sense),
            "range": "no published value" if as_number(lo) is None and as_number(hi) is None
                     else f"{format_number(lo)} – {format_number(hi)}",
            "where": {"inside": "inside", "below": "below the range", "above": "above the range"}.get(where, "n/a"),
            "where_css": {"inside": "above", "below": "below", "above": "below"}.get(where, "na"),
            "unit": r.get("unit"), "sources": r.get("sources"), "note": r.get("note")})
    return out


def _with_ci(v, lo, hi) -> str:
    s = format_number(v)
    if as_number(lo) is not None and as_number(hi) is not None:
        s += f" [{format_number(lo)}, {format_number(hi)}]"
    return s


def _footer() -> dict:
    return {"version": __version__, "python": platform.python_version(),
            "written": _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")}


def _versions(v) -> list[tuple[str, str]]:
    return [(str(k), str(x)) for k, x in v.items()] if isinstance(v, dict) else []


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
    cfg_text = _read_text(run / "config.yaml")
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
               ("task", task_line(_read_train_log(run))),
               ("contrastive pretraining", task_line(_read_train_log(run / "pretrain")) if (run / "pretrain").is_dir()
                else None),
               ("folder", str(run.resolve()))]
    blocks = metrics.get("blocks") if isinstance(metrics.get("blocks"), dict) else {}
    order = sorted(blocks, key=lambda b: (b != MT_BLOCK, b))
    block_views = [_block_view(b, blocks[b], f"b{i}") for i, b in enumerate(order)]

    curve = training_curve_png(_read_train_log(run))
    extra = {}
    if curve is not None:
        extra["training"] = [_figure("training curve (logs/train.csv)", curve,
                                     "InfoNCE task loss (and total loss), each block's spatial loss SL_rel, and the "
                                     "learning rate against training step, drawn from logs/train.csv.")]
    groups = figure_groups(_read_pngs(run / "figures"), extra)
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
    n_images = _number_figures(groups, map_blocks)
    rules = metrics.get("rules") if isinstance(metrics.get("rules"), dict) else {}
    methods = [("direction convention", metrics.get("direction_convention") or DIRECTION_CONVENTION),
               ("BatchNorm during measurement", metrics.get("batchnorm"))]
    methods += [(k.replace("_", " "), v) for k, v in rules.items()]
    methods += [("stimuli", ", ".join(map(str, metrics.get("stimuli", []))) or None),
                ("stimulus clip", _compact(metrics.get("clip")) if metrics.get("clip") else None),
                ("checkpoints", _compact(metrics.get("checkpoints")) if metrics.get("checkpoints") else None)]
    return {
        "kind": "run", "title": f"stdann run report: {run.resolve().name}",
        "subtitle": f"{what} — status {info.get('status', 'unknown')}",
        "summary": [(k, v) for k, v in summary if v not in (None, "")],
        "analysed": bool(metrics), "run_path": str(run), "notes": list(metrics.get("notes") or []),
        "versions": _versions(info.get("versions")),
        "responsive_rule": rules.get("responsive", ""), "selective_rule": rules.get("direction_selective", ""),
        "headline_rule": rules.get("headline", ""),
        "blocks": block_views, "comparison": _comparison_view(metrics.get("comparison") if isinstance(metrics.get("comparison"), list) else []),
        "map_blocks": map_blocks, "figure_groups": groups, "n_images": n_images,
        "convention": DIRECTION_CONVENTION,
        "methods": [(k, v) for k, v in methods if v not in (None, "")],
        "ephys_config": yaml.safe_dump(metrics["ephys_config"], sort_keys=False) if metrics.get("ephys_config") else None,
        "config_yaml": cfg_text, "footer": _footer(),
    }


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


def study_view(study: Path) -> dict:
    """Everything the study template shows, read from study.json (and the conditions' run.json)."""
    study = Path(study)
    s = read_json(study / "study.json")
    conds = [c for c in (s.get("conditions") or []) if isinstance(c, dict)]
    kind = s.get("kind", "study")
    task_keys = list(dict.fromkeys(k for c in conds for k in _task_cells(c.get("task"))))

    def entry(c, b):
        return (c.get("metrics") or {}).get(b) or {}

    explicit = (DIRECTION_HEADLINE, "dsi_median", "fraction_direction_selective")
    shown = [k for k in HEADLINE if k not in explicit
             and any(as_number(get(entry(c, MT_BLOCK).get(n) or {}, k)) is not None for c in conds for n in NETWORKS)]
    counts = {"above": 0, "below": 0, "other": 0}
    rows = []
    for c in conds:
        e = entry(c, MT_BLOCK)
        tr, un = e.get("trained") or {}, e.get("untrained") or {}
        v, vtext = _stored_verdict(e, DIRECTION_HEADLINE)
        dv, dvtext = _stored_verdict(e, "dsi_median")
        counts[v if v in ("above", "below") else "other"] += 1
        tc = _task_cells(c.get("task"))
        rows.append({"name": c.get("name"), "label": c.get("label"), "seed": c.get("seed"),
                     "overrides": _overrides_text(c.get("overrides")), "status": c.get("status"),
                     "head_trained": format_with_ci(tr, DIRECTION_HEADLINE),
                     "head_untrained": format_with_ci(un, DIRECTION_HEADLINE),
                     "verdict": (v or "no verdict").replace("_", " "), "verdict_title": vtext,
                     "css": verdict_class(v, 1),
                     "dsi_trained": format_with_ci(tr, "dsi_median"), "dsi_untrained": format_with_ci(un, "dsi_median"),
                     "dsi_verdict": (dv or "no verdict").replace("_", " "), "dsi_verdict_title": dvtext,
                     "dsi_css": verdict_class(dv, 1),
                     "frac_trained": format_with_ci(tr, "fraction_direction_selective"),
                     "frac_untrained": format_with_ci(un, "fraction_direction_selective"),
                     "metrics": [f"{format_value(k, get(tr, k))} / {format_value(k, get(un, k))}" for k in shown],
                     "task": [tc.get(k, "") for k in task_keys], "link": _cond_link(study, c)})
    others = sorted({b for c in conds for b in (c.get("metrics") or {}) if b != MT_BLOCK})
    orows = []
    for c in conds:
        for b in others:
            e = entry(c, b)
            tr, un = e.get("trained") or {}, e.get("untrained") or {}
            if not tr and not un:
                continue
            v, vtext = _stored_verdict(e, DIRECTION_HEADLINE)
            dv, dvtext = _stored_verdict(e, "dsi_median")
            orows.append({"name": c.get("name"), "block": b, "head_trained": format_with_ci(tr, DIRECTION_HEADLINE),
                          "head_untrained": format_with_ci(un, DIRECTION_HEADLINE),
                          "verdict": (v or "no verdict").replace("_", " "), "verdict_title": vtext,
                          "css": verdict_class(v, 1),
                          "dsi_trained": format_with_ci(tr, "dsi_median"), "dsi_untrained": format_with_ci(un, "dsi_median"),
                          "dsi_verdict": (dv or "no verdict").replace("_", " "), "dsi_verdict_title": dvtext,
                          "dsi_css": verdict_class(dv, 1),
                          "pairs": [f"{format_value(k, get(tr, k))} / {format_value(k, get(un, k))}"
                                    for k in ("fraction_direction_selective", "direction_bias.resultant_length",
                                              "pinwheel_density", "smoothness")]})
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
    groups = figure_groups(_read_pngs(study / "figures"))
    n_images = _number_figures(groups, [])
    return {
        "kind": "study", "title": f"stdann {kind} report: {study.resolve().name}",
        "subtitle": f"{kind} with {len(conds)} conditions" + (f", created {s.get('created')}" if s.get("created") else ""),
        "mt_block": MT_BLOCK, "n_conditions": len(conds), "counts": counts,
        "headline_label": metric(DIRECTION_HEADLINE).label,
        "columns": [metric(k).column for k in shown], "task_keys": task_keys, "rows": rows,
        "other_columns": [metric(k).column for k in ("fraction_direction_selective", "direction_bias.resultant_length",
                                                     "pinwheel_density", "smoothness")],
        "other_rows": orows, "controls": control_rows,
        "controls_raw": json.dumps(controls, indent=2, default=str) if controls and control_rows is None else None,
        "figure_groups": groups, "n_images": n_images, "convention": DIRECTION_CONVENTION,
        "batchnorm": s.get("batchnorm"),
        "settings": [(k, v) for k, v in (("kind", kind), ("created", s.get("created")), ("folder", str(study.resolve())),
                                          ("direction convention", DIRECTION_CONVENTION),
                                          ("BatchNorm during measurement", s.get("batchnorm"))) if v],
        "versions": _versions(versions), "config_yaml": cfg_text, "footer": _footer(),
    }

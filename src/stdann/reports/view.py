"""Reading a run or study folder for the HTML report: the files, figures, verdict classes and
text pieces shared by :mod:`stdann.reports.run_view` and :mod:`stdann.reports.study_view`.

This is the only part of the report that reads files. It decides nothing scientific: verdicts
(trained vs untrained, map order, population bias above chance, macaque range) are read from
metrics.json / study.json, where ``stdann.ephys`` stored them; metrics, labels and formats come
from the metric registry (``stdann.ephys.registry``). What it adds is presentation: text,
formatted numbers, CSS classes and the grouping of figures.
"""

from __future__ import annotations

import base64
import datetime as _dt
import platform
from pathlib import Path


from stdann import __version__
from stdann.fileio import read_json_object
from stdann.errors import MissingFileError
from stdann.ephys.registry import (DIRECTION_HEADLINE, as_number,
                                   format_number, format_value, get)
from stdann.ephys.population import P_FLOOR
from stdann.ephys.verdicts import COMPARISON_TEXT
from stdann.runs.errors import RunFolderError
from stdann.runs.trainlog import read_log



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


def read_text_or_none(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def read_train_log(run: Path) -> list[dict[str, float]]:
    try:
        rows = read_log(run)
    except (OSError, RunFolderError):  # a damaged log: the report goes without its training curve
        return []
    # finite values only: the held-out columns are NaN on the steps without a check
    return [{k: v for k, v in r.items() if as_number(v) is not None} for r in rows]


def read_pngs(folder: Path) -> list[tuple[str, bytes]]:
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


def figure_item(name: str, data: bytes, caption: str) -> dict:
    return {"name": name, "caption": caption, "src": "data:image/png;base64," + base64.b64encode(data).decode("ascii")}


def figure_groups(figs: list[tuple[str, bytes]], extra: dict[str, list[dict]] | None = None) -> list[dict]:
    """[{id, heading, figures: [...]}] in FIGURE_GROUPS order, figures ordered by prefix then name."""
    groups: dict[str, list[dict]] = {}
    for name, data in sorted(figs, key=lambda f: (figure_key(f[0])[2], figure_key(f[0])[1], f[0])):
        groups.setdefault(figure_key(name)[0], []).append(figure_item(name, data, _caption(name)))
    for gid, items in (extra or {}).items():
        groups.setdefault(gid, []).extend(items)
    headings = {gid: h for gid, h, _ in FIGURE_GROUPS} | {"other": "Other figures"}
    order = [g for g, _, _ in FIGURE_GROUPS] + ["other"]
    return [{"id": gid, "heading": headings[gid], "figures": groups[gid]} for gid in order if gid in groups]


def number_figures(groups: list[dict], maps: list[dict]) -> int:
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


# CSS class of a stored range verdict (ephys.verdicts.untrained_range_verdict): green / red when the trained network
# lies above / below every untrained network of the reference, neutral inside; no reading otherwise
RANGE_CSS = {"above_range": "above", "below_range": "below", "inside_range": "same"}


def range_span(key: str, bounds, sep: str = "–") -> str:
    """The untrained reference range ``[low, high]`` of ``key`` as text ("n/a" without one)."""
    return f"{format_value(key, bounds[0])}{sep}{format_value(key, bounds[1])}" if bounds else "n/a"


def stored_verdict(entry: dict, key: str) -> tuple[str | None, str]:
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
def finding(text: str, verdict: str | None = None, css: str = "") -> dict:
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


def compact(d) -> str:
    if not isinstance(d, dict):
        return "n/a"
    return ", ".join(f"{k} {format_number(v)}" for k, v in d.items() if not isinstance(v, (dict, list)) and k != "criterion")


def with_ci(v, lo, hi) -> str:
    s = format_number(v)
    if as_number(lo) is not None and as_number(hi) is not None:
        s += f" [{format_number(lo)}, {format_number(hi)}]"
    return s


def footer() -> dict:
    return {"version": __version__, "python": platform.python_version(),
            "written": _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")}


def version_rows(v) -> list[tuple[str, str]]:
    return [(str(k), str(x)) for k, x in v.items()] if isinstance(v, dict) else []

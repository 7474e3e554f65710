"""`write_report`: one self-contained HTML page for a run folder or a sweep / study folder.

The page only *reads* what training (`stdann train`), analysis (`stdann analyze`) and the studies
(`stdann sweep`) wrote; it never runs an analysis. Everything it shows is inside the one file:
figures are embedded as base64 PNG, the style sheet and a tiny load-check script are inline, and
there is no link to any network resource (no CDN, no web fonts), so the page can be mailed or
archived as is.

Run folder (has ``config.yaml``): summary (what was trained, steps, status, device, versions),
headline numbers of every analysed block with the trained network beside its untrained control
and a plain statement of which is higher, the macaque MT comparison table, every figure of
``figures/`` grouped (maps, tuning, histograms, smoothness, positions, training, other), a training
curve drawn from ``logs/train.csv``, the direction convention, the BatchNorm mode of the
measurement and the exact ``config.yaml``.

Study folder (has ``study.json``): a table with one row per condition (MT block ``layer3.1`` first,
then the other blocks, task performance), the study's figures, relative links to each condition's
own ``report.html`` when it exists, the study's config and the versions.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import html
import io
import json
import math
import os
import platform
from pathlib import Path
from typing import Any, Iterable

import yaml

MT_BLOCK = "layer3.1"

__all__ = ["ReportError", "write_report", "folder_kind", "MT_BLOCK"]


class ReportError(FileNotFoundError):
    """The folder is not something a report can be made of; the message names what is missing and the
    command that makes it."""


# -- small helpers ---------------------------------------------------------------------------------------
def esc(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _num(v) -> float | None:
    """A finite float, or None (metrics.json writes NaN as null and infinities as strings)."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


def fmt(v, digits: int = 3) -> str:
    if isinstance(v, str) and _num(v) is None:
        return v
    f = _num(v)
    if f is None:
        return "n/a"
    if f == 0:
        return "0"
    if abs(f) >= 1000 or abs(f) < 1e-3:
        return f"{f:.{digits}g}"
    if float(f).is_integer() and abs(f) < 1e6:
        return str(int(f))
    return f"{f:.{digits}g}" if abs(f) >= 1 else f"{f:.{digits - 1}f}" if abs(f) >= 0.1 else f"{f:.{digits}f}"


def _ci(ci) -> tuple[float | None, float | None]:
    if isinstance(ci, (list, tuple)) and len(ci) == 2:
        return _num(ci[0]), _num(ci[1])
    return None, None


def fmt_ci(v, ci) -> str:
    lo, hi = _ci(ci)
    s = fmt(v)
    if lo is not None and hi is not None:
        s += f" [{fmt(lo)}, {fmt(hi)}]"
    return s


def _get(d: Any, *path, default=None):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ReportError(f"cannot read {path}: {e}") from e
    return data if isinstance(data, dict) else {}


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def compare(tr, tr_ci, un, un_ci) -> tuple[str, str]:
    """(verdict, css class) for trained vs untrained: "above"/"below" the untrained control when the
    95% CIs do not overlap (or, without CIs, when the values differ), else "not distinguishable"."""
    t, u = _num(tr), _num(un)
    if t is None or u is None:
        return ("no comparison (value missing)", "na")
    tlo, thi = _ci(tr_ci)
    ulo, uhi = _ci(un_ci)
    if None not in (tlo, thi, ulo, uhi):
        if tlo > uhi:
            return ("above the untrained control (CIs do not overlap)", "above")
        if thi < ulo:
            return ("below the untrained control (CIs do not overlap)", "below")
        return ("not distinguishable from the untrained control (CIs overlap)", "same")
    if t > u:
        return ("above the untrained control (no CI)", "above")
    if t < u:
        return ("below the untrained control (no CI)", "below")
    return ("equal to the untrained control", "same")


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


# -- figures ----------------------------------------------------------------------------------------------
FIGURE_GROUPS = (  # (group id, heading, filename prefixes)
    ("curves", "Sweep and emergence curves", ("sweep", "tradeoff", "trade_off", "emergence", "alpha", "study", "curve")),
    ("maps", "Maps", ("direction_map", "axial_map", "map")),
    ("tuning", "Tuning", ("tuning", "polar", "plaid", "rdk", "coherence")),
    ("histograms", "Histograms", ("histogram",)),
    ("smoothness", "Smoothness", ("smoothness",)),
    ("positions", "Positions", ("positions", "swap", "sheet")),
    ("training", "Training", ("training", "train", "loss")),
)

CAPTIONS = {
    "direction_map": "Direction map: hue = preferred direction, brightness = selectivity (1 − CV_direction); "
                     "circles = pinwheels (white +1, black −1). Trained beside untrained.",
    "axial_map": "Axial map: hue = preferred axis (180° periodic), brightness = 1 − CV_axial.",
    "tuning_examples": "Example tuning curves of responsive units at their best spatial/temporal frequency, "
                       "ordered from high to low DSI, each normalised to its peak.",
    "histograms": "Distributions over responsive units (DSI, DI, CV_direction, bandwidth); grey band = macaque MT range.",
    "smoothness": "Mean |Δ preferred direction| against cortical distance, solid = real positions, dashed = positions "
                  "shuffled; 90° = chance.",
    "positions": "Unit positions on the cortical sheet (swap optimisation).",
}


def figure_group(name: str) -> str:
    return _figure_key(name)[0]


def _figure_key(name: str) -> tuple[str, int]:
    """(group, rank of the matching prefix) so that e.g. direction maps come before axial maps."""
    stem = Path(name).stem.lower()
    for gid, _, prefixes in FIGURE_GROUPS:
        for i, p in enumerate(prefixes):
            if stem.startswith(p):
                return gid, i
    return "other", 0


def _caption(name: str) -> str:
    stem = Path(name).stem
    for key, text in CAPTIONS.items():
        if stem.startswith(key):
            rest = stem[len(key):].strip("_")
            return (f"{rest}: " if rest else "") + text
    return stem.replace("_", " ")


def _img_tag(png: bytes, alt: str) -> str:
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _figure_html(png: bytes, name: str, caption: str, fig_id: str) -> str:
    return (f'<figure id="{esc(fig_id)}" data-file="{esc(name)}">{_img_tag(png, caption)}'
            f"<figcaption><b>{esc(name)}</b> — {esc(caption)}</figcaption></figure>")


def _is_png(data: bytes) -> bool:
    return data[:8] == b"\x89PNG\r\n\x1a\n"


def _collect_figures(folder: Path) -> list[tuple[str, bytes]]:
    out = []
    if folder.is_dir():
        for p in sorted(folder.glob("*.png")):
            try:
                data = p.read_bytes()
            except OSError:
                continue
            if _is_png(data):
                out.append((p.name, data))
    return out


def _figures_section(figs: list[tuple[str, bytes]], extra: dict[str, list[tuple[str, bytes, str]]] | None = None,
                     convention: str | None = None) -> str:
    """Figures grouped by kind; ``extra``: group → [(name, png, caption)] made here (training curve)."""
    groups: dict[str, list[str]] = {}
    n = 0
    for name, data in sorted(figs, key=lambda f: (_figure_key(f[0])[1], f[0])):
        gid = figure_group(name)
        groups.setdefault(gid, []).append(_figure_html(data, name, _caption(name), f"fig-{n}"))
        n += 1
    for gid, items in (extra or {}).items():
        for name, data, cap in items:
            groups.setdefault(gid, []).append(_figure_html(data, name, cap, f"fig-{n}"))
            n += 1
    if not groups:
        return "<p class=note>No figures found.</p>"
    parts = []
    if convention:
        parts.append(f"<p class=note>Direction convention in every figure: {esc(convention)}.</p>")
    headings = {gid: h for gid, h, _ in FIGURE_GROUPS} | {"other": "Other figures"}
    for gid in [g for g, _, _ in FIGURE_GROUPS] + ["other"]:
        if gid in groups:
            parts.append(f'<h3 id="figures-{gid}">{esc(headings[gid])}</h3><div class=figs>{"".join(groups[gid])}</div>')
    return "\n".join(parts)


def training_curve_png(rows: list[dict[str, float]]) -> bytes | None:
    """InfoNCE, each block's spatial loss and the learning rate against step (PNG bytes), or None."""
    rows = [r for r in rows if "step" in r]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    keys = set().union(*rows)
    sl_keys = sorted(k for k in keys if k.startswith("sl_") and k != "sl_total")
    task_key = "loss_task" if "loss_task" in keys else ("loss" if "loss" in keys else None)
    panels = [p for p in ("task", "spatial", "lr") if (p == "task" and task_key) or (p == "spatial" and sl_keys)
              or (p == "lr" and "lr" in keys)]
    if not panels:
        return None

    def series(k):
        return [r.get(k, float("nan")) for r in rows]

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.3), squeeze=False)
    for ax, p in zip(axes[0], panels):
        if p == "task":
            ax.plot(steps, series(task_key), lw=1.3, label="InfoNCE (task)" if task_key == "loss_task" else "loss")
            if task_key == "loss_task" and "loss" in keys:
                ax.plot(steps, series("loss"), lw=1, alpha=0.6, label="total loss")
            ax.set_ylabel("loss")
            ax.set_title("contrastive task", fontsize=9)
        elif p == "spatial":
            for i, k in enumerate(sl_keys):
                ax.plot(steps, series(k), lw=1, color=plt.cm.viridis(i / max(1, len(sl_keys) - 1)), label=k[3:])
            ax.set_ylabel("SL_rel")
            ax.set_title("spatial loss per block", fontsize=9)
        else:
            ax.plot(steps, series("lr"), lw=1.3, color="k", label="lr")
            ax.set_ylabel("learning rate")
            ax.set_title("learning rate", fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=6)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _read_train_log(run: Path) -> list[dict[str, float]]:
    path = run / "logs" / "train.csv"
    if not path.is_file():
        return []
    rows = []
    try:
        with open(path, newline="") as f:
            for r in csv.DictReader(f):
                row = {}
                for k, v in r.items():
                    f_ = _num(v)
                    if k and f_ is not None:
                        row[k] = f_
                rows.append(row)
    except (OSError, csv.Error):
        return []
    return rows


# -- page skeleton ----------------------------------------------------------------------------------------
CSS = """
:root { --fg:#1d1f23; --muted:#5b6270; --line:#d5d9e0; --bg:#ffffff; --head:#f3f5f8;
        --above:#1c7c3a; --below:#b3261e; --same:#7a5b00; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); background: var(--bg); margin: 0; line-height: 1.45; font-size: 15px; }
main { max-width: 1180px; margin: 0 auto; padding: 1.2em 1.5em 4em; }
h1 { font-size: 1.6em; margin: .2em 0 .1em; }
h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 2px solid var(--line); padding-bottom: .2em; }
h3 { font-size: 1.05em; margin-top: 1.4em; }
nav { background: var(--head); border: 1px solid var(--line); border-radius: 6px; padding: .5em .9em; margin: 1em 0;
      display: flex; flex-wrap: wrap; gap: .3em 1.2em; }
nav a { white-space: nowrap; }
a { color: #1a56a8; }
.sub { color: var(--muted); margin-top: 0; }
.note { color: var(--muted); font-size: .92em; }
table { border-collapse: collapse; margin: .6em 0 1em; font-size: .9em; width: auto; max-width: 100%; }
.scroll { overflow-x: auto; }
caption { text-align: left; caption-side: top; padding-bottom: .3em; }
.neutral { color: var(--fg); font-weight: 600; }
th, td { border: 1px solid var(--line); padding: .28em .55em; text-align: left; vertical-align: top; }
th { background: var(--head); font-weight: 600; }
td.num { font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fafbfc; }
.above { color: var(--above); font-weight: 600; }
.below { color: var(--below); font-weight: 600; }
.same  { color: var(--same); }
.na    { color: var(--muted); }
ul.findings li { margin: .25em 0; }
.figs { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
/* table layout: the caption wraps at the image's width; images keep their natural size up to the page width */
figure { display: table; margin: 0; max-width: 100%; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; border: 1px solid var(--line);
             border-radius: 6px; background: #fff; }
figcaption { display: table-caption; caption-side: bottom; font-size: .85em; color: var(--muted); padding: .4em .5em 0; }
pre { background: var(--head); border: 1px solid var(--line); border-radius: 6px; padding: .7em; overflow-x: auto;
      font-size: .82em; max-height: 36em; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: .15em 1em; margin: .5em 0; }
dl.kv dt { font-weight: 600; } dl.kv dd { margin: 0; }
.warn { background: #fff4e5; border-left: 4px solid #e8a33d; padding: .5em .8em; margin: .8em 0; }
footer { color: var(--muted); font-size: .85em; margin-top: 3em; border-top: 1px solid var(--line); padding-top: .6em; }
"""

# Marks the body once the page has loaded: data-images-loaded = number of <img> that decoded
# (naturalWidth > 0), data-images-total = number of <img>. Used by the headless-browser test.
LOAD_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = document.querySelectorAll("img");
  var ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; } }
  document.body.dataset.imagesLoaded = String(ok);
  document.body.dataset.imagesTotal = String(imgs.length);
});
"""


def _page(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    """``sections``: (id, heading, inner html)."""
    nav = "".join(f'<a href="#{esc(sid)}">{esc(h)}</a>' for sid, h, _ in sections)
    body = "\n".join(f'<section id="{esc(sid)}"><h2>{esc(h)}</h2>\n{inner}\n</section>' for sid, h, inner in sections)
    from stdann import __version__

    now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<meta name=\"generator\" content=\"stdann {esc(__version__)}\">\n"
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n<script>{LOAD_SCRIPT}</script>\n</head>\n<body>\n<main>\n"
        f"<h1>{esc(title)}</h1>\n<p class=sub>{subtitle}</p>\n<nav>{nav}</nav>\n{body}\n"
        f"<footer>Written by <code>stdann report</code> (stdann {esc(__version__)}, Python "
        f"{esc(platform.python_version())}) on {esc(now)}. Self-contained: figures are embedded, "
        f"no network resource is used.</footer>\n</main>\n</body>\n</html>\n"
    )


def _table(tid: str, header: list[str], rows: list[list[str]], raw: bool = False, caption: str | None = None) -> str:
    """Cells are escaped unless ``raw`` (then the caller escaped them)."""
    cap = f"<caption class=note>{esc(caption)}</caption>" if caption else ""
    th = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for r in rows:
        cells = []
        for c in r:
            cells.append(f"<td>{c if raw else esc(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class=scroll><table id="{esc(tid)}">{cap}<thead><tr>{th}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _kv(items: Iterable[tuple[str, Any]]) -> str:
    return "<dl class=kv>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in items if v not in (None, "")) + "</dl>"


def _versions_html(versions: dict | None) -> str:
    if not versions:
        return "<p class=note>No version record found.</p>"
    return _table("versions", ["package", "version"], [[k, v] for k, v in versions.items()])


def _pre(text: str | None, pid: str) -> str:
    if text is None:
        return "<p class=note>not found</p>"
    return f'<pre id="{esc(pid)}">{esc(text)}</pre>'


# -- run report -------------------------------------------------------------------------------------------
HEADLINE = (  # (label, key of the median, key of the CI or None, what "higher" means, sense)
    # sense: +1 higher = more direction selective, -1 lower = more direction selective, 0 neither
    ("median DSI", "dsi_median", "dsi_ci", "more direction selective", 1),
    ("median DI", "di_median", "di_ci", "more direction selective", 1),
    ("fraction direction selective (DSI > 1/3)", "fraction_direction_selective", None, "more direction-selective units", 1),
    ("fraction DI ≥ 0.5", "fraction_di_ge_half", None, "more direction-selective units", 1),
    ("median CV_direction", "cv_direction_median", "cv_direction_ci", "broader direction tuning (lower = sharper)", -1),
    ("median CV_axial", "cv_axial_median", "cv_axial_ci", "weaker axial tuning (lower = stronger)", 0),
    ("median axial ratio |F2|/|F1|", "axial_ratio_median", "axial_ratio_ci", "stronger axial (bidirectional) component", 0),
    ("median bandwidth (°, FWHH)", "bandwidth_median", "bandwidth_ci", "broader tuning", 0),
)
SENSE = {key: sense for _, key, _, _, sense in HEADLINE}


def _sense_class(cls: str, sense: int) -> str:
    """Colour of a verdict: green when the trained network is the more direction-selective one, red when it
    is the less, plain when the quantity has no such reading (or the two are not distinguishable)."""
    if cls not in ("above", "below"):
        return cls
    if sense == 0:
        return "neutral"
    return "above" if (cls == "above") == (sense > 0) else "below"


def _block_headline(block: str, by_net: dict, bid: str) -> str:
    tr = by_net.get("trained") or {}
    un = by_net.get("untrained") or {}
    has_un = bool(un)
    findings: list[str] = []
    if not has_un:
        findings.append('<li class=below>No untrained control in metrics.json: the numbers below are NOT compared '
                        'with the untrained network (re-run <code>stdann analyze</code> without --no-control).</li>')

    def sentence(label, key, ci_key):
        v, ci = tr.get(key), tr.get(ci_key) if ci_key else None
        if _num(v) is None:
            return None
        s = f"trained {label} {fmt_ci(v, ci)}"
        if has_un:
            u, uci = un.get(key), un.get(ci_key) if ci_key else None
            verdict, cls = compare(v, ci, u, uci)
            cls = _sense_class(cls, SENSE.get(key, 0))
            extra = ""
            if key == "cv_direction_median" and cls in ("above", "below"):
                extra = " (sharper direction tuning)" if cls == "above" else " (broader direction tuning)"
            return f"{esc(s)} vs untrained {esc(fmt_ci(u, uci))}: <span class={cls}>{esc(verdict + extra)}</span>."
        return esc(s) + "."

    for label, key, ci_key in (("median DSI", "dsi_median", "dsi_ci"),
                               ("fraction direction selective", "fraction_direction_selective", None),
                               ("median CV_direction", "cv_direction_median", "cv_direction_ci"),
                               ("median axial ratio", "axial_ratio_median", "axial_ratio_ci")):
        s = sentence(label, key, ci_key)
        if s:
            findings.append(f"<li>{s}</li>")
    n_t, n_u = tr.get("n_responsive"), un.get("n_responsive")
    if n_t is not None:
        findings.append(f"<li>{esc(fmt(n_t))} of {esc(fmt(tr.get('n_units')))} units responsive (trained)"
                        + (f", {esc(fmt(n_u))} of {esc(fmt(un.get('n_units')))} (untrained)" if has_un else "") + ".</li>")
    for label, s in (("trained", tr), ("untrained", un)):
        if not s:
            continue
        if s.get("map_note"):
            findings.append(f"<li>{esc(label)}: {esc(s['map_note'])}.</li>")
        pd = _num(s.get("pinwheel_density"))
        if pd is not None:
            ctrl = s.get("controls") or {}
            parts = [f"{label}: pinwheel density {fmt(pd)} per Λ² (Λ = column spacing {fmt(s.get('column_spacing_mm'))} mm, "
                     f"{fmt(_get(s, 'pinwheels', 'n_pinwheels'))} pinwheels"]
            mr = _get(s, "mean_removed", "pinwheel_density")
            if mr is not None:
                parts.append(f"; mean vector removed {fmt(mr)}")
            parts.append(")")
            sh = _get(ctrl, "shuffled_positions", "pinwheel_density")
            rnd = _get(ctrl, "random_map_same_spectrum", "pinwheel_density")
            if sh is not None or rnd is not None:
                parts.append(f"; controls: positions shuffled {fmt(sh)}"
                             f" (mean removed {fmt(_get(ctrl, 'shuffled_positions', 'pinwheel_density_mean_removed'))}), "
                             f"random map with the same spectrum {fmt(rnd)}")
            parts.append(". A density near π is not by itself evidence of a map: read it with the controls and smoothness.")
            findings.append(f"<li>{esc(''.join(parts))}</li>")
        sm = _num(s.get("smoothness"))
        if sm is not None:
            det = s.get("smoothness_detail") or {}
            a, b, d = det.get("mean_delta_short"), det.get("shuffled_delta_short"), det.get("short_mm")
            txt = f"{label}: smoothness index {fmt(sm)}"
            if a is not None and b is not None:
                txt += (f" (units closer than {fmt(d)} mm differ in preferred direction by {fmt(a)}° on average, "
                        f"{fmt(b)}° with positions shuffled)")
            if sm <= 0.05:
                verdict, cls = "no smoother than the shuffled control (index ≤ 0.05)", "below"
            else:
                verdict, cls = "smoother than the shuffled control", "above"
            findings.append(f"<li>{esc(txt)}: <span class={cls}>{esc(verdict)}</span>.</li>")

    rows = []
    for label, key, ci_key, meaning, sense in HEADLINE:
        v = tr.get(key)
        u = un.get(key) if has_un else None
        if _num(v) is None and _num(u) is None:
            continue
        verdict, cls = compare(v, tr.get(ci_key) if ci_key else None, u, un.get(ci_key) if ci_key else None) \
            if has_un else ("no untrained control", "na")
        cls = _sense_class(cls, sense)
        rows.append([esc(label), f"<span class=num>{esc(fmt_ci(v, tr.get(ci_key) if ci_key else None))}</span>",
                     f"<span class=num>{esc(fmt_ci(u, un.get(ci_key) if ci_key else None))}</span>",
                     f"<span class={cls}>{esc(verdict)}</span>", esc(f"higher = {meaning}")])
    for label, path in (("column spacing Λ (mm)", ("column_spacing_mm",)),
                        ("pinwheel density (per Λ²)", ("pinwheel_density",)),
                        ("pinwheel density, mean vector removed", ("mean_removed", "pinwheel_density")),
                        ("control: shuffled positions, density", ("controls", "shuffled_positions", "pinwheel_density")),
                        ("control: random map same spectrum, density",
                         ("controls", "random_map_same_spectrum", "pinwheel_density")),
                        ("axial map: pinwheel density", ("axial_map", "pinwheel_density")),
                        ("smoothness index (0 = as shuffled)", ("smoothness",)),
                        ("mean |Δ pref| of close pairs (°)", ("smoothness_detail", "mean_delta_short")),
                        ("same, positions shuffled (°)", ("smoothness_detail", "shuffled_delta_short")),
                        ("responsive units", ("n_responsive",)), ("units", ("n_units",))):
        v, u = _get(tr, *path), _get(un, *path)
        if v is None and u is None:
            continue
        rows.append([esc(label), f"<span class=num>{esc(fmt(v))}</span>", f"<span class=num>{esc(fmt(u))}</span>", "", ""])
    table = _table(f"headline-{bid}", ["quantity", "trained [95% CI]", "untrained [95% CI]", "trained vs untrained",
                                       "reading"], rows, raw=True)
    extra = []
    for name, key in (("plaids", "plaids"), ("random-dot kinematograms", "rdk")):
        if tr.get(key) or un.get(key):
            extra.append(f"<p class=note><b>{esc(name)}</b>: trained {esc(_compact(tr.get(key)))}"
                         + (f"; untrained {esc(_compact(un.get(key)))}" if has_un else "") + "</p>")
    return (f'<h3 id="block-{esc(bid)}">{esc(block)}{" (MT)" if block == MT_BLOCK else ""}</h3>'
            f'<ul class=findings>{"".join(findings)}</ul>{table}{"".join(extra)}')


def _compact(d) -> str:
    if not isinstance(d, dict):
        return "n/a"
    return ", ".join(f"{k} {fmt(v)}" for k, v in d.items() if not isinstance(v, (dict, list)) and k != "criterion")


def _comparison_rows(run: Path, metrics: dict) -> list[dict]:
    rows = metrics.get("comparison")
    if isinstance(rows, list) and rows:
        return rows
    path = run / "tables" / "macaque_comparison.csv"
    if path.is_file():
        try:
            with open(path, newline="") as f:
                rows = [{k: (v if v != "" else None) for k, v in r.items()} for r in csv.DictReader(f)]
            if rows:
                return rows
        except (OSError, csv.Error):
            pass
    if isinstance(metrics.get("blocks"), dict) and metrics["blocks"]:
        try:
            from stdann.ephys.analyze import comparison_rows, load_reference

            return comparison_rows(metrics["blocks"], load_reference())
        except Exception:  # noqa: BLE001 - the table is optional; say so below
            return []
    return []


def _comparison_table(rows: list[dict]) -> str:
    if not rows:
        return "<p class=note>No macaque comparison (run <code>stdann analyze</code> first).</p>"
    out = []
    for r in rows:
        lo, hi = r.get("macaque_low"), r.get("macaque_high")
        rng = "no published value" if _num(lo) is None and _num(hi) is None else f"{fmt(lo)} – {fmt(hi)}"
        inr = r.get("trained_in_macaque_range")
        if isinstance(inr, str):
            inr = {"true": True, "false": False}.get(inr.lower())
        tv = _num(r.get("trained_median"))
        if inr is True:
            inr_s, cls = "inside", "above"
        elif inr is False and tv is not None and _num(lo) is not None:
            inr_s, cls = ("below the range" if tv < _num(lo) else "above the range"), "below"
        else:
            inr_s, cls = "n/a", "na"
        tci = (r.get("trained_ci_low"), r.get("trained_ci_high"))
        uci = (r.get("untrained_ci_low"), r.get("untrained_ci_high"))
        verdict, vcls = compare(r.get("trained_median"), tci, r.get("untrained_median"), uci)
        vcls = _sense_class(vcls, SENSE.get(str(r.get("metric")), 0))
        out.append([esc(r.get("quantity")), esc(r.get("block")),
                    f"<span class=num>{esc(fmt_ci(r.get('trained_median'), tci))}</span>",
                    f"<span class=num>{esc(fmt_ci(r.get('untrained_median'), uci))}</span>",
                    f"<span class={vcls}>{esc(verdict.split(' (')[0])}</span>",
                    f"<span class=num>{esc(rng)}</span>", f"<span class={cls}>{esc(inr_s)}</span>",
                    esc(r.get("unit")), esc(r.get("sources")), esc(r.get("note"))])
    return _table("macaque-comparison", ["quantity", "block", "trained [95% CI]", "untrained [95% CI]",
                                         "trained vs untrained", "macaque MT", "trained in range?", "unit", "sources",
                                         "note"], out, raw=True,
                  caption="Macaque values are ranges from the literature (stdann/ephys/reference/macaque_mt.yaml); "
                          "several are from secondary reading, see the notes.")


def _run_sections(run: Path) -> tuple[str, str, list[tuple[str, str, str]]]:
    from stdann import DIRECTION_CONVENTION

    cfg_text = _read_text(run / "config.yaml")
    try:
        cfg = yaml.safe_load(cfg_text or "") or {}
    except yaml.YAMLError:
        cfg = {}
    cfg = cfg if isinstance(cfg, dict) else {}
    info = _read_json(run / "run.json") if (run / "run.json").is_file() else {}
    metrics = _read_json(run / "metrics.json") if (run / "metrics.json").is_file() else {}
    sections: list[tuple[str, str, str]] = []

    # summary
    topo = cfg.get("topography") or {}
    data = cfg.get("data") or {}
    model = cfg.get("model") or {}
    optim = cfg.get("optim") or {}
    alpha = topo.get("alpha")
    what = (f"3D ResNet-18 ({model.get('arch', 'r3d_18')}, width {model.get('width', '?')}) trained with "
            + ("the spatial loss only" if topo.get("spatial_only") else
               f"MoCo + α·spatial loss, α = {fmt(alpha)}" if alpha is not None else "MoCo")
            + f" on {data.get('source', '?')} video ({data.get('frames', '?')} frames × {data.get('size', '?')}²)")
    last = info.get("last") or {}
    items = [("trained", what), ("status", info.get("status", "unknown (no run.json)")),
             ("steps", f"{info.get('step', '?')} of {info.get('total_steps', optim.get('max_steps', '?'))}"),
             ("batch size", optim.get("batch_size")), ("device", info.get("device")),
             ("world size", info.get("world_size")), ("last update", info.get("updated")),
             ("last logged loss", f"total {fmt(last.get('loss'))}, InfoNCE {fmt(last.get('loss_task'))}, "
                                  f"spatial (sum) {fmt(last.get('sl_total'))}" if last else None),
             ("folder", str(run.resolve()))]
    summary = _kv(items)
    if not metrics:
        summary += (f'<p class=warn>This run has not been analysed: no metrics.json. Run '
                    f'<code>stdann analyze {esc(run)}</code>, then <code>stdann report {esc(run)}</code> again.</p>')
    if metrics.get("notes"):
        summary += "<ul>" + "".join(f"<li class=warn>{esc(n)}</li>" for n in metrics["notes"]) + "</ul>"
    sections.append(("summary", "Summary", summary + "<h3>Versions</h3>" + _versions_html(info.get("versions"))))

    # headline numbers
    blocks = metrics.get("blocks") if isinstance(metrics.get("blocks"), dict) else {}
    if blocks:
        order = sorted(blocks, key=lambda b: (b != MT_BLOCK, b))
        intro = ("<p class=note>Every selectivity number is shown beside the same run's untrained network "
                 "(<code>checkpoints/init.pt</code>). “Above/below the untrained control” means the 95% bootstrap "
                 "CIs of the medians do not overlap; fractions have no CI and are compared as numbers. Responsive units "
                 f"only: {esc(metrics.get('responsive_rule', ''))}; direction selective: "
                 f"{esc(metrics.get('direction_selective_rule', ''))}.</p>")
        inner = intro + "".join(_block_headline(b, blocks[b], f"b{i}") for i, b in enumerate(order))
        sections.append(("headline", "Headline numbers: trained vs untrained", inner))
        sections.append(("macaque", "Comparison with macaque MT", _comparison_table(_comparison_rows(run, metrics))))

    # figures
    extra = {}
    png = training_curve_png(_read_train_log(run))
    if png is not None:
        extra["training"] = [("training curve (logs/train.csv)", png,
                              "InfoNCE task loss (and total loss), each block's spatial loss SL_rel, and the learning "
                              "rate against training step, drawn from logs/train.csv.")]
    figs = _collect_figures(run / "figures")
    sections.append(("figures", "Figures", _figures_section(figs, extra, DIRECTION_CONVENTION)))

    # conventions and config
    conv = [("direction convention", metrics.get("direction_convention") or DIRECTION_CONVENTION),
            ("BatchNorm during measurement", metrics.get("batchnorm")),
            ("response", metrics.get("response")), ("map", metrics.get("map_rule")),
            ("smoothness", metrics.get("smoothness_rule")), ("pinwheel density", metrics.get("pinwheel_density_rule")),
            ("stimuli", ", ".join(map(str, metrics.get("stimuli", []))) or None),
            ("stimulus clip", _compact(metrics.get("clip")) if metrics.get("clip") else None),
            ("checkpoints", _compact(metrics.get("checkpoints")) if metrics.get("checkpoints") else None)]
    methods = _kv(conv)
    if metrics.get("ephys_config"):
        methods += "<h3>Analysis settings</h3>" + _pre(yaml.safe_dump(metrics["ephys_config"], sort_keys=False), "ephys-config")
    sections.append(("methods", "Conventions and methods", methods))
    sections.append(("config", "Exact configuration (config.yaml)", _pre(cfg_text, "config-yaml")))

    title = f"stdann run report: {run.resolve().name}"
    sub = esc(what) + f" — status {esc(info.get('status', 'unknown'))}"
    return title, sub, sections


# -- study report -----------------------------------------------------------------------------------------
STUDY_METRICS = (  # (column label, key, ci key)
    ("DSI", "dsi_median", "dsi_ci"),
    ("frac. DS", "fraction_direction_selective", None),
    ("CV_dir", "cv_direction_median", "cv_direction_ci"),
    ("axial ratio", "axial_ratio_median", "axial_ratio_ci"),
    ("pinwheels/Λ²", "pinwheel_density", None),
    ("Λ (mm)", "column_spacing_mm", None),
    ("smoothness", "smoothness", None),
)


def _task_cells(task: Any) -> dict[str, str]:
    out = {}
    if isinstance(task, dict):
        for k, v in task.items():
            if isinstance(v, (dict, list)):
                continue
            out[str(k)] = fmt(v) if _num(v) is not None or v is None else str(v)
    return out


def _cond_dir(study: Path, rd) -> Path:
    """A condition's run folder: absolute, else relative to the study folder, else to the working directory."""
    p = Path(rd)
    if p.is_absolute() or (study / p).exists() or not p.exists():
        return p if p.is_absolute() else study / p
    return p


def _cond_link(study: Path, c: dict) -> str:
    rd = c.get("run_dir")
    if not rd:
        return "<span class=na>no run folder</span>"
    p = _cond_dir(study, rd)
    rep = p / "report.html"
    if rep.is_file():
        rel = os.path.relpath(rep.resolve(), study.resolve())
        return f'<a href="{esc(Path(rel).as_posix())}">report</a>'
    return f'<span class=na title="{esc(p)}">no report.html (run <code>stdann report {esc(rd)}</code>)</span>'


def _study_sections(study: Path) -> tuple[str, str, list[tuple[str, str, str]]]:
    s = _read_json(study / "study.json")
    conds = [c for c in (s.get("conditions") or []) if isinstance(c, dict)]
    kind = s.get("kind", "study")
    sections: list[tuple[str, str, str]] = []

    # main comparison table (MT block)
    task_keys: list[str] = []
    for c in conds:
        for k in _task_cells(c.get("task")):
            if k not in task_keys:
                task_keys.append(k)
    header = ["condition", "label", "seed", "overrides", "status", "DSI trained [CI]", "DSI untrained [CI]",
              "DSI: trained vs untrained", "frac. DS trained", "frac. DS untrained"]
    # metric columns that no condition has are left out
    shown = [(lab, key) for lab, key, _ in STUDY_METRICS[2:]
             if any(_num(_get(c, "metrics", MT_BLOCK, net, key)) is not None for c in conds for net in ("trained", "untrained"))]
    header += [f"{lab} (trained / untrained)" for lab, _ in shown]
    header += [f"task: {k}" for k in task_keys] + ["report"]
    rows = []
    n_below = n_above = 0
    for c in conds:
        mt = _get(c, "metrics", MT_BLOCK) or {}
        tr, un = mt.get("trained") or {}, mt.get("untrained") or {}
        verdict, cls = compare(tr.get("dsi_median"), tr.get("dsi_ci"), un.get("dsi_median"), un.get("dsi_ci"))
        n_below += cls == "below"
        n_above += cls == "above"
        ov = c.get("overrides")
        ov_s = ", ".join(map(str, ov)) if isinstance(ov, (list, tuple)) else (
            ", ".join(f"{k}={v}" for k, v in ov.items()) if isinstance(ov, dict) else (ov or ""))
        row = [esc(c.get("name")), esc(c.get("label")), esc(c.get("seed")), f"<code>{esc(ov_s)}</code>",
               esc(c.get("status")),
               f"<span class=num>{esc(fmt_ci(tr.get('dsi_median'), tr.get('dsi_ci')))}</span>",
               f"<span class=num>{esc(fmt_ci(un.get('dsi_median'), un.get('dsi_ci')))}</span>",
               f"<span class={cls}>{esc(verdict.split(' (')[0])}</span>",
               f"<span class=num>{esc(fmt(tr.get('fraction_direction_selective')))}</span>",
               f"<span class=num>{esc(fmt(un.get('fraction_direction_selective')))}</span>"]
        for _, key in shown:
            row.append(f"<span class=num>{esc(fmt(tr.get(key)))} / {esc(fmt(un.get(key)))}</span>")
        tc = _task_cells(c.get("task"))
        row += [f"<span class=num>{esc(tc.get(k, ''))}</span>" for k in task_keys]
        row.append(_cond_link(study, c))
        rows.append(row)
    if conds:
        summary = (f"<p>{len(conds)} conditions. In block {MT_BLOCK} (MT), the trained median DSI is "
                   f"<span class=above>above</span> the untrained control in {n_above}, "
                   f"<span class=below>below</span> it in {n_below}, and not distinguishable in "
                   f"{len(conds) - n_above - n_below} (95% bootstrap CIs; missing values count as not distinguishable)."
                   "</p>")
        table = summary + _table("study-comparison", header, rows, raw=True,
                                 caption=f"Block {MT_BLOCK} (MT). Numbers are medians over responsive units; "
                                         "pairs are trained / untrained.")
    else:
        table = "<p class=note>study.json lists no conditions.</p>"

    # other blocks
    others = sorted({b for c in conds for b in (c.get("metrics") or {}) if b != MT_BLOCK})
    if others:
        orows = []
        for c in conds:
            for b in others:
                m = _get(c, "metrics", b) or {}
                tr, un = m.get("trained") or {}, m.get("untrained") or {}
                if not tr and not un:
                    continue
                verdict, cls = compare(tr.get("dsi_median"), tr.get("dsi_ci"), un.get("dsi_median"), un.get("dsi_ci"))
                orows.append([esc(c.get("name")), esc(b), f"<span class=num>{esc(fmt_ci(tr.get('dsi_median'), tr.get('dsi_ci')))}</span>",
                              f"<span class=num>{esc(fmt_ci(un.get('dsi_median'), un.get('dsi_ci')))}</span>",
                              f"<span class={cls}>{esc(verdict.split(' (')[0])}</span>",
                              f"<span class=num>{esc(fmt(tr.get('fraction_direction_selective')))} / "
                              f"{esc(fmt(un.get('fraction_direction_selective')))}</span>",
                              f"<span class=num>{esc(fmt(tr.get('pinwheel_density')))} / {esc(fmt(un.get('pinwheel_density')))}</span>",
                              f"<span class=num>{esc(fmt(tr.get('smoothness')))} / {esc(fmt(un.get('smoothness')))}</span>"])
        table += "<h3>Other blocks</h3>" + _table(
            "study-other-blocks", ["condition", "block", "DSI trained [CI]", "DSI untrained [CI]", "trained vs untrained",
                                   "frac. DS (trained / untrained)", "pinwheels/Λ² (trained / untrained)",
                                   "smoothness (trained / untrained)"], orows, raw=True)
    sections.append(("comparison", "Conditions compared", table))

    controls = s.get("controls")
    if controls:
        if isinstance(controls, dict):
            crow = [[esc(k), f"<code>{esc(json.dumps(v, default=str) if isinstance(v, (dict, list)) else fmt(v) if _num(v) is not None else v)}</code>"]
                    for k, v in controls.items()]
            inner = _table("study-controls", ["control", "value"], crow, raw=True)
        else:
            inner = _pre(json.dumps(controls, indent=2, default=str), "study-controls")
        sections.append(("controls", "Controls", inner))

    from stdann import DIRECTION_CONVENTION

    sections.append(("figures", "Figures", _figures_section(_collect_figures(study / "figures"), None, DIRECTION_CONVENTION)))

    # config and versions
    versions = s.get("versions")
    if not versions:
        for c in conds:
            rd = c.get("run_dir")
            if rd:
                p = _cond_dir(study, rd)
                if (p / "run.json").is_file():
                    try:
                        versions = json.loads((p / "run.json").read_text()).get("versions")
                    except (OSError, ValueError):
                        versions = None
                    if versions:
                        break
    cfg = s.get("config")
    cfg_text = None
    if isinstance(cfg, str):
        cfg_text = cfg
    elif cfg is not None:
        cfg_text = yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)
    items = [("kind", kind), ("created", s.get("created")), ("folder", str(study.resolve())),
             ("direction convention", DIRECTION_CONVENTION)]
    inner = _kv(items) + "<h3>Versions</h3>" + _versions_html(versions) + "<h3>Study configuration</h3>" + _pre(cfg_text, "study-config")
    sections.append(("config", "Configuration and versions", inner))
    title = f"stdann {kind} report: {study.resolve().name}"
    sub = f"{esc(kind)} with {len(conds)} conditions" + (f", created {esc(s.get('created'))}" if s.get("created") else "")
    return title, sub, sections


# -- entry point ------------------------------------------------------------------------------------------
def write_report(path_in: str | Path, out_html: str | Path | None = None) -> Path:
    """Write one self-contained HTML report of a run folder or a sweep / study folder and return its
    path (default ``PATH/report.html``). Reads files only; raises :class:`ReportError` (a
    ``FileNotFoundError``) naming what is missing when the folder is neither kind."""
    folder = Path(path_in)
    kind = folder_kind(folder)
    title, sub, sections = _run_sections(folder) if kind == "run" else _study_sections(folder)
    page = _page(title, sub, sections)
    out = Path(out_html) if out_html is not None else folder / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out

"""Figures of a block's cortical sheet: the unit-level map, smoothed maps, smoothness curves.

Hue = preferred direction (axial maps: preferred axis), one turn of hue per 360° (180°); the colour
key's 0° points right and angles run counter-clockwise, as the direction convention.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stdann.ephys.registry import format_value
from stdann.reports.figures.common import direction_rgb, hue_wheel, map_rgb, new_figure, save

PANEL_IN = 4.2  # inches per map panel


def bias_text(bias: dict | None) -> str:
    """One line: R, its mean direction and chance level, and the verdict."""
    if not bias:
        return "population bias: n/a"
    r = format_value("direction_bias.resultant_length", bias.get("resultant_length"))
    mean = format_value("direction_bias.mean_direction_deg", bias.get("mean_direction_deg"))
    chance = format_value("direction_bias.chance_resultant_length", bias.get("chance_resultant_length"))
    verdict = "above chance" if bias.get("above_chance") else "not above chance"
    return f"R = {r} at {mean}°, chance {chance} ({bias.get('n_channels', '?')} channels): {verdict}"


def fig_unit_map(panels: dict[str, dict], path, title: str, footer: str | None, max_points: int = 60000) -> Path:
    """Unit-level map: every responsive unit drawn at its cortical position in the hue of its
    preferred direction (unresponsive units light grey), one panel per network.

    ``panels``: label → dict(coordinates (N, 2) mm of all units, responsive (N,) bool,
    preferred_direction (n_responsive,) deg, bias = direction_bias summary or None).
    """
    n = len(panels)
    fig = new_figure(PANEL_IN * n + 1.3, PANEL_IN + 1.1)
    rng = np.random.default_rng(0)
    for k, (label, p) in enumerate(panels.items()):
        ax = fig.add_axes([0.06 + k * (0.80 / n), 0.17, 0.80 / n * 0.86, 0.68])
        xy, resp = np.asarray(p["coordinates"]), np.asarray(p["responsive"], dtype=bool)
        pref = np.asarray(p["preferred_direction"])
        size = float(np.clip(9000.0 / max(len(xy), 1), 0.3, 40.0))
        off = xy[~resp]
        ax.scatter(off[:, 0], off[:, 1], s=size * 0.5, c="0.85", linewidths=0, label="not responsive")
        on = xy[resp]
        idx = np.arange(len(on))
        if len(idx) > max_points:  # draw order random so no channel hides another
            idx = rng.choice(len(on), max_points, replace=False)
        idx = rng.permutation(idx)
        ax.scatter(on[idx, 0], on[idx, 1], s=size, c=direction_rgb(pref[idx]), linewidths=0)
        ax.set_aspect("equal")
        ax.set_xlabel("x (mm)")
        ax.set_ylabel("y (mm)")
        ax.set_title(f"{label}: {int(resp.sum())} responsive units\n{bias_text(p.get('bias'))}", fontsize=7.5)
    hue_wheel(fig, [0.885, 0.6, 0.07, 0.22])
    fig.suptitle(title, fontsize=9)
    return save(fig, path, footer)


def fig_sheet_maps(rows: dict[str, list[dict | None]], path, title: str, footer: str | None,
                   period: float = 360.0) -> Path:
    """Smoothed maps, one row per network, one column per map kind.

    ``rows``: label → list of panels (None = empty cell), each dict(z complex array, valid bool
    array, extent (x0, x1, y0, y1) mm, pinwheels (n, 3) in sheet mm or None, title str, note str
    for an empty cell). Hue = arg z, brightness = |z|.
    """
    nrow = len(rows)
    ncol = max(len(r) for r in rows.values())
    fig = new_figure(PANEL_IN * ncol + 1.3, PANEL_IN * nrow + 0.9)
    h = 0.86 / nrow
    for i, (label, panels) in enumerate(rows.items()):
        for j, p in enumerate(panels):
            ax = fig.add_axes([0.07 + j * (0.80 / ncol), 0.08 + (nrow - 1 - i) * h + 0.06 / nrow, 0.80 / ncol * 0.82,
                               h * 0.74])
            if p is None or "z" not in p:
                ax.axis("off")
                if p and p.get("note"):
                    ax.text(0.5, 0.5, p["note"], ha="center", va="center", fontsize=7.5, wrap=True,
                            transform=ax.transAxes)
                continue
            ax.imshow(map_rgb(p["z"], p["valid"]), origin="lower", extent=p["extent"], interpolation="nearest")
            pw = p.get("pinwheels")
            if pw is not None and len(pw):
                pos = pw[:, 2] > 0
                # filled markers with a contrasting rim: visible on bright and on dark pixels alike
                ax.scatter(pw[pos, 0], pw[pos, 1], s=16, c="white", edgecolors="black", linewidths=0.7, label="+1")
                ax.scatter(pw[~pos, 0], pw[~pos, 1], s=16, c="black", edgecolors="white", linewidths=0.7, label="−1")
                ax.legend(loc="upper right", fontsize=6, title="pinwheel charge", title_fontsize=6, framealpha=0.6)
            ax.set_title(f"{label} — {p['title']}", fontsize=7.5)
            ax.set_xlabel("x (mm)")
            ax.set_ylabel("y (mm)")
    hue_wheel(fig, [0.885, 0.72, 0.07, 0.2 / max(1, nrow) + 0.05], period)
    fig.suptitle(title, fontsize=9)
    return save(fig, path, footer)


def fig_smoothness(curves: dict, path, title: str, footer: str | None) -> Path:
    """``curves``: network label → ephys.smoothness.smoothness_curve dict (real and shuffled positions)."""
    fig = new_figure(4.8, 3.9)
    ax = fig.add_axes([0.14, 0.22, 0.82, 0.68])
    for i, (label, c) in enumerate(curves.items()):
        col = f"C{i}"
        ax.plot(c["bin_centres"], c["mean_delta"], "-o", ms=3, color=col, label=label)
        if "shuffled_delta" in c:
            ax.plot(c["bin_centres"], c["shuffled_delta"], "--", color=col, alpha=0.6, label=f"{label}, positions shuffled")
    ax.axhline(90, color="grey", lw=0.8, ls=":", label="chance (90°)")
    ax.set_xlabel("cortical distance (mm)")
    ax.set_ylabel("mean |Δ preferred direction| (°)")
    ax.set_ylim(0, 180)
    ax.legend(fontsize=6)
    ax.set_title(title, fontsize=9)
    return save(fig, path, footer)

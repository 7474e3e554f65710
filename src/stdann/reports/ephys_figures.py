"""Figures of the in-silico electrophysiology (matplotlib, Agg backend, PNG files).

Every figure states the direction convention in its legend: 0° = motion to the right (increasing
column), 90° = upward on the screen (decreasing row), counter-clockwise.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import hsv_to_rgb  # noqa: E402

CONVENTION = ("Direction convention: 0° = motion to the right (increasing column), 90° = upward on the screen "
              "(decreasing row), counter-clockwise. BatchNorm in eval mode, statistics re-estimated on the same generated clips for every network.")


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.text(0.5, 0.005, CONVENTION, ha="center", va="bottom", fontsize=6.5, wrap=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def map_rgb(z: np.ndarray, period: float = 360.0, valid=None) -> np.ndarray:
    """Hue = angle of z (direction for period 360, axis for 180 via arg z / 2), brightness = |z|
    scaled to its 99th percentile."""
    ang = np.mod(np.angle(z), 2 * np.pi) / (2 * np.pi)  # one turn of z = one turn of hue
    mag = np.abs(z)
    ref = np.percentile(mag[valid] if valid is not None and valid.any() else mag, 99) or 1.0
    v = np.clip(mag / ref, 0, 1)
    rgb = hsv_to_rgb(np.stack([ang, np.ones_like(ang), v], axis=-1))
    if valid is not None:
        rgb[~valid] = 0.5
    return rgb


def _wheel(ax, period):
    th = np.linspace(0, 2 * np.pi, 256)
    r = np.linspace(0.3, 1, 2)
    T, R = np.meshgrid(th, r)
    ax.pcolormesh(T, R, T, cmap="hsv", shading="auto", vmin=0, vmax=2 * np.pi)
    ax.set_yticks([])
    ticks = np.deg2rad([0, 90, 180, 270])
    ax.set_xticks(ticks)
    lab = [f"{int(t * period / 360)}°" for t in (0, 90, 180, 270)]
    ax.set_xticklabels(lab, fontsize=6)
    ax.set_title("axis" if period == 180 else "direction", fontsize=7)


def fig_sheet_maps(panels: dict, path, title: str, period: float = 360.0) -> Path:
    """``panels``: label → dict(map=SheetMap, pinwheels=(n, 3) array in sheet mm (maps.pinwheels_on_sheet) or None,
    text=str). Hue = preferred direction (or axis), brightness = selectivity |z|."""
    n = len(panels)
    fig = plt.figure(figsize=(4.2 * n + 1.2, 4.9))
    for k, (label, p) in enumerate(panels.items()):
        ax = fig.add_axes([0.05 + k * (0.85 / n), 0.16, 0.8 / n, 0.72])  # room for the footer
        m = p["map"]
        ax.imshow(map_rgb(m.z, period, m.valid), origin="lower", extent=m.extent, interpolation="nearest")
        pw = p.get("pinwheels")
        if pw is not None and len(pw):
            x, y = pw[:, 0], pw[:, 1]
            pos = pw[:, 2] > 0
            ax.scatter(x[pos], y[pos], s=14, facecolors="none", edgecolors="white", linewidths=0.8, label="+1")
            ax.scatter(x[~pos], y[~pos], s=14, facecolors="none", edgecolors="black", linewidths=0.8, label="−1")
            ax.legend(loc="upper right", fontsize=6, title="pinwheel charge", title_fontsize=6, framealpha=0.6)
        ax.set_title(f"{label}\n{p.get('text', '')}", fontsize=8)
        ax.set_xlabel("x (mm)")
        ax.set_ylabel("y (mm)")
    wax = fig.add_axes([0.9, 0.6, 0.09, 0.25], projection="polar")
    _wheel(wax, period)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def fig_polar_tuning(curves: dict, directions_deg, path, title: str) -> Path:
    """``curves``: label → (k, D) example tuning curves (a row per unit, each normalised to its
    peak); one polar panel per unit, one row per label."""
    rows = len(curves)
    k = max(len(c) for c in curves.values()) if curves else 1
    fig, axes = plt.subplots(rows, k, figsize=(1.7 * k + 0.5, 2.0 * rows + 0.6), subplot_kw={"projection": "polar"},
                             squeeze=False)
    th = np.deg2rad(np.r_[directions_deg, directions_deg[0]])
    for i, (label, cs) in enumerate(curves.items()):
        for j in range(k):
            ax = axes[i, j]
            if j >= len(cs):
                ax.axis("off")
                continue
            c = np.asarray(cs[j], dtype=float)
            c = c / c.max() if c.max() > 0 else c
            ax.plot(th, np.r_[c, c[0]], lw=1.2)
            ax.fill(th, np.r_[c, c[0]], alpha=0.2)
            ax.set_yticks([])
            ax.set_xticks(np.deg2rad([0, 90, 180, 270]))
            ax.set_xticklabels(["0°", "90°", "180°", "270°"], fontsize=5)
            if j == 0:
                ax.set_ylabel(label, fontsize=7, labelpad=18)
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(bottom=0.1)
    return _save(fig, path)


def fig_histograms(values: dict, reference: dict, path, title: str) -> Path:
    """``values``: metric → {network label → 1-D array}; ``reference``: metric → (low, high) or
    None, shaded as the macaque MT range."""
    n = len(values)
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 3.2), squeeze=False)
    for ax, (metric, by_net) in zip(axes[0], values.items()):
        allv = np.concatenate([np.asarray(v, float)[np.isfinite(v)] for v in by_net.values()] or [np.zeros(1)])
        hi = 360.0 if metric == "bandwidth" else max(1.0, float(np.nanmax(allv)) if allv.size else 1.0)
        bins = np.linspace(0, hi, 26)
        for label, v in by_net.items():
            v = np.asarray(v, float)
            v = v[np.isfinite(v)]
            if v.size:
                ax.hist(v, bins=bins, histtype="step", lw=1.5, density=True,
                        label=f"{label} (median {np.median(v):.2f}, n={v.size})")
        ref = reference.get(metric)
        if ref is not None and ref[0] is not None:
            ax.axvspan(ref[0], ref[1], color="grey", alpha=0.25, label="macaque MT range")
        ax.set_xlabel(metric)
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    return _save(fig, path)


def fig_smoothness(curves: dict, path, title: str) -> Path:
    """``curves``: network label → smoothness_curve dict (mean and shuffled |Δ preference|)."""
    fig, ax = plt.subplots(figsize=(4.8, 3.6))
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
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save(fig, path)

"""Figures of single-unit tuning: example polar tuning curves, metric histograms vs macaque MT."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stdann.reports.figures.common import new_figure, save


def fig_polar_tuning(curves: dict, directions_deg, path, title: str, footer: str | None) -> Path:
    """``curves``: label → (k, D) example tuning curves (one row per unit, each drawn normalised to
    its peak); one polar panel per unit, one row per label."""
    rows = len(curves)
    k = max(len(c) for c in curves.values()) if curves else 1
    fig = new_figure(1.7 * k + 0.5, 2.0 * rows + 0.8)
    axes = fig.subplots(rows, k, subplot_kw={"projection": "polar"}, squeeze=False)
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
    fig.subplots_adjust(bottom=0.16, top=0.82)
    return save(fig, path, footer)


def fig_histograms(values: dict, reference: dict, path, title: str, footer: str | None) -> Path:
    """``values``: metric → {network label → 1-D array}; ``reference``: metric → (low, high) or
    None, shaded as the macaque MT range."""
    n = len(values)
    fig = new_figure(3.3 * n, 3.4)
    axes = fig.subplots(1, n, squeeze=False)
    for ax, (name, by_net) in zip(axes[0], values.items()):
        allv = np.concatenate([np.asarray(v, float)[np.isfinite(v)] for v in by_net.values()] or [np.zeros(1)])
        hi = 360.0 if name == "bandwidth" else max(1.0, float(np.nanmax(allv)) if allv.size else 1.0)
        bins = np.linspace(0, hi, 26)
        for label, v in by_net.items():
            v = np.asarray(v, float)
            v = v[np.isfinite(v)]
            if v.size:
                ax.hist(v, bins=bins, histtype="step", lw=1.5, density=True,
                        label=f"{label} (median {np.median(v):.2f}, n={v.size})")
        ref = reference.get(name)
        if ref is not None and ref[0] is not None:
            ax.axvspan(ref[0], ref[1], color="grey", alpha=0.25, label="macaque MT range")
        ax.set_xlabel(name)
        ax.legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.07, 1, 0.95))
    return save(fig, path, footer)

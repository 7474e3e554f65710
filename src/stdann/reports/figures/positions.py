"""Figures of unit positions on a cortical sheet (object API on the Agg canvas, PNG files).

Coordinates are in mm; x runs along the feature map's columns and y along its rows, so the y axis
is drawn downwards (as the rows of the image).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from stdann.reports.figures.common import new_figure
from stdann.topography.positions import LayerPositions


def unit_channels(positions: LayerPositions) -> np.ndarray:
    """Channel index of every unit (row-major (C, H, W) order)."""
    c, h, w = positions.dims
    return np.repeat(np.arange(c), h * w)


def _subsample(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_points, replace=False))


def plot_positions(
    positions: LayerPositions,
    values: np.ndarray | None = None,
    ax=None,
    title: str | None = None,
    cmap: str | None = None,
    max_points: int = 20000,
    point_size: float | None = None,
    colorbar: bool = True,
    label: str | None = None,
):
    """Scatter the units of one block on its sheet, coloured by channel or by ``values`` (N,).

    Returns the matplotlib Axes. With more than ``max_points`` units a random subset is drawn.
    """
    xy = positions.coordinates
    n = xy.shape[0]
    if values is None:
        vals = unit_channels(positions)
        cmap = cmap or "hsv"
        label = label or "channel"
    else:
        vals = np.asarray(values).reshape(-1)
        if vals.shape[0] != n:
            raise ValueError(f"{positions.name}: {vals.shape[0]} values for {n} units")
        cmap = cmap or "viridis"
    idx = _subsample(n, max_points)
    if ax is None:
        ax = new_figure(5, 5).subplots()
    s = point_size if point_size is not None else float(np.clip(4000.0 / max(len(idx), 1), 0.5, 30.0))
    sc = ax.scatter(xy[idx, 0], xy[idx, 1], c=vals[idx], cmap=cmap, s=s, linewidths=0)
    side = positions.sheet_side
    ax.set_xlim(0, side)
    ax.set_ylim(side, 0)  # rows grow downwards, as in the feature map
    ax.set_aspect("equal")
    ax.set_xlabel("x (mm, along columns)")
    ax.set_ylabel("y (mm, along rows)")
    ax.set_title(title or f"{positions.name}: {n} units, {side:g} mm sheet")
    if colorbar:
        ax.figure.colorbar(sc, ax=ax, fraction=0.046, pad=0.04, label=label)
    return ax


def plot_swap_comparison(
    before: LayerPositions,
    after: LayerPositions,
    path: str | Path,
    values: np.ndarray | None = None,
    history: dict | None = None,
    titles: Sequence[str] = ("before swaps", "after swaps"),
    dpi: int = 120,
) -> Path:
    """Before/after positions of one block side by side (plus the SL_rel history when given),
    saved as a PNG. Colour = channel, or ``values`` (one per unit, e.g. preferred direction)."""
    if before.num_units != after.num_units:
        raise ValueError(f"{before.name}: before has {before.num_units} units, after {after.num_units}")
    ncol = 3 if history and history.get("sl") else 2
    fig = new_figure(5.2 * ncol, 5)
    axes = fig.subplots(1, ncol)
    plot_positions(before, values, ax=axes[0], title=f"{before.name}: {titles[0]}", colorbar=False)
    plot_positions(after, values, ax=axes[1], title=f"{after.name}: {titles[1]}")
    if ncol == 3:
        ax = axes[2]
        ax.plot(history["step"], history["sl"], lw=0.8, alpha=0.6, label="windows of each step")
        if history.get("eval_sl"):
            ax.plot(history["eval_step"], history["eval_sl"], "o-", label="fixed evaluation windows")
        ax.set_xlabel("swap step")
        ax.set_ylabel("mean SL_rel")
        ax.set_title("swap pre-optimisation")
        ax.legend(fontsize=8)
    return _save(fig, path, dpi)


def save_positions_plot(positions: LayerPositions, path: str | Path, values: np.ndarray | None = None, dpi: int = 120) -> Path:
    """One block's positions as a PNG."""
    fig = new_figure(5.5, 5)
    ax = fig.subplots()
    plot_positions(positions, values, ax=ax)
    return _save(fig, path, dpi)


def _save(fig, path: str | Path, dpi: int) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path

"""Shared pieces of every stdann figure: object-API figures on the Agg canvas, the footer, hues.

No pyplot and no ``matplotlib.use``: figures are ``matplotlib.figure.Figure`` objects with an Agg
canvas attached, so importing stdann never changes a notebook's backend.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import hsv_to_rgb
from matplotlib.figure import Figure

from stdann import DIRECTION_CONVENTION


def new_figure(width: float, height: float) -> Figure:
    """A figure with its own Agg canvas (no pyplot state)."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def footer_text(batchnorm: str | None) -> str:
    """The footer every analysis figure carries: the direction convention and how BatchNorm was
    set during the measurement (``batchnorm`` = ephys.recording.bn_mode(...), None = unknown)."""
    bn = batchnorm or "not recorded"
    return f"Direction convention: {DIRECTION_CONVENTION}. BatchNorm during measurement: {bn}."


def save(fig: Figure, path, footer: str | None = None, dpi: int = 110) -> Path:
    """Write ``fig`` as PNG to ``path`` (folders made), with ``footer`` at the bottom."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if footer:
        fig.text(0.5, 0.005, footer, ha="center", va="bottom", fontsize=6.5, wrap=True)
    fig.savefig(path, dpi=dpi)
    return path


def png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def colormap(name: str):
    return matplotlib.colormaps[name]


def direction_rgb(angles_deg, period: float = 360.0) -> np.ndarray:
    """Hue of a direction (period 360) or axis (period 180): one turn of hue per period, 0° red."""
    h = np.mod(np.asarray(angles_deg, dtype=np.float64), period) / period
    return hsv_to_rgb(np.stack([h, np.ones_like(h), np.ones_like(h)], axis=-1))


def map_rgb(z: np.ndarray, valid=None) -> np.ndarray:
    """Hue = arg z (one turn of z = one turn of hue: direction for a direction map, axis for an
    axial map), brightness = |z| scaled to its 99th percentile; invalid pixels grey."""
    ang = np.mod(np.angle(z), 2 * np.pi) / (2 * np.pi)
    mag = np.abs(z)
    ref = np.percentile(mag[valid] if valid is not None and valid.any() else mag, 99) or 1.0
    v = np.clip(mag / ref, 0, 1)
    rgb = hsv_to_rgb(np.stack([ang, np.ones_like(ang), v], axis=-1))
    if valid is not None:
        rgb[~valid] = 0.5
    return rgb


def hue_wheel(fig: Figure, rect, period: float = 360.0) -> None:
    """A polar colour key at ``rect`` (figure fraction): 0° to the right, counter-clockwise."""
    ax = fig.add_axes(rect, projection="polar")
    th = np.linspace(0, 2 * np.pi, 256)
    r = np.linspace(0.3, 1, 2)
    T, R = np.meshgrid(th, r)
    ax.pcolormesh(T, R, T, cmap="hsv", shading="auto", vmin=0, vmax=2 * np.pi)
    ax.set_yticks([])
    ax.set_xticks(np.deg2rad([0, 90, 180, 270]))
    ax.set_xticklabels([f"{int(t * period / 360)}°" for t in (0, 90, 180, 270)], fontsize=6)
    ax.set_title("axis" if period == 180 else "direction", fontsize=7)

"""Figures of studies: metric-versus-α curves with controls, and metric-versus-step curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from stdann import DIRECTION_CONVENTION  # noqa: E402

PANELS = (
    ("dsi_median", "median DSI"),
    ("fraction_direction_selective", "fraction DSI > 1/3"),
    ("cv_direction_median", "median CV (direction)"),
    ("cv_axial_median", "median CV (axial)"),
    ("axial_ratio_median", "median |F2|/|F1|"),
    ("pinwheel_density", "pinwheels per Λ²"),
    ("smoothness", "smoothness index (0 = shuffled)"),
)
FOOT = f"Gratings; BatchNorm re-estimated on the same clips for every network. Directions: {DIRECTION_CONVENTION}."


def _get(entry, block, key, which="trained"):
    v = ((entry.get("metrics") or {}).get(block) or {}).get(which, {}).get(key)
    return np.nan if v is None else float(v)


def _alpha_x(alpha: float) -> float:
    """α on a log axis with 0 placed one decade below the smallest positive α."""
    return np.log10(alpha) if alpha > 0 else np.nan


def sweep_figures(study: dict, folder: Path) -> list[str]:
    conds = study.get("conditions", [])
    blocks = study.get("blocks", [])
    alphas = sorted({c["alpha"] for c in conds if c.get("alpha") is not None and c.get("mode") == "recipe"})
    pos = [a for a in alphas if a > 0]
    zero_x = (np.log10(min(pos)) - 1.0) if pos else 0.0

    def x_of(a):
        return zero_x if a == 0 else _alpha_x(a)

    written = []
    for block in blocks:
        fig, axes = plt.subplots(2, 4, figsize=(16, 7.5))
        for ax, (key, title) in zip(axes.flat, PANELS + (("probe", "motion probe: direction R²"),)):
            for c in conds:
                if key == "probe":
                    yt = (c.get("task") or {}).get("probe_trained", {}).get("direction_r2")
                    yu = (c.get("task") or {}).get("probe_untrained", {}).get("direction_r2")
                    yt = np.nan if yt is None else yt
                    yu = np.nan if yu is None else yu
                else:
                    yt, yu = _get(c, block, key), _get(c, block, key, "untrained")
                if c.get("mode") == "control":  # the untrained network: a grey band across the plot
                    ax.axhline(yt, color="0.5", lw=0.8, ls="--")
                elif c.get("mode") == "recipe" and c.get("alpha") is not None:
                    ax.plot(x_of(c["alpha"]), yt, "o", color="C0", alpha=0.8)
                    ax.plot(x_of(c["alpha"]), yu, "x", color="0.5", alpha=0.8)
                else:  # spatial-only and other ablations, at the right edge
                    ax.plot(np.log10(max(pos or [1])) + 1.0, yt, "s", color="C3", alpha=0.8)
            # mean curve over seeds
            xs, ys = [], []
            for a in alphas:
                vals = []
                for c in conds:
                    if c.get("alpha") == a and c.get("mode") == "recipe":
                        v = (c.get("task") or {}).get("probe_trained", {}).get("direction_r2") if key == "probe" else _get(c, block, key)
                        vals.append(np.nan if v is None else v)
                if vals:
                    xs.append(x_of(a))
                    ys.append(np.nanmean(vals))
            ax.plot(xs, ys, "-", color="C0")
            if key == "smoothness":
                ax.axhline(0, color="0.5", lw=0.8, ls=":")
            if key == "pinwheel_density":
                ax.axhline(np.pi, color="C2", lw=0.8, ls="--", label="π")
            ax.set_title(title)
            ticks = [zero_x] + [np.log10(a) for a in pos] + ([np.log10(max(pos or [1])) + 1.0])
            labels = ["0"] + [f"{a:g}" for a in pos] + ["SL only"]
            ax.set_xticks(ticks)
            ax.set_xticklabels(labels, rotation=45, fontsize=8)
            ax.set_xlabel("α (spatial-loss weight)")
        axes.flat[0].plot([], [], "o", color="C0", label="trained")
        axes.flat[0].plot([], [], "x", color="0.5", label="untrained control (same init)")
        axes.flat[0].plot([], [], "s", color="C3", label="spatial loss only")
        if any(c.get("mode") == "control" for c in conds):
            axes.flat[0].plot([], [], "--", color="0.5", label="untrained row")
        axes.flat[0].legend(fontsize=8)
        written.append(_finish(fig, f"{block}: metrics versus α", folder / f"sweep_{block}.png", bottom=0.02, top=0.97))
    return written


def _finish(fig, title: str, path: Path, bottom: float, top: float) -> str:
    """Title, the measurement footnote, layout, PNG; returns the path."""
    fig.suptitle(title, fontsize=13)
    fig.text(0.01, 0.005, FOOT, fontsize=8)
    fig.tight_layout(rect=(0, bottom, 1, top))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def emergence_figures(study: dict, folder: Path) -> list[str]:
    conds = study.get("conditions", [])
    blocks = study.get("blocks", [])
    names = list(dict.fromkeys(c["name"] for c in conds))
    written = []
    for block in blocks:
        fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
        for i, name in enumerate(names):
            color = f"C{i % 10}"
            for c in [c for c in conds if c["name"] == name]:
                snaps = c.get("snapshots") or []
                steps = [0] + [s["step"] for s in snaps]
                for ax, key in zip(axes[:2], ("dsi_median", "fraction_direction_selective")):
                    u = _get(c, block, key, "untrained")
                    ys = [u] + [np.nan if s["metrics"].get(block, {}).get(key) is None else s["metrics"][block][key]
                                for s in snaps]
                    ax.plot(steps, ys, "-o", color=color, ms=3, label=c["label"] if c["seed"] == 0 else None)
                    ax.axhline(u, color=color, lw=0.6, ls=":")
        for ax, title in zip(axes[:2], ("median DSI", "fraction DSI > 1/3")):
            ax.set_xlabel("training step")
            ax.set_title(f"{title} (dotted: untrained)")
        axes[0].legend(fontsize=8)
        # final trained vs untrained with CIs
        ax = axes[2]
        for j, c in enumerate(conds):
            t = ((c.get("metrics") or {}).get(block) or {}).get("trained", {})
            u = ((c.get("metrics") or {}).get(block) or {}).get("untrained", {})
            for off, d, col in ((-0.15, u, "0.5"), (0.15, t, f"C{names.index(c['name']) % 10}")):
                v, ci = d.get("dsi_median"), d.get("dsi_ci")
                if v is None:
                    continue
                err = None if not ci else [[v - ci[0]], [ci[1] - v]]
                ax.errorbar(j + off, v, yerr=err, fmt="o", color=col)
        ax.set_xticks(range(len(conds)))
        ax.set_xticklabels([f"{c['name']}\nseed {c['seed']}" for c in conds], rotation=60, fontsize=7)
        ax.set_title("final median DSI, 95% CI (grey: untrained)")
        written.append(_finish(fig, f"{block}: does direction selectivity emerge?", folder / f"emergence_{block}.png",
                               bottom=0.03, top=0.95))
    return written

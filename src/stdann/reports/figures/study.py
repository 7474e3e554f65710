"""Figures of studies: metric-versus-α curves with controls, and metric-versus-step curves.

Panels and their titles come from the metric registry (``ephys.registry.STUDY_PANELS``).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from stdann.ephys.registry import DIRECTION_HEADLINE, STUDY_PANELS, get, metric
from stdann.reports.figures.common import footer_text, new_figure, save


def _value(entry: dict, block: str, key: str, which: str = "trained") -> float:
    v = get(((entry.get("metrics") or {}).get(block) or {}).get(which) or {}, key)
    return np.nan if v is None or isinstance(v, str) else float(v)


def _probe(entry: dict, which: str) -> float:
    v = ((entry.get("task") or {}).get(f"probe_{which}") or {}).get("direction_r2")
    return np.nan if v is None else float(v)


def study_footer(study: dict) -> str:
    return "Gratings. " + footer_text(study.get("batchnorm"))


def _reference_band(ax, study: dict, block: str, key: str) -> bool:
    """Shade the range of the untrained reference networks (``--untrained-seeds``) for ``key``, when
    the study measured one; returns whether it did."""
    values = ((((study.get("untrained_reference") or {}).get("blocks") or {}).get(block) or {}).get(key)) or []
    finite = [float(v) for v in values if v is not None and np.isfinite(float(v))]
    if not finite:
        return False
    ax.axhspan(min(finite), max(finite), color="0.88", zorder=0, lw=0)
    return True


def _reference_label(ax, study: dict) -> None:
    n = (study.get("untrained_reference") or {}).get("seeds")
    if n:
        ax.fill_between([], [], color="0.88", label=f"range of {n} untrained networks (seeds 0-{n - 1})")


def sweep_figures(study: dict, folder: Path) -> list[str]:
    """One figure per block: every STUDY_PANELS metric (and the motion probe) against α, trained
    beside the untrained control of each run, spatial-loss-only runs at the right edge."""
    conds = study.get("conditions", [])
    alphas = sorted({c["alpha"] for c in conds if c.get("alpha") is not None and c.get("mode") == "recipe"})
    pos = [a for a in alphas if a > 0]
    zero_x = (np.log10(min(pos)) - 1.0) if pos else 0.0
    right = np.log10(max(pos or [1])) + 1.0

    def x_of(a):
        return zero_x if a == 0 else np.log10(a)

    panels = [(k, metric(k).label) for k in STUDY_PANELS] + [("probe", "motion probe: direction R²")]
    written = []
    for block in study.get("blocks", []):
        ncol = 4
        nrow = int(np.ceil(len(panels) / ncol))
        fig = new_figure(16, 3.75 * nrow)
        axes = fig.subplots(nrow, ncol, squeeze=False).ravel()
        for ax, (key, title) in zip(axes, panels):

            def val(c, which):
                return _probe(c, which) if key == "probe" else _value(c, block, key, which)

            _reference_band(ax, study, block, key)

            for c in conds:
                yt, yu = val(c, "trained"), val(c, "untrained")
                if c.get("mode") == "control":  # the untrained network: a grey line across the plot
                    ax.axhline(yt, color="0.5", lw=0.8, ls="--")
                elif c.get("mode") == "recipe" and c.get("alpha") is not None:
                    ax.plot(x_of(c["alpha"]), yt, "o", color="C0", alpha=0.8)
                    ax.plot(x_of(c["alpha"]), yu, "x", color="0.5", alpha=0.8)
                elif c.get("mode") == "positive_control" and c.get("alpha") is not None:  # told the direction
                    ax.plot(x_of(c["alpha"]), yt, "^", color="C1", alpha=0.8)
                elif c.get("mode") == "lever" and c.get("alpha") is not None:  # MoCo with a regime lever
                    ax.plot(x_of(c["alpha"]), yt, "D", color="C4", alpha=0.8)
                else:  # spatial-only and other ablations, at the right edge
                    ax.plot(right, yt, "s", color="C3", alpha=0.8)
            xs, ys = [], []
            for a in alphas:  # mean curve over seeds
                vals = [val(c, "trained") for c in conds if c.get("alpha") == a and c.get("mode") == "recipe"]
                if vals and np.isfinite(vals).any():
                    xs.append(x_of(a))
                    ys.append(np.nanmean(vals))
            ax.plot(xs, ys, "-", color="C0")
            if key == "direction_bias.resultant_length":  # its chance level beside it, per run
                for c in conds:
                    if c.get("mode") == "recipe" and c.get("alpha") is not None:
                        ax.plot(x_of(c["alpha"]), _value(c, block, "direction_bias.chance_resultant_length"), "_",
                                color="C2", ms=12, label=None)
                ax.plot([], [], "_", color="C2", ms=12, label="R by chance (95th pct.)")
                ax.legend(fontsize=7)
            if key == "smoothness":
                ax.axhline(0, color="0.5", lw=0.8, ls=":")
            if key == "pinwheel_density":
                ax.axhline(np.pi, color="C2", lw=0.8, ls="--", label="π")
            ax.set_title(textwrap.fill(title, 40), fontsize=9)
            ax.set_xticks([zero_x] + [np.log10(a) for a in pos] + [right])
            ax.set_xticklabels(["0"] + [f"{a:g}" for a in pos] + ["SL only"], rotation=45, fontsize=8)
            ax.set_xlabel("α (spatial-loss weight)")
        for ax in axes[len(panels):]:
            ax.axis("off")
        axes[0].plot([], [], "o", color="C0", label="trained")
        axes[0].plot([], [], "x", color="0.5", label="untrained control (same init)")
        axes[0].plot([], [], "s", color="C3", label="spatial loss only")
        if any(c.get("mode") == "positive_control" for c in conds):
            axes[0].plot([], [], "^", color="C1", label="positive control (supervised direction)")
        if any(c.get("mode") == "lever" for c in conds):
            axes[0].plot([], [], "D", color="C4", label="MoCo + " + ", ".join(study.get("protocol", {}).get("lever", [])))
        if any(c.get("mode") == "control" for c in conds):
            axes[0].plot([], [], "--", color="0.5", label="untrained row")
        _reference_label(axes[0], study)
        # above the panels, where it hides no point
        fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncol=4, fontsize=8,
                   bbox_to_anchor=(0.5, 0.955), frameon=False)
        written.append(_finish(fig, f"{block}: metrics versus α", folder / f"sweep_{block}.png", study, top=0.9))
    return written


def _finish(fig, title: str, path: Path, study: dict, top: float) -> str:
    fig.suptitle(title, fontsize=13)
    fig.tight_layout(rect=(0, 0.04, 1, top))
    return str(save(fig, path, study_footer(study), dpi=100))


def emergence_figures(study: dict, folder: Path) -> list[str]:
    """One figure per block: the headline direction measure (``ephys.registry.DIRECTION_HEADLINE``)
    and the median DSI against step per variant (dotted: the untrained network), and the final
    trained vs untrained headline medians with their 95% CIs."""
    conds = study.get("conditions", [])
    names = list(dict.fromkeys(c["name"] for c in conds))
    head, dsi = metric(DIRECTION_HEADLINE), metric("dsi_median")
    written = []
    for block in study.get("blocks", []):
        fig = new_figure(16, 5.0)
        axes = fig.subplots(1, 3)
        for i, name in enumerate(names):
            color = f"C{i % 10}"
            for c in [c for c in conds if c["name"] == name]:
                snaps = c.get("snapshots") or []
                steps = [0] + [s["step"] for s in snaps]
                for ax, m in zip(axes[:2], (head, dsi)):
                    u = _value(c, block, m.key, "untrained")
                    ys = [u] + [np.nan if get((s["metrics"].get(block) or {}), m.key) is None
                                else float(get(s["metrics"][block], m.key)) for s in snaps]
                    ax.plot(steps, ys, "-o", color=color, ms=3, label=c["label"] if c["seed"] == 0 else None)
                    ax.axhline(u, color=color, lw=0.6, ls=":")
        for ax, m in zip(axes[:2], (head, dsi)):
            _reference_band(ax, study, block, m.key)
            ax.set_xlabel("training step")
            ax.set_title(textwrap.fill(f"{m.label} (dotted: untrained)", 48), fontsize=9)
        _reference_label(axes[0], study)
        axes[0].legend(fontsize=8)
        ax = axes[2]
        _reference_band(ax, study, block, head.key)
        for j, c in enumerate(conds):
            m = (c.get("metrics") or {}).get(block) or {}
            for off, d, col in ((-0.15, m.get("untrained") or {}, "0.5"),
                                (0.15, m.get("trained") or {}, f"C{names.index(c['name']) % 10}")):
                v, ci = get(d, head.key), get(d, head.ci_key)
                if v is None:
                    continue
                err = None if not ci or None in ci else [[v - ci[0]], [ci[1] - v]]
                ax.errorbar(j + off, v, yerr=err, fmt="o", color=col)
        ax.set_xticks(range(len(conds)))
        ax.set_xticklabels([f"{c['name']}\nseed {c['seed']}" for c in conds], rotation=60, fontsize=7)
        ax.set_title(textwrap.fill(f"final {head.label}, 95% CI (grey: untrained)", 48), fontsize=9)
        written.append(_finish(fig, f"{block}: does direction selectivity emerge?", folder / f"emergence_{block}.png",
                               study, top=0.88))
    return written


def study_figures(study: dict, folder: Path) -> list[str]:
    """The figures of a sweep or an emergence study into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return sweep_figures(study, folder) if study.get("kind") == "sweep" else emergence_figures(study, folder)

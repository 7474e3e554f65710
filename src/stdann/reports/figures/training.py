"""The training curve of a run, drawn from the rows of ``logs/train.csv``."""

from __future__ import annotations

from stdann.reports.figures.common import colormap, new_figure, png_bytes


def training_curve_png(rows: list[dict[str, float]]) -> bytes | None:
    """InfoNCE (with its chance level and the held-out check), each block's spatial loss and the
    learning rate against step (PNG bytes), or None when the log holds none of them."""
    rows = [r for r in rows if "step" in r]
    if not rows:
        return None
    steps = [r["step"] for r in rows]
    keys = set().union(*rows)
    sl_keys = sorted(k for k in keys if k.startswith("sl_") and k != "sl_total")
    task_key = "loss_task" if "loss_task" in keys else ("loss" if "loss" in keys else None)
    panels = [p for p, ok in (("task", task_key), ("spatial", sl_keys), ("lr", "lr" in keys)) if ok]
    if not panels:
        return None

    def series(k):
        return [r.get(k, float("nan")) for r in rows]

    fig = new_figure(4.2 * len(panels), 3.3)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    viridis = colormap("viridis")
    for ax, p in zip(axes, panels):
        if p == "task":
            ax.plot(steps, series(task_key), lw=1.3, label="InfoNCE (task)" if task_key == "loss_task" else "loss")
            if task_key == "loss_task" and "loss" in keys:
                ax.plot(steps, series("loss"), lw=1, alpha=0.6, label="total loss")
            if "loss_task_chance" in keys:
                ax.plot(steps, series("loss_task_chance"), "--", color="0.4", lw=0.8, label="chance ln(K+1)")
            held = [r for r in rows if "heldout_infonce" in r]
            if held:
                hs = [r["step"] for r in held]
                ax.plot(hs, [r["heldout_infonce"] for r in held], "o-", ms=3, lw=1, color="C3",
                        label="held-out pairs' InfoNCE")
                ax.plot(hs, [r.get("heldout_chance_infonce", float("nan")) for r in held], ":", color="C3", lw=0.8,
                        label="its chance ln n")
            ax.set_ylabel("loss")
            ax.set_title("contrastive task", fontsize=9)
        elif p == "spatial":
            for i, k in enumerate(sl_keys):
                ax.plot(steps, series(k), lw=1, color=viridis(i / max(1, len(sl_keys) - 1)), label=k[3:])
            ax.set_ylabel("SL_rel")
            ax.set_title("spatial loss per block", fontsize=9)
        else:
            ax.plot(steps, series("lr"), lw=1.3, color="k", label="lr")
            ax.set_ylabel("learning rate")
            ax.set_title("learning rate", fontsize=9)
        ax.set_xlabel("step")
        ax.legend(fontsize=6)
    fig.tight_layout()
    return png_bytes(fig)

"""The demo pipeline (``stdann demo``): the whole protocol on built-in generated video.

train (contrastive-only) → positions → swap pre-optimisation → joint training (MoCo + α·SL) →
in-silico electrophysiology of the trained network *and* its untrained control → report.html.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from stdann import distributed
from stdann.config import Config
from stdann.devices import resolve_device
from stdann.ephys.registry import DIRECTION_HEADLINE, HEADLINE, format_value, format_with_ci, get
from stdann.orchestration.run_analysis import analyze_run
from stdann.orchestration.recipe import RecipeResult, topographic_recipe
from stdann.reports.html import write_final_report
from stdann.reports.markdown import range_lines
from stdann.runs.folder import RunFolder
from stdann.runs.layout import METRICS, REPORT


def run_demo(cfg: Config, out: str | Path, *, preset: str | None, overwrite: bool = False,
             stimuli: list[str] | None = None, progress: bool = True) -> int:
    """Run the demo into ``out`` (``overwrite``: first delete what an earlier demo wrote there);
    ``stimuli`` default to gratings, rdk and plaids (gratings only for the smoke preset)."""
    run_folder = RunFolder(out)
    # Under torchrun every rank trains (DDP); the main process alone locks, writes and analyses.
    distributed.init_distributed(resolve_device(cfg.train.device).type, cfg.train.collective_minutes)
    with run_folder.hold() if distributed.is_main() else contextlib.nullcontext():  # the recipe's stages take the same lock
        distributed.on_main(f"preparing {run_folder.root}", lambda: prepare_demo_folder(run_folder, overwrite))
        return demo_stages(cfg, run_folder, preset=preset, stimuli=stimuli, progress=progress)


def prepare_demo_folder(run_folder: RunFolder, overwrite: bool) -> None:
    """(main process) Clear what an earlier demo wrote (``overwrite``) and refuse a user's file in the way."""
    if overwrite:
        run_folder.discard()
    run_folder.ensure_run().check_writable([METRICS, REPORT])


def demo_stages(cfg: Config, run_folder: RunFolder, *, preset: str | None, stimuli: list[str] | None,
                progress: bool) -> int:
    """The demo's work in a prepared, held ``run_folder``: the recipe, then (main process) the analysis."""
    out = run_folder.root
    t0 = time.time()
    if distributed.is_main():
        print(f"[stdann demo] {preset} preset → {out} (width {cfg.model.width}, clips {cfg.data.frames}x{cfg.data.size}², "
              f"{cfg.optim.total_steps()} steps of {cfg.optim.batch_size} clip pairs, α = {cfg.topography.alpha})")
    result = topographic_recipe(cfg, out, progress=progress)
    status = distributed.on_main(f"analysing {out}", lambda: _analyse(cfg, run_folder, result, t0, preset, stimuli,
                                                                     progress))
    return int(status or 0)  # 1 when the report could not be written (the results are complete)


def _analyse(cfg: Config, run_folder: RunFolder, result: RecipeResult, t0: float, preset: str | None,
             stimuli: list[str] | None, progress: bool) -> int:
    """(main process) Electrophysiology of the trained network and its control, metrics, report."""
    out = run_folder.root
    t_train = time.time() - t0
    stimuli = stimuli or (["gratings"] if preset == "smoke" else ["gratings", "rdk", "plaids"])
    metrics = analyze_run(out, blocks=list(cfg.ephys.blocks), stimuli=stimuli, progress=progress)
    metrics = finalize_metrics(out, metrics, cfg, extra={"recipe_seconds": result.seconds, "swap": result.swap.get("blocks")})
    print_summary(metrics)
    report = write_final_report(out)
    print(f"[stdann demo] done in {time.time() - t0:.0f} s (training recipe {t_train:.0f} s). "
          f"Metrics: {out / METRICS}; report: {report or 'not written'}")
    return 0 if report is not None else 1


def finalize_metrics(run_dir: Path, metrics: dict, cfg, extra: dict | None = None) -> dict:
    """Add the run's config and the headline keys (ephys.registry.HEADLINE, dotted keys kept as
    they are) at block level — the trained network's values; the untrained control's stay beside
    them under ``untrained`` — to metrics.json (the caller holds the run folder's lock)."""
    for entry in metrics.get("blocks", {}).values():
        trained = entry.get("trained", {})
        for key in HEADLINE:
            if get(trained, key) is not None:
                entry[key] = get(trained, key)
    metrics["config"] = cfg.to_dict()
    if extra:
        metrics.update(extra)
    RunFolder(run_dir).write_json(METRICS, metrics, allow_nan=False, default=str)
    return metrics


def print_summary(metrics: dict) -> None:
    h = DIRECTION_HEADLINE
    rows = [("block", "vector strength (blank-subtracted) trained", "untrained", "verdict", "DSI trained", "DSI untrained",
             "frac DS trained", "frac DS untrained", "bias R trained (chance)", "pinwheels/Λ²", "smoothness (p)")]
    for block, e in metrics.get("blocks", {}).items():
        t, u = e.get("trained", {}), e.get("untrained", {})
        verdict = get(e, f"trained_vs_untrained.{h}.verdict") or "—"
        rows.append((block, format_with_ci(t, h), format_with_ci(u, h), verdict.replace("_", " "),
                     format_with_ci(t, "dsi_median"), format_with_ci(u, "dsi_median"),
                     format_value("fraction_direction_selective", t.get("fraction_direction_selective")),
                     format_value("fraction_direction_selective", u.get("fraction_direction_selective")),
                     f"{format_value('direction_bias.resultant_length', get(t, 'direction_bias.resultant_length'))} "
                     f"({format_value('direction_bias.chance_resultant_length', get(t, 'direction_bias.chance_resultant_length'))})",
                     format_value("pinwheel_density", t.get("pinwheel_density")),
                     f"{format_value('smoothness', t.get('smoothness'))} "
                     f"({format_value('smoothness_detail.p_value', get(t, 'smoothness_detail.p_value'))})"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)))
    for line in range_lines(metrics):
        print(line)

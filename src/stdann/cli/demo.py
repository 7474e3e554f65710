"""``stdann demo``: the whole pipeline on built-in generated video, in one command.

train (contrastive-only) → positions → swap pre-optimisation → joint training (MoCo + α·SL) →
in-silico electrophysiology of the trained network *and* its untrained control → report.html.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

from stdann.cli.common import add_config_args, config_from_args
from stdann.ephys.registry import HEADLINE, format_value, format_with_ci, get
from stdann.orchestration.analysis import analyze_run
from stdann.reports.html import write_report
from stdann.runs.folder import FIGURES, METRICS, REPORT, TABLES, RunFolder
from stdann.training import distributed as D
from stdann.training.recipe import topographic_recipe
from stdann.training.trainer import resolve_device


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="end-to-end demo: train, optimise positions, analyse, report (built-in video, no downloads)",
        description=(
            "Train the small topographic network on the built-in generated naturalistic video with the paper's "
            "recipe (contrastive pretraining → positions → swap pre-optimisation → joint training), then run "
            "in-silico electrophysiology on it and on its untrained control, and write DIR/report.html and "
            "DIR/metrics.json. `--preset demo` takes about 10 minutes on 2 CPU cores, `--preset smoke` about one."
        ),
    )
    p.add_argument("--out", default=None, metavar="DIR", help="output folder [default: runs/<preset>]")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the files an earlier demo wrote in DIR (never other files) and start again; "
                        "without it, an interrupted demo in DIR continues where it stopped")
    p.add_argument("--stimuli", nargs="+", default=None, choices=["gratings", "rdk", "plaids"],
                   help="stimulus sets for the analysis [default: gratings rdk plaids (gratings only for smoke)]")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    out = Path(args.out or f"runs/{args.preset or 'custom'}")
    run_folder = RunFolder(out)
    # Under torchrun every rank trains (DDP); the main process alone locks, writes and analyses.
    D.init_distributed(resolve_device(cfg.train.device).type)
    with run_folder.hold() if D.is_main() else contextlib.nullcontext():  # the recipe's stages take the same lock
        D.on_main(f"preparing {out}", lambda: _prepare(run_folder, args.overwrite))
        return _demo(args, cfg, run_folder)


def _prepare(run_folder: RunFolder, overwrite: bool) -> None:
    if overwrite:
        run_folder.discard()
    run_folder.ensure_run().check_writable([METRICS, REPORT])


def _demo(args: argparse.Namespace, cfg, run_folder: RunFolder) -> int:
    out = run_folder.root
    progress = not args.no_progress
    t0 = time.time()
    if D.is_main():
        print(f"[stdann demo] {args.preset} preset → {out} (width {cfg.model.width}, clips {cfg.data.frames}x{cfg.data.size}², "
              f"{cfg.optim.total_steps()} steps of {cfg.optim.batch_size} clip pairs, α = {cfg.topography.alpha})")
    result = topographic_recipe(cfg, out, progress=progress)
    D.on_main(f"analysing {out}", lambda: _analyse(args, cfg, run_folder, result, t0))
    return 0


def _analyse(args: argparse.Namespace, cfg, run_folder: RunFolder, result, t0: float) -> None:
    """(main process) Electrophysiology of the trained network and its control, metrics, report."""
    out = run_folder.root
    progress = not args.no_progress
    t_train = time.time() - t0
    stimuli = args.stimuli or (["gratings"] if args.preset == "smoke" else ["gratings", "rdk", "plaids"])
    before = {d: run_folder.files_in(d) for d in (TABLES, FIGURES)}
    run_folder.claim(METRICS)
    metrics = analyze_run(out, blocks=list(cfg.ephys.blocks), stimuli=stimuli, progress=progress)
    for d, files in before.items():  # the analysis wrote these itself, while this process held the folder
        run_folder.record_changed(d, files)
    metrics = finalize_metrics(out, metrics, cfg, extra={"recipe_seconds": result.seconds, "swap": result.swap.get("blocks")})
    run_folder.claim(REPORT)
    report = write_report(out)
    print_summary(metrics)
    print(f"[stdann demo] done in {time.time() - t0:.0f} s (training recipe {t_train:.0f} s). "
          f"Metrics: {out / METRICS}; report: {report}")


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
    rows = [("block", "DSI trained", "DSI untrained", "DSI verdict", "frac DS trained", "frac DS untrained",
             "bias R trained (chance)", "pinwheels/Λ²", "smoothness (p)")]
    for block, e in metrics.get("blocks", {}).items():
        t, u = e.get("trained", {}), e.get("untrained", {})
        verdict = get(e, "trained_vs_untrained.dsi_median.verdict") or "—"
        rows.append((block, format_with_ci(t, "dsi_median"), format_with_ci(u, "dsi_median"), verdict.replace("_", " "),
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

"""``stdann sweep`` and ``stdann emergence``: many trainings, one comparison."""

from __future__ import annotations

import argparse
from pathlib import Path

from stdann import distributed
from stdann.cli.common import add_config_args, config_from_args, count, reference_seeds, untrained_seeds
from stdann.models.r3d import BLOCK_NAMES
from stdann.orchestration.study import EMERGENCE_VARIANTS, emergence_conditions, run_study, sweep_conditions
from stdann.reports.html import write_final_report


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="DIR", help="study folder (one run folder per condition and seed)")
    p.add_argument("--seeds", type=count(1), default=1, help="seeds per condition [default: 1]")
    p.add_argument("--first-seed", type=count(0), default=0, metavar="K",
                   help="run seeds K … K+seeds-1 (add seeds to a study folder, e.g. from a second process) "
                        "[default: 0]")
    p.add_argument("--blocks", nargs="+", choices=BLOCK_NAMES, metavar="BLOCK", help="blocks to analyse [default: ephys.blocks]")
    p.add_argument("--steps", type=count(2), help="training steps per run (shortcut for optim.max_steps)")
    p.add_argument("--no-readout", action="store_true", help="skip the linear motion probe (task performance)")
    p.add_argument("--untrained-seeds", type=untrained_seeds, default=None, metavar="N",
                   help="judge every run against the range of the untrained networks of seeds 0 … N-1 too "
                        "(docs/emergence.md §13) [default: ephys.untrained_seeds; 0 = none, else at least 2]")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="α trade-off sweep with controls (untrained, MoCo only, spatial only, shuffled positions)",
        description=(
            "Train and analyse one topographic network per α (and seed) with the full recipe, then compare: "
            "DSI, CV, axial ratio, pinwheel density, smoothness and a linear motion probe versus α, beside the "
            "untrained network, α = 0 (MoCo only), the spatial loss alone, and shuffled-position map controls. "
            "Resumable: finished conditions are skipped. Writes DIR/study.json, DIR/figures/, DIR/report.html."
        ),
    )
    p.add_argument("--alphas", type=_floats, default=[0, 0.1, 0.25, 0.5, 1.25, 2.5, 25],
                   help="comma-separated α values [default: 0,0.1,0.25,0.5,1.25,2.5,25]")
    p.add_argument("--spatial-only", action="store_true", help="add the ablation with the task loss switched off")
    p.add_argument("--untrained", action="store_true", help="add the untrained network as its own row")
    _common(p)
    add_config_args(p)
    p.set_defaults(func=run_sweep)

    e = sub.add_parser(
        "emergence",
        help="does direction selectivity emerge? metrics vs training step for design variants, beside untrained",
        description=(
            "Train each design variant (positives, batch composition, motion statistics, objective, queue, lr) with "
            "backbone snapshots, measure direction selectivity of every snapshot and of the untrained network the "
            "same way, and plot metric versus step. Every variant starts from the paper's MoCo on the preset's data "
            "(no hard negatives, whatever the preset's own) and changes what its name says. Variants: "
            + "; ".join(f"{k}: {v[0]}" for k, v in EMERGENCE_VARIANTS.items())
        ),
    )
    e.add_argument("--variants", default="paper,reverse", help="comma-separated variant names [default: paper,reverse]")
    e.add_argument("--alpha", type=float, default=None, help="spatial-loss weight for every variant [default: the preset's]")
    e.add_argument("--snapshots", type=count(1), default=4, help="evenly spaced snapshots per run [default: 4]")
    _common(e)
    add_config_args(e)
    e.set_defaults(func=run_emergence)


def _base(args):
    cfg = config_from_args(args)
    if args.steps:
        cfg = cfg.with_overrides([f"optim.max_steps={args.steps}"])
    return cfg.validate()


def _finish(study: dict, out: Path) -> int:
    """The report (main process); the command's exit status: 1 when the report could not be written."""
    if not distributed.is_main():  # under torchrun the main process writes the report
        return 0
    path = write_final_report(out)
    print(f"[stdann] study written: {out / 'study.json'}; report: {path or 'not written'}")
    return 0 if path is not None else 1


def run_sweep(args: argparse.Namespace) -> int:
    cfg = _base(args)
    out = Path(args.out)
    study = run_study("sweep", cfg, sweep_conditions(args.alphas, args.spatial_only), out, seeds=args.seeds,
                      progress=not args.no_progress, blocks=args.blocks, readout=not args.no_readout,
                      untrained_rows=args.untrained, untrained_seeds=reference_seeds(args, cfg),
                      first_seed=args.first_seed)
    return _finish(study, out)


def run_emergence(args: argparse.Namespace) -> int:
    cfg = _base(args)
    every = max(1, cfg.optim.total_steps() // max(1, args.snapshots))
    cfg = cfg.with_overrides([f"train.snapshot_every={every}"])
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    study = run_study("emergence", cfg, emergence_conditions(names, args.alpha), Path(args.out), seeds=args.seeds,
                      progress=not args.no_progress, blocks=args.blocks, readout=not args.no_readout, snapshots=True,
                      untrained_seeds=reference_seeds(args, cfg), first_seed=args.first_seed)
    return _finish(study, Path(args.out))

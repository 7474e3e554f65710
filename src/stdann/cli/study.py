"""``stdann study``: the paper's whole protocol at one scale, several seeds, one resumable command."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from stdann import cpu, distributed
from stdann.cli.common import add_config_args, config_from_args, reference_seeds, untrained_seeds
from stdann.models.motion_classifier import SUPERVISED
from stdann.orchestration.protocol import DEFAULT_ALPHAS, ProtocolPlan, run_protocol
from stdann.orchestration.recipe import step_split
from stdann.orchestration.study_files import STUDY_FILE
from stdann.orchestration.study_files import study_folder
from stdann.reports.html import write_final_report

LOG_NAME = "study.log"


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "study",
        help="the paper's whole protocol (pretrain → swaps → joint training per α, spatial only, untrained), seeds",
        description=(
            "Per seed: contrastive-only pretraining (shared by the α conditions), swap pre-optimisation of the unit "
            "positions, joint training at every α from the pretrained weights, the spatial loss alone, and the "
            "untrained network; each measured with drifting gratings beside the untrained network (BatchNorm "
            "re-estimated on the same clips). Writes DIR/study.json, DIR/figures/ and DIR/report.html. Resumable: "
            "run the same command again after a stop. Its time on 2 CPU cores: docs/results.md."
        ),
        epilog="Examples:\n  stdann study --out runs/study --background      # then: tail -f runs/study/study.log\n"
        "  stdann study --out runs/study                   # continue a stopped study in the foreground\n"
        "  stdann study --preset smoke --out /tmp/s --seeds 1 --alphas 0,0.25\n"
        "  stdann study --out runs/study-pc --positive-control 0,0.25   # + the supervised positive control\n"
        "  stdann study --out runs/study-16 --frames 16 --set moco.motion_negatives=2   # regime levers",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, metavar="DIR", help="study folder (seed<k>/<condition>/ run folders)")
    p.add_argument("--alphas", type=_floats, default=list(DEFAULT_ALPHAS),
                   help="comma-separated α values [default: " + ",".join(f"{a:g}" for a in DEFAULT_ALPHAS) + "]")
    p.add_argument("--seeds", type=int, default=2, help="seeds [default: 2]")
    p.add_argument("--no-spatial-only", action="store_true", help="leave out the spatial-loss-only ablation")
    p.add_argument("--positive-control", nargs="?", const="", default=None, metavar="ALPHAS",
                   help="add the positive control: the same pretrain → swaps → joint sequence with the supervised "
                        "objective (the network is told the generated camera motion's direction, so it must encode "
                        "motion), joint at these comma-separated α [default when given without a value: 0 and the "
                        "configuration's topography.alpha, i.e. without and with the spatial loss]")
    p.add_argument("--positive-objective", default="supervised_direction", choices=SUPERVISED,
                   help="the positive control's train.objective [default: supervised_direction]")
    p.add_argument("--frames", type=int, metavar="N",
                   help="frames per clip (shortcut for --set data.frames=N). 16 gives layer3 (MT) 4 time samples "
                        "instead of 2 and layer4 2 instead of 1, so that the deeper blocks sample motion themselves; "
                        "it doubles the time per step")
    p.add_argument("--lever", action="append", default=[], metavar="KEY=VALUE",
                   help="a MoCo lever compared in the same study (repeatable, e.g. --lever moco.reverse_negatives=true): "
                        "the MoCo sequence again with these overrides (its own pretraining and swaps), joint at "
                        "--lever-alphas; rows and folders lever_*")
    p.add_argument("--lever-alphas", type=_floats, default=None, metavar="ALPHAS",
                   help="α values of the lever's joint runs [default with --lever: 0 and topography.alpha]")
    p.add_argument("--untrained-seeds", type=untrained_seeds, default=None, metavar="N",
                   help="measure the untrained networks of seeds 0 … N-1 (about half a minute each at the study preset) "
                        "and judge every condition against their range as well as against its own seed's untrained "
                        "network: between seeds an untrained network's selectivity moves far more than one network's "
                        "confidence interval (docs/emergence.md §13) [default: ephys.untrained_seeds; 0 = none, "
                        "else at least 2]")
    p.add_argument("--blocks", nargs="+", help="blocks to analyse [default: ephys.blocks]")
    p.add_argument("--no-readout", action="store_true", help="skip the linear motion probe")
    p.add_argument("--background", action="store_true",
                   help=f"run detached from the terminal, output to DIR/{LOG_NAME}; prints the process id and returns")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_config_args(p, default_preset="study")
    p.set_defaults(func=run)


def positive_alphas(text: str | None, cfg) -> tuple[float, ...]:
    """The positive control's α values: none without the option, 0 and ``topography.alpha`` when it
    is given without a value, else the listed values."""
    if text is None:
        return ()
    if not text.strip():
        return tuple(dict.fromkeys((0.0, float(cfg.topography.alpha))))
    try:
        return tuple(_floats(text))
    except argparse.ArgumentTypeError as e:
        raise SystemExit(f"stdann study: --positive-control: {e}") from None


def run(args: argparse.Namespace) -> int:
    if args.frames is not None:
        args.overrides = [*args.overrides, f"data.frames={args.frames}"]
        args.frames = None  # now an override (a --background child gets it once)
    cfg = config_from_args(args)
    plan = ProtocolPlan(alphas=tuple(args.alphas), seeds=args.seeds, spatial_only=not args.no_spatial_only,
                        blocks=list(args.blocks or []), positive_control=positive_alphas(args.positive_control, cfg),
                        positive_objective=args.positive_objective, lever=tuple(args.lever),
                        untrained_seeds=reference_seeds(args, cfg),
                        lever_alphas=(tuple(args.lever_alphas) if args.lever_alphas else
                                      tuple(dict.fromkeys((0.0, float(cfg.topography.alpha)))) if args.lever else ()))
    pre, joint = step_split(cfg)
    out = Path(args.out)
    if args.background:
        return _detach(out, args)
    n_runs = plan.seeds * (len(plan.alphas) + plan.spatial_only + len(plan.positive_control) + bool(plan.positive_control)
                           + len(plan.lever_alphas) + bool(plan.lever))
    pc = (f", positive control ({plan.positive_objective}): pretraining {pre} steps + {len(plan.positive_control)} α x "
          f"{joint} joint steps" if plan.positive_control else "")
    lever = (f", lever {', '.join(plan.lever)}: pretraining {pre} steps + {len(plan.lever_alphas)} α x {joint} joint steps"
             if plan.lever else "")
    print(f"[stdann study] {args.preset or 'custom'} preset → {out}: {plan.seeds} seed(s) x (pretraining {pre} steps, "
          f"{len(plan.alphas)} α x {joint} joint steps" + (f", spatial only {joint} steps" if plan.spatial_only else "")
          + pc + lever + f"): {n_runs} trained networks + the untrained one per seed")
    study = run_protocol(cfg, out, plan, progress=not args.no_progress)
    if not distributed.is_main():  # under torchrun the main process writes the report
        return 0
    report = write_final_report(out)
    print(f"[stdann study] done: {out / STUDY_FILE}; report: {report or 'not written'} "
          f"({len(study['conditions'])} rows)")
    return 0 if report is not None else 1


def background_command(argv: list[str]) -> list[str]:
    """The same ``stdann study`` command line without ``--background`` (and without progress bars)."""
    rest = [a for a in argv if a != "--background"]
    if "--no-progress" not in rest:
        rest.append("--no-progress")
    return [sys.executable, "-m", "stdann", *rest]


def _detach(out: Path, args: argparse.Namespace) -> int:
    argv = ["study", *_argv_of(args)]
    with study_folder(out) as folder:  # refuses a user's study.json / study.log, and a study already running
        log = folder.claim(LOG_NAME)
    with open(log, "ab") as f:
        proc = subprocess.Popen(background_command(argv), stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=os.getcwd(), env=cpu.inherited_env())
    print(f"[stdann study] running in the background as process {proc.pid}; output: {log}\n"
          f"  follow it:  tail -f {log}\n  stop it:    kill {proc.pid}   (run the same command again to continue)\n"
          f"  results:    {out / STUDY_FILE}, {out / 'report.html'} when it ends")
    return 0


def _argv_of(args: argparse.Namespace) -> list[str]:
    """The ``stdann study`` options equivalent to ``args``."""
    argv = ["--out", str(args.out), "--alphas", ",".join(f"{a:g}" for a in args.alphas), "--seeds", str(args.seeds)]
    if args.preset:
        argv += ["--preset", args.preset]
    if args.config:
        argv += ["--config", args.config]
    for o in args.overrides:
        argv += ["--set", o]
    if args.no_spatial_only:
        argv.append("--no-spatial-only")
    if args.positive_control is not None:
        argv += ["--positive-control"] + ([args.positive_control] if args.positive_control.strip() else [])
        argv += ["--positive-objective", args.positive_objective]
    for o in args.lever:
        argv += ["--lever", o]
    if args.lever_alphas:
        argv += ["--lever-alphas", ",".join(f"{a:g}" for a in args.lever_alphas)]
    if args.no_readout:
        argv.append("--no-readout")
    if args.blocks:
        argv += ["--blocks", *args.blocks]
    if args.untrained_seeds is not None:
        argv += ["--untrained-seeds", str(args.untrained_seeds)]
    if args.no_progress:
        argv.append("--no-progress")
    if args.debug:
        argv.append("--debug")
    return argv

"""``stdann demo``: the whole pipeline on built-in generated video, in one command (the pipeline
itself is :mod:`stdann.orchestration.demo`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from stdann.cli.common import add_config_args, config_from_args
from stdann.orchestration.demo import run_demo


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="end-to-end demo: train, optimise positions, analyse, report (built-in video, no downloads)",
        description=(
            "Train the small topographic network on the built-in generated naturalistic video with the paper's "
            "recipe (contrastive pretraining → positions → swap pre-optimisation → joint training), then run "
            "in-silico electrophysiology on it and on its untrained control, and write DIR/report.html and "
            "DIR/metrics.json. `--preset demo` took about 3 minutes on 2 AVX-512 CPU cores (about 8-9 on AVX2), `--preset smoke` under one."
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
    return run_demo(cfg, Path(args.out or f"runs/{args.preset or 'custom'}"), preset=args.preset,
                    overwrite=args.overwrite, stimuli=args.stimuli, progress=not args.no_progress)

"""`stdann analyze RUN_DIR`: in-silico electrophysiology of a trained run, beside its untrained control."""

from __future__ import annotations

import argparse

from stdann.cli.common import untrained_seeds
from stdann.config import section_overrides
from stdann.ephys.registry import DIRECTION_HEADLINE, NETWORKS, format_value
from stdann.ephys.stimuli import STIMULUS_SETS
from stdann.models.r3d import BLOCK_NAMES
from stdann.orchestration.run_analysis import analyze_run
from stdann.reports.markdown import range_lines


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "analyze",
        help="direction tuning, maps and pinwheels of a run (writes metrics.json, tables/, figures/)",
        description=(
            "Record the blocks of RUN_DIR/checkpoints/<which>.pt and of the untrained control "
            "RUN_DIR/checkpoints/init.pt to generated stimuli (BatchNorm in eval mode after re-estimating its statistics on the same generated clips for both), compute direction "
            "tuning (DSI, DI, CV, axial ratio, bandwidth), direction/axial maps, column spacing, pinwheels, "
            "smoothness with controls, and compare with macaque MT. Direction convention: 0 deg = motion to "
            "the right, 90 deg = upward on the screen, counter-clockwise."
        ),
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run folder with checkpoints/ and positions/")
    p.add_argument("--blocks", nargs="+", default=None, metavar="BLOCK", choices=BLOCK_NAMES,
                   help="blocks to analyse, e.g. layer3.1 layer4.1 (default: ephys.blocks of the run's config)")
    p.add_argument("--stimuli", nargs="+", default=["gratings"], choices=sorted(STIMULUS_SETS),
                   help="stimulus sets (gratings are always recorded: tuning curves and maps need them)")
    p.add_argument("--which", default="last", help="checkpoint to analyse: RUN_DIR/checkpoints/<which>.pt (default last)")
    p.add_argument("--out", default=None, help="output folder (default: the run folder itself)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--no-control", action="store_true",
                   help="skip the untrained control (init.pt); not recommended: selectivity needs its baseline")
    p.add_argument("--untrained-seeds", type=untrained_seeds, default=None, metavar="N",
                   help="also measure the untrained networks of seeds 0 … N-1 of the run's configuration and judge "
                        "each block against their range (docs/emergence.md §13; same as --set untrained_seeds=N) "
                        "[default: ephys.untrained_seeds of the run, 0 = none]")
    p.add_argument("--no-figures", action="store_true", help="write metrics.json and tables only")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override an ephys setting, e.g. --set n_directions=8 --set spatial_frequencies=[0.05,0.1]")
    p.set_defaults(func=run)
    return p


def run(args) -> int:
    overrides = section_overrides("ephys", args.overrides)
    if args.untrained_seeds is not None:
        overrides["untrained_seeds"] = args.untrained_seeds
    metrics = analyze_run(
        args.run_dir,
        blocks=args.blocks,
        stimuli=tuple(args.stimuli),
        which=args.which,
        out_dir=args.out,
        progress=not args.no_progress,
        device=args.device,
        control=not args.no_control,
        figures=not args.no_figures,
        ephys_overrides=overrides,
    )
    for b, entry in metrics["blocks"].items():
        print(f"{b}  " + " | ".join(_network_line(label, entry[label]) for label in NETWORKS if label in entry))
    for line in range_lines(metrics):
        print(line)
    for n in metrics.get("notes", []):
        print("note:", n)
    print(f"wrote {args.out or args.run_dir}/metrics.json")
    return 0


def _network_line(label: str, s: dict) -> str:
    bias = s.get("direction_bias") or {}
    return (f"{label}: vector strength (blank-subtracted) {format_value(DIRECTION_HEADLINE, s.get(DIRECTION_HEADLINE))}, "
            f"DSI {format_value('dsi_median', s.get('dsi_median'))}, "
            f"DS fraction {format_value('fraction_direction_selective', s.get('fraction_direction_selective'))}, "
            f"bias R {format_value('direction_bias.resultant_length', bias.get('resultant_length'))} "
            f"(chance {format_value('direction_bias.chance_resultant_length', bias.get('chance_resultant_length'))}), "
            f"pinwheels/Λ² {format_value('pinwheel_density', s.get('pinwheel_density'))}")

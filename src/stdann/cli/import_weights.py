"""``stdann import WEIGHTS --out RUN``: a run folder from an r3d_18 state dict, ready for ``stdann analyze``."""

from __future__ import annotations

import argparse

from stdann.cli.common import add_config_args, config_from_args
from stdann.orchestration.imported import import_network


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import",
        help="bring your own network: a run folder from an r3d_18 state dict (e.g. Kinetics-400 weights)",
        description=(
            "Make a run folder from a 3D ResNet-18 state dict in torchvision's format (stem.0.weight, "
            "layer1.0.conv1.0.weight, ...; fc.* is dropped; module./backbone. prefixes and a 'state_dict' "
            "wrapper are accepted), loaded with weights_only=True. The folder holds the network as its last "
            "checkpoint, an untrained network of the same width as its control (init.pt), retinotopic "
            "positions for the preset's clip size, and config.yaml; then `stdann analyze RUN` measures "
            "direction tuning and maps beside the control. The width is read from the weights; the clip size "
            "and sheets from --preset / --set (Kinetics weights: --preset paper, 16x112²)."
        ),
        epilog="Examples:\n  stdann import r3d_18_kinetics.pth --out runs/kinetics --preset paper\n"
        "  stdann analyze runs/kinetics --blocks layer3.1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("weights", metavar="WEIGHTS", help="a .pt/.pth file holding an r3d_18 state dict")
    p.add_argument("--out", required=True, metavar="RUN", help="the run folder to make (new, or empty)")
    add_config_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rec = import_network(args.weights, args.out, config_from_args(args))
    print(f"imported {rec['source']} (width {rec['width']}, sha256 {rec['sha256'][:12]}…) into {args.out} for "
          f"{rec['frames']}x{rec['size']}² clips; next: stdann analyze {args.out}")
    return 0

"""The ``stdann`` command. Each sub-command lives in its own module exposing ``register(subparsers)``."""

from __future__ import annotations

import argparse
import importlib
import sys

from stdann import DIRECTION_CONVENTION, __version__

# In pipeline order; each module adds one sub-command.
COMMANDS = ("train", "positions", "data", "analyze", "demo", "study", "sweep", "report", "bench")
# Modules that add more than one command (``sweep`` also adds ``emergence``).


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stdann",
        description=(
            "Spatiotemporal topographic deep networks: train a 3D ResNet-18 with units on cortical "
            "sheets (MoCo + spatial loss) and measure direction maps with in-silico electrophysiology. "
            f"Direction convention: {DIRECTION_CONVENTION}."
        ),
        epilog="Run `stdann COMMAND --help` for the options of a command. Quick start: `stdann demo`.",
    )
    parser.add_argument("--version", action="version", version=f"stdann {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"stdann.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"stdann.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("\n[stdann] interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - user-facing errors become one clear line
        from stdann.cli.common import USER_ERRORS

        if isinstance(e, USER_ERRORS) and not getattr(args, "debug", False):
            print(f"stdann {args.command}: error: {e}", file=sys.stderr)
            return int(getattr(e, "exit_code", 2))  # 130 / 143 when a signal stopped the work
        raise

"""Options shared by several sub-commands: integer counts and the configuration (``--preset``,
``--config``, ``--set``: the one override mechanism, :func:`stdann.config.load_config`)."""

from __future__ import annotations

import argparse

from stdann.config import PRESETS, load_config
from stdann.ephys.verdicts import untrained_seeds_problem


def untrained_seeds(text: str) -> int:
    """An argparse type: the number of untrained reference networks, 0 (none) or at least 2."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if untrained_seeds_problem(n):
        raise argparse.ArgumentTypeError(untrained_seeds_problem(n))
    return n


def reference_seeds(args: argparse.Namespace, cfg) -> int:
    """``--untrained-seeds``, else the configuration's ``ephys.untrained_seeds``."""
    return cfg.ephys.untrained_seeds if args.untrained_seeds is None else args.untrained_seeds


def count(minimum: int = 0):
    """An argparse type: an integer >= ``minimum`` (refused at parse time with a one-line usage error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def add_config_args(p: argparse.ArgumentParser, default_preset: str | None = "demo", default_text: str | None = None) -> None:
    """``--preset``, ``--config``, ``--set``, ``--debug``; ``default_text`` describes the default in
    the help when it is not simply ``default_preset``."""
    g = p.add_argument_group("configuration (defaults ← --preset ← --config ← --set)")
    g.add_argument(
        "--preset",
        choices=PRESETS,
        default=default_preset,
        help="scale preset: paper (16x112², width 64, GPU), demo (CPU minutes), smoke (seconds) "
        f"[default: {default_text or default_preset}]",
    )
    g.add_argument("--config", metavar="YAML", help="YAML file of config sections applied over the preset")
    g.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set optim.batch_size=64 --set topography.alpha=0.5 (repeatable)",
    )
    g.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")


def config_from_args(args: argparse.Namespace):
    """The validated configuration that ``--preset``, ``--config`` and ``--set`` describe."""
    return load_config(args.preset, args.config, args.overrides)

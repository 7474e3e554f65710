"""The ``stdann`` command. Each sub-command lives in its own module exposing ``register(subparsers)``.

Errors: a :class:`stdann.errors.StdannError` (every error a user can cause derives from it, and
the storage errors of the operating system are turned into one by
:func:`stdann.errors.as_user_error`) is printed as one line and the command exits with its
``exit_code`` (2); ``--debug`` (or ``STDANN_DEBUG=1``) shows the traceback instead. Anything else
is a bug and keeps its traceback. Ctrl-C exits with 130 and SIGTERM with 143, at any moment —
start-up included — without a traceback. Before torch is imported, :func:`stdann.cpu.configure`
chooses the OpenMP threads for cores that other processes share.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from stdann import DIRECTION_CONVENTION, __version__
from stdann import cpu
from stdann.errors import as_user_error

# In pipeline order; each module adds one sub-command.
COMMANDS = ("train", "positions", "data", "import_weights", "analyze", "demo", "study", "sweep", "report", "bench")  # modules
# Modules that add more than one command (``sweep`` also adds ``emergence``).
COMPUTE = ("train", "positions", "analyze", "demo", "sweep", "emergence", "bench", "study")  # say when threads were lowered


class Terminated(BaseException):
    """SIGTERM outside the training loop (which saves a checkpoint first): exit 143."""


def _terminate(signum, frame):  # noqa: ARG001
    raise Terminated


def _ensure_debug(parser: argparse.ArgumentParser, top: bool = True) -> None:
    """Give every command (the leaves of the parser tree) a ``--debug`` option."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs and not top:
        if "--debug" not in parser._option_string_actions:
            parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
        return
    for action in subs:
        for child in set(action.choices.values()):
            _ensure_debug(child, top=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stdann",
        description=(
            "Spatiotemporal topographic deep networks: train a 3D ResNet-18 with units on cortical "
            "sheets (MoCo + spatial loss) and measure direction maps with in-silico electrophysiology. "
            f"Direction convention: {DIRECTION_CONVENTION}."
        ),
        epilog="Run `stdann COMMAND --help` for the options of a command. Quick start: `stdann demo`. "
        "Errors are one line; `--debug` (or STDANN_DEBUG=1) shows the traceback.",
    )
    parser.add_argument("--version", action="version", version=f"stdann {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:  # imported here, after cpu.configure: the commands import torch
        importlib.import_module(f"stdann.cli.{name}").register(sub)
    _ensure_debug(parser)
    return parser


def _debug(args: argparse.Namespace | None) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("STDANN_DEBUG", "") not in ("", "0")


def main(argv: list[str] | None = None) -> int:
    args = None
    old_term = None
    try:
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            old_term = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread
        old_term = None
    try:
        # before torch is imported (a library caller has imported it already: its threads are its own)
        note = cpu.configure() if "torch" not in sys.modules else None
        parser = build_parser()  # imports torch and every command: Ctrl-C here is an interruption too
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 0
        if note and args.command in COMPUTE:
            print(note, flush=True)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if _debug(args):
            raise
        print("\n[stdann] interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    except Terminated:
        if _debug(args):
            raise
        print("\n[stdann] terminated (SIGTERM)", file=sys.stderr)
        return 143
    except Exception as e:  # noqa: BLE001 - user-facing errors become one clear line
        user = as_user_error(e)
        if user is None or _debug(args):
            raise
        command = getattr(args, "command", None) or "stdann"
        message = " ".join(str(user).split())  # one line, whatever the message held
        print(f"stdann {command}: error: {message}", file=sys.stderr)
        return int(getattr(user, "exit_code", 2))  # 130 / 143 when a signal stopped the work
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)

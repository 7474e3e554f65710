"""``stdann train``: MoCo (or the supervised positive control, ``train.objective``) + spatial loss, into a run folder."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from stdann.cli.common import add_config_args
from stdann.config import load_config
from stdann.distributed import launch_rank
from stdann.runs.folder import RunFolder
from stdann.training.trainer import train
from stdann.runs.training import hold_for_resume, resume_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train the topographic network (MoCo + α·spatial loss)",
        description=(
            "Train a 3D ResNet-18 with MoCo plus the spatial loss into a run folder. Works on CPU, one GPU, "
            "or several with `torchrun --nproc-per-node N -m stdann train ...`. Without data options it "
            "trains on the built-in generated naturalistic video. One process at a time per run folder; "
            "an interrupted run (Ctrl-C, SIGTERM) saves a checkpoint and exits with 130 / 143."
        ),
        epilog="Examples:\n  stdann train --preset demo --out runs/demo\n"
        "  stdann train --preset paper --set data.source=folder --set data.root=/data/UCF101 --out runs/paper\n"
        "  stdann train --out runs/demo --resume\n"
        "  stdann train --preset demo --set train.objective=supervised_direction --out runs/positive  # positive control",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, metavar="DIR", help="run folder (checkpoints, logs, positions, config)")
    once = p.add_mutually_exclusive_group()
    once.add_argument("--resume", nargs="?", const=True, default=False, type=_auto, metavar="auto",
                      help="continue the run in --out from its last checkpoint, with its own configuration (plus --set). "
                           "`--resume auto`: continue it when it has a checkpoint, else start it — one command line "
                           "for every restart (torchrun --max-restarts, a cluster's requeue)")
    once.add_argument("--overwrite", action="store_true",
                      help="discard the files a stdann run wrote in --out (never other files; keeps its positions) "
                           "and start again")
    p.add_argument("--alpha", type=float, help="shortcut for --set topography.alpha=VALUE")
    p.add_argument("--steps", type=int, help="shortcut for --set optim.max_steps=VALUE")
    p.add_argument("--device", help="shortcut for --set train.device=VALUE (auto, cpu, cuda, cuda:1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    add_config_args(p, default_preset=None, default_text="demo; with --resume, the run's own configuration")
    p.set_defaults(func=run)


def _auto(text: str) -> str:
    if text != "auto":
        raise argparse.ArgumentTypeError(f"--resume takes no value or 'auto', got {text!r}")
    return text


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    run_folder = RunFolder(out)
    if args.resume == "auto":  # continue when there is a checkpoint to continue, else start (again)
        args.resume = True if run_folder.has("checkpoints/last.pt") else "auto"
        if args.resume == "auto":
            return _train(args, load_config(args.preset or "demo", args.config, args.overrides), out)
    # On resume, read the run's configuration under its lock (a folder in use says so first); under
    # torchrun only rank 0 locks, as only rank 0 writes.
    with hold_for_resume(run_folder) if args.resume is True and launch_rank() == 0 else contextlib.nullcontext():
        if args.resume and args.preset is None and args.config is None:
            cfg = resume_config(run_folder, args.overrides)  # the run's own configuration, checked
        else:
            cfg = load_config(args.preset or "demo", args.config, args.overrides)
        return _train(args, cfg, out)


def _train(args: argparse.Namespace, cfg, out: Path) -> int:
    extra = []
    if args.alpha is not None:
        extra.append(f"topography.alpha={args.alpha}")
    if args.steps is not None:
        extra.append(f"optim.max_steps={args.steps}")
    if args.device:
        extra.append(f"train.device={args.device}")
    cfg = cfg.with_overrides(extra)
    result = train(cfg, out, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    last = result.last
    msg = f"[stdann] {result.status} at step {result.step}/{result.total_steps} in {result.seconds:.0f} s"
    if last:
        msg += f"; {_task_text(cfg, last)}, spatial loss {last.get('sl_total', 0):.3f}"
    print(msg + f"; run folder {out}")
    return 128 + result.signal if result.signal else 0


def _task_text(cfg, last: dict) -> str:
    """The task at the last log line: InfoNCE, or the supervised objective's loss and held-out top-1
    beside their chance levels."""
    nan = float("nan")
    if cfg.train.objective == "moco":
        return f"InfoNCE {last.get('loss_task', nan):.3f} (chance {last.get('loss_task_chance', nan):.3f})"
    text = (f"{cfg.train.objective} cross-entropy {last.get('loss_task', nan):.3f} "
            f"(chance {last.get('loss_task_chance', nan):.3f})")
    if last.get("heldout_top1") == last.get("heldout_top1"):  # not NaN: the held-out check ran at this line
        text += (f", held-out direction top-1 {last['heldout_top1']:.3f} "
                 f"(chance {last.get('heldout_chance_top1', nan):.3f})")
    return text

"""``stdann bench``: measure the training step (``train``) and the electrophysiology (``ephys``)."""

from __future__ import annotations

import argparse
import json
import sys

from stdann.cli.common import add_config_args, config_from_args, count
from stdann.orchestration.ephys_benchmark import bench_ephys, format_ephys
from stdann.training.benchmark import bench_train, format_train


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark the training step and the electrophysiology",
        description="Measure speed on this machine. `bench train` times the training step phase by phase "
        "beside a plain fp32/eager baseline step on the same network and data; `bench ephys` times "
        "recording and analysing all eight blocks on the full stimulus set.",
    )
    bsub = p.add_subparsers(dest="bench_command", metavar="WHAT")

    t = bsub.add_parser(
        "train",
        help="time the training step (optimised vs plain baseline, phase breakdown, spatial-loss share)",
        description=(
            "Times the trainer's own step function with the trainer's settings (channels_last_3d, bf16 autocast "
            "where enabled, cuDNN autotuning and foreach SGD on CUDA, fused EMA, spatial-loss units kept inside "
            "the forward pass; torch.compile with --set train.compile=true) phase by phase, the same step with "
            "plain settings (fp32, eager, contiguous, non-foreach SGD, EMA and spatial loss as Python loops) and "
            "the trainer's step with alpha=0, on the same network, MoCo, batch and data. Reports "
            "clips/s (clips = both views), medians over the timed steps (warm-up excluded), peak memory, "
            "model FLOPs and, on a GPU, the fraction of its bf16 peak."
        ),
        epilog="Examples:\n  stdann bench train --preset demo\n  stdann bench train --preset paper --device cuda "
        "--steps 20 --warmup 5 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("--steps", type=count(1), default=5, help="timed steps per variant (median reported) [default: 5]")
    t.add_argument("--warmup", type=count(0), default=2, help="untimed warm-up steps per variant [default: 2]")
    t.add_argument("--batch-size", type=count(2), help="clip pairs per step (shortcut for --set optim.batch_size=N); "
                   "moco.queue_size must stay a multiple of 2N")
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N [default: auto]")
    t.add_argument("--threads", type=count(0), help="torch CPU threads (shortcut for --set train.threads=N)")
    t.add_argument("--no-baseline", action="store_true", help="skip the plain baseline step")
    t.add_argument("--no-ablation", action="store_true", help="skip the alpha=0 step (spatial loss's whole cost)")
    t.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak in TFLOP/s (overrides the "
                   "built-in table: H100 SXM 989.4, H100 PCIe 756.5, H100 NVL 835.5, H200 989.4, A100 312)")
    t.add_argument("--json", action="store_true", help="print one JSON object (no table, no progress lines)")
    add_config_args(t)
    t.set_defaults(func=run_train)

    e = bsub.add_parser(
        "ephys",
        help="time recording + analysis of all blocks on the full stimulus set",
        description="Records an untrained r3d_18 (the preset's width and clip size) with gratings, "
        "random-dot kinematograms and plaids, then analyses every block (tuning, maps, pinwheels, "
        "smoothness, bootstrap CIs); reports the time of each part.",
        epilog="Examples:\n  stdann bench ephys --preset demo\n  stdann bench ephys --preset paper --device cuda --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    e.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N [default: auto]")
    e.add_argument("--threads", type=count(0), help="torch CPU threads (shortcut for --set train.threads=N)")
    e.add_argument("--blocks", help="comma-separated blocks [default: all eight, layer1.0 ... layer4.1]")
    e.add_argument("--stimuli", default="gratings,rdk,plaids",
                   help="comma-separated stimulus sets among gratings, rdk, plaids [default: all three]")
    e.add_argument("--json", action="store_true", help="print one JSON object (no table, no progress lines)")
    add_config_args(e)
    e.set_defaults(func=run_ephys)

    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])


def _progress(args):
    if args.json:
        return None
    return lambda msg: print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _cfg(args, extra):
    cfg = config_from_args(args)
    if getattr(args, "threads", None) is not None:
        extra.append(f"train.threads={args.threads}")
    return cfg.with_overrides(extra)


def run_train(args: argparse.Namespace) -> int:
    extra = []
    if args.batch_size is not None:
        extra.append(f"optim.batch_size={args.batch_size}")
    cfg = _cfg(args, extra)
    r = bench_train(cfg, args.device, steps=args.steps, warmup=args.warmup, baseline=not args.no_baseline,
                    ablation=not args.no_ablation, peak_tflops=args.peak_tflops, progress=_progress(args))
    r["preset"] = args.preset
    print(json.dumps(r, allow_nan=False) if args.json else format_train(r))
    return 0


def run_ephys(args: argparse.Namespace) -> int:
    cfg = _cfg(args, [])
    blocks = [b.strip() for b in args.blocks.split(",") if b.strip()] if args.blocks else None
    stimuli = [s.strip() for s in args.stimuli.split(",") if s.strip()]
    r = bench_ephys(cfg, args.device, blocks=blocks, stimuli=stimuli, progress=_progress(args))
    r["preset"] = args.preset
    print(json.dumps(r, allow_nan=False) if args.json else format_ephys(r))
    return 0

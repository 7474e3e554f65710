"""The trainer's own training step under ``torch.profiler``: which operators take the time.

    python benchmarks/profile_step.py --preset paper --device cuda [--steps 2] [--warmup 1] [--out FILE]

Builds the step exactly as ``stdann bench train`` times it (``stdann.training.benchmark.variant_step``:
channels_last_3d, bf16 autocast on CUDA, the batched spatial loss, fused EMA), runs ``--warmup``
untimed steps, then profiles ``--steps`` steps and prints the operators ordered by their time on the
device (CUDA) or the CPU, one table; ``--out`` also writes it to a file. ``--set KEY=VALUE`` as in
every stdann command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from stdann.config import load_config
from stdann.devices import resolve_device
from stdann.devices import select as select_device
from stdann.training.benchmark import variant_step
from stdann.training.step import configure_backends


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="demo")
    p.add_argument("--device", default="auto")
    p.add_argument("--steps", type=int, default=2, help="profiled steps [default: 2]")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first [default: 1]")
    p.add_argument("--rows", type=int, default=25, help="operators shown [default: 25]")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", type=Path, help="also write the table here")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    cfg = load_config(args.preset, overrides=args.set)
    device = select_device(resolve_device(args.device))
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    configure_backends(cfg)
    step = variant_step(cfg, device, "optimized")
    for s in range(args.warmup):
        step(s)
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for s in range(args.warmup, args.warmup + args.steps):
            step(s)
        if cuda:
            torch.cuda.synchronize(device)
    keys = ("self_device_time_total", "self_cuda_time_total") if cuda else ("self_cpu_time_total",)
    averages = prof.key_averages()
    table, key = None, keys[0]
    for key in keys:  # torch >= 2.4 names the device column "device", older ones "cuda"
        try:
            table = averages.table(sort_by=key, row_limit=args.rows)
            break
        except (AttributeError, KeyError, ValueError):
            continue
    if table is None:
        table = averages.table(row_limit=args.rows)
    head = (f"torch.profiler, {args.steps} step(s) of the trainer's step after {args.warmup} warm-up; preset "
            f"{args.preset}, batch {cfg.optim.batch_size} pairs, {cfg.data.frames}x{cfg.data.size}², width "
            f"{cfg.model.width}, device {device}; ordered by {key}")
    print(head)
    print(table)
    if args.out:
        args.out.write_text(head + "\n" + table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

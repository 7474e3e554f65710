"""Shuffle-BN's gather of the key clips: bytes and time per step for the wire dtypes, ratios in one run.

    .venv/bin/python benchmarks/bench_shuffle.py [--ranks 2] [--clips 8] [--frames 16] [--size 112] [--reps 6]

Each of ``--ranks`` gloo processes on this machine holds ``--clips`` key clips (3 × frames × size²,
fp32 as the augmentation leaves them) and runs ``distributed.shuffle_across_ranks`` — gather every
rank's clips, permute them globally, keep its share — with the clips on the wire as
* fp32 (the baseline),
* bf16 (what the trainer sends under bf16 autocast: the key encoder's first convolution rounds its
  input to bf16 anyway, so the keys are the same),
* uint8 (timing only: the clips are normalised, colour-jittered floats by then, so 8 bits would
  change the keys; shown to size what that option would save).
The three run interleaved, repetition by repetition; medians over ``--reps`` after one warm-up.
On one machine gloo moves the bytes through loopback TCP, so the ratios show the bytes' share of
the cost; between GPU nodes the network makes that share larger.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from stdann import distributed

WIRES = {"fp32 (baseline)": torch.float32, "bf16 (trainer under bf16 autocast)": torch.bfloat16,
         "uint8 (timing only)": torch.uint8}


def _worker(rank: int, world: int, port: int, args, q) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    x = torch.rand(args.clips, 3, args.frames, args.size, args.size)
    times = {k: [] for k in WIRES}
    for rep in range(args.reps + 1):
        for name, dtype in WIRES.items():
            g = torch.Generator().manual_seed(rep)
            sent = x if dtype == torch.float32 else (x * 255).to(dtype) if dtype == torch.uint8 else x
            dist.barrier()
            t = time.perf_counter()
            distributed.shuffle_across_ranks(sent, g, wire_dtype=None if dtype in (torch.float32, torch.uint8) else dtype)
            if rep:
                times[name].append(time.perf_counter() - t)
    if rank == 0:
        q.put({k: statistics.median(v) for k, v in times.items()})
    dist.destroy_process_group()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--clips", type=int, default=8, help="key clips per rank (paper: 256 pairs / 8 GPUs = 32)")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--reps", type=int, default=6)
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    q = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_worker, args=(args.ranks, port, args, q), nprocs=args.ranks, join=True)
    med = q.get()
    per_clip = 3 * args.frames * args.size**2
    print(f"{args.ranks} gloo ranks on {os.cpu_count()} cores, {args.clips} clips of 3x{args.frames}x{args.size}^2 per rank; "
          f"load avg {os.getloadavg()[0]:.1f}")
    print(f"{'wire':36s} {'MB received per rank':>21s} {'median s':>9s} {'x fp32 time':>12s}")
    base = med["fp32 (baseline)"]
    for name, dtype in WIRES.items():
        mb = (args.ranks - 1) * args.clips * per_clip * torch.empty((), dtype=dtype).element_size() / 1e6
        print(f"{name:36s} {mb:21.1f} {med[name]:9.3f} {med[name] / base:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

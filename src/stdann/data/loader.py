"""Pair sources for training: ``build_pair_source(cfg, batch_size, device, seed, rank, world_size)``.

Every source has ``batch(step) -> (x1, x2)``: float32 (B, 3, T, H, W) in [0, 1] on ``device``, row
i of x1 and x2 a positive pair, deterministic in (seed, cfg.seed, step, rank); and ``stats()``.

- ``generated``: :class:`GeneratedPairSource`, the built-in video rendered on ``device``.
- ``folder``: a tree of video files decoded with PyAV in background threads.
- ``cache``: windows of a cache built by ``stdann data cache`` (memory-mapped uint8).

For the video sources, a background thread pool prepares the uint8 clips of the next
``prefetch`` steps; a clip that fails to decode is replaced by a deterministic substitute (and
listed in ``stats()['failed']``), a worker that raises or stalls is replaced by decoding the step in
the caller's thread, so training never stops in the middle.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import numpy as np
import torch

from stdann.data import augment as aug
from stdann.data.cache import CacheStore
from stdann.data.config import DataConfig
from stdann import distributed as D
from stdann.data.folder import DataError, FolderIndex, clip_span, decode_frames, index_folder, list_video_files
from stdann.data.generator import VideoGenerator, make_generator
from stdann.devices import resolve_device, upload

_SOURCES = ("generated", "folder", "cache")


def as_device(device) -> torch.device:
    """A ``torch.device`` passed by code is used as given (tests record copies on ``meta``); a name
    from the configuration or the command line is resolved and checked."""
    return device if isinstance(device, torch.device) else resolve_device(device)


class GeneratedPairSource:
    """Positive pairs of the built-in video, rendered on the device."""

    def __init__(self, cfg: DataConfig, batch_size: int, device, seed: int, rank: int = 0, world_size: int = 1):
        self.cfg, self.batch_size, self.seed, self.rank, self.world_size = cfg, int(batch_size), int(seed), int(rank), int(world_size)
        self.device = as_device(device)
        self.generator = VideoGenerator(cfg, self.device)

    def batch(self, step: int, return_motion: bool = False, motion_negatives: int = 0):
        """The step's pairs ``(x1, x2)``, plus the motion-only negatives of each view and the
        ground-truth motion when asked (:meth:`VideoGenerator.pairs`)."""
        g = make_generator(self.cfg.seed, self.seed, int(step), self.rank, 0xBA7C)
        return self.generator.pairs(self.batch_size, seed=g, return_motion=return_motion,
                                    motion_negatives=motion_negatives)

    def stats(self) -> dict:
        return {"source": "generated", "scenes": self.generator.num_scenes, "scene_names": list(self.generator.scene_names),
                "texture_size": self.generator.texture_size, "videos": 0, "skipped": []}

    def close(self) -> None:
        pass


# Folder indexes made by this process, keyed by the folder, the index settings and the files' names,
# sizes and modification times: the held-out pairs and every later stage reuse the training's index
# instead of probing every video again (minutes at UCF101 size on network storage).
_INDEXES: dict[tuple, FolderIndex] = {}


def _index_key(cfg: DataConfig) -> tuple:
    root = Path(cfg.root).expanduser()
    files = list_video_files(root, cfg.extensions) if root.is_dir() else []
    stamp = hashlib.sha256()
    for f in files:
        try:
            st = f.stat()
        except OSError:
            continue
        stamp.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return (str(root.resolve()) if root.exists() else str(root), cfg.split, tuple(cfg.extensions), clip_span(cfg),
            cfg.min_side, cfg.max_side, stamp.hexdigest())


def folder_index(cfg: DataConfig, collective: bool = False) -> FolderIndex:
    """The index of ``cfg.root``, made once per process (see ``_INDEXES``). ``collective``: every rank
    of a torchrun job calls this together (the training's data source) — the main process probes
    the videos and the others receive its index, so the folder is probed once per job, not once per
    rank (a failure on the main process stops every rank with its error)."""
    key = _index_key(cfg)

    def local() -> FolderIndex:
        if key not in _INDEXES:
            _INDEXES[key] = index_folder(cfg.root, cfg)
        return _INDEXES[key]

    if not (collective and D.is_dist()):
        return local()
    _INDEXES[key] = D.broadcast_from_main(D.on_main(f"indexing the videos of {cfg.root}", local))
    return _INDEXES[key]


class _FolderStore:
    """Videos of a folder as items (decoded on demand)."""

    def __init__(self, cfg: DataConfig, collective: bool = False):
        self.index = folder_index(cfg, collective)
        if not self.index.videos:
            reasons = self.index.summary()["skipped_by_reason"]
            raise DataError(f"no usable video under {cfg.root} ({len(self.index.skipped)} files skipped: {reasons})")
        self.videos = self.index.videos
        self.hw = cfg.resize_hw()

    def __len__(self) -> int:
        return len(self.videos)

    def length(self, i: int) -> int:
        return self.videos[i].frames

    def fps(self, i: int) -> float:
        return self.videos[i].fps

    def name(self, i: int) -> str:
        return self.videos[i].rel

    def read(self, i: int, start: int, count: int) -> np.ndarray:
        return decode_frames(self.videos[i], start, count, self.hw)


class VideoPairSource:
    """Pairs from a video folder or a clip cache (see the module docstring)."""

    def __init__(self, cfg: DataConfig, batch_size: int, device, seed: int, rank: int = 0, world_size: int = 1, store=None):
        self.cfg, self.batch_size, self.seed, self.rank, self.world_size = cfg, int(batch_size), int(seed), int(rank), int(world_size)
        self.device = as_device(device)
        if store is None:
            store = CacheStore(cfg.root) if cfg.source == "cache" else _FolderStore(cfg, collective=self.world_size > 1)
        self.store = store
        self.span = clip_span(cfg)
        self.failed: dict[int, str] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=max(1, cfg.workers), thread_name_prefix="stdann-data") if cfg.prefetch > 0 and cfg.workers > 0 else None
        self._futures: dict = {}
        self.timeout = 300.0
        self.worker_errors = 0
        if self.rank == 0:
            report_skipped(self.stats(), cfg.root)

    # -- CPU part: choose and read the frames of one step ---------------------------------
    def _read_row(self, g: torch.Generator, i: int):
        cfg = self.cfg
        stride = max(1, cfg.frame_stride)
        n = len(self.store)
        item = int(torch.randint(0, n, (1,), generator=g))
        u_gap = float(torch.rand(1, generator=g, dtype=torch.float64))
        u_start = float(torch.rand(1, generator=g, dtype=torch.float64))
        swap = bool(torch.rand(1, generator=g) < 0.5)
        for attempt in range(n):
            cand = (item + attempt * 7919) % n if attempt else item
            # no skipping of known-bad items: the substitute must not depend on earlier steps
            L = self.store.length(cand)
            fps = self.store.fps(cand)
            gap = int(round((cfg.pair_min_gap + u_gap * (cfg.pair_max_gap - cfg.pair_min_gap)) * fps))
            gap = max(0, min(gap, L - self.span))
            start = int(u_start * (L - self.span - gap + 1))
            try:
                win = self.store.read(cand, start, self.span + gap)
                if win.shape[0] < self.span + gap:
                    raise RuntimeError(f"only {win.shape[0]} of {self.span + gap} frames could be read")
            except Exception as e:
                with self._lock:
                    self.failed[cand] = f"{type(e).__name__}: {str(e)[:160]}"
                continue
            a = win[0 : self.span : stride]
            b = win[gap : gap + self.span : stride]
            return (b, a) if swap else (a, b)
        raise DataError("every video failed to decode; see stats()['failed']")

    def _cpu_batch(self, step: int) -> np.ndarray:
        g = make_generator(self.cfg.seed, self.seed, int(step), self.rank, 0xF01D)
        rows = [self._read_row(g, i) for i in range(self.batch_size)]
        return np.stack([np.stack(r) for r in rows])  # (B, 2, T, H, W, 3) uint8

    def _get_cpu(self, step: int) -> np.ndarray:
        if self._pool is None:
            return self._cpu_batch(step)
        for s in range(step, step + self.cfg.prefetch + 1):
            if s not in self._futures:
                self._futures[s] = self._pool.submit(self._cpu_batch, s)
        for s in [s for s in self._futures if s < step or s > step + self.cfg.prefetch]:
            self._futures.pop(s).cancel()
        fut = self._futures.pop(step)
        try:
            return fut.result(timeout=self.timeout)
        except KeyboardInterrupt:
            raise
        except (FutureTimeout, BaseException):  # SystemExit in a worker thread included
            self.worker_errors += 1
            return self._cpu_batch(step)  # the worker died, raised or stalled: do it here

    # -- device part ---------------------------------------------------------------------------
    def batch(self, step: int):
        cfg = self.cfg
        raw = torch.from_numpy(self._get_cpu(int(step)))  # (B, 2, T, H, W, 3)
        B, _, T, H, W, _ = raw.shape
        x = upload(raw, self.device).permute(0, 1, 5, 2, 3, 4).reshape(2 * B, 3, T, H, W).float().div_(255.0)
        g = make_generator(cfg.seed, self.seed, int(step), self.rank, 0xA06)
        b1, b2 = aug.sample_pair_crops(g, B, H, W, cfg)
        boxes = torch.stack([b1, b2], 1).view(2 * B, 4)
        f1, f2 = aug.sample_pair_flips(g, B, cfg)
        flips = torch.stack([f1, f2], 1).view(2 * B)
        x = aug.crop_resize(x, boxes, flips, cfg.size, cfg.size)
        M, ow, _ = aug.sample_color(g, 2 * B, cfg)
        x = aug.apply_color(x, M, ow).clamp_(0.0, 1.0).view(B, 2, 3, T, cfg.size, cfg.size)
        return x[:, 0].contiguous(), x[:, 1].contiguous()

    def stats(self) -> dict:
        skipped = list(getattr(self.store, "skipped", None) or getattr(getattr(self.store, "index", None), "skipped", []))
        vids = getattr(self.store, "videos", None)
        return {"source": self.cfg.source, "videos": len(vids) if isinstance(vids, list) else int(vids or 0),
                "items": len(self.store), "skipped": skipped,
                "failed": [{"item": self.store.name(i), "reason": r} for i, r in sorted(self.failed.items())],
                "worker_errors": self.worker_errors}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


_REPORTED: set[tuple[str, int]] = set()  # (root, skipped) already reported by this process


def skipped_line(stats: dict, root: str) -> str | None:
    """One line on the files of a video folder or cache that training will not use, or None."""
    skipped = stats.get("skipped") or []
    if not skipped:
        return None
    reasons: dict[str, int] = {}
    for s in skipped:
        key = str(s.get("reason", "?")).split(" (")[0].split(":")[0]
        reasons[key] = reasons.get(key, 0) + 1
    how = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    return (f"[stdann] data: {stats.get('videos', 0)} usable videos under {root}; {len(skipped)} file(s) skipped ({how}); "
            f"list them with `stdann data index {root} -v`")


def report_skipped(stats: dict, root: str) -> None:
    """Print :func:`skipped_line` once per process and folder (training and its held-out check share it)."""
    line = skipped_line(stats, root)
    key = (str(root), len(stats.get("skipped") or []))
    if line and key not in _REPORTED:
        _REPORTED.add(key)
        print(line, file=sys.stderr, flush=True)


def build_pair_source(cfg: DataConfig, batch_size: int, device, seed: int, rank: int = 0, world_size: int = 1):
    """The training loop's data source (see the module docstring)."""
    if cfg.source not in _SOURCES:
        raise DataError(f"data.source must be one of {_SOURCES}, got {cfg.source!r}")
    if cfg.source == "generated":
        return GeneratedPairSource(cfg, batch_size, device, seed, rank, world_size)
    return VideoPairSource(cfg, batch_size, device, seed, rank, world_size)

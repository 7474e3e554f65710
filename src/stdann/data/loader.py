"""Pair sources for training: ``build_pair_source(cfg, batch_size, device, seed, rank, world_size)``.

Every source has ``batch(step) -> (x1, x2)``: float32 (B, 3, T, H, W) in [0, 1] on ``device``, row
i of x1 and x2 a positive pair, deterministic in (seed, cfg.seed, step, rank); and ``stats()``.

- ``generated``: :class:`GeneratedPairSource`, the built-in video rendered on ``device``.
- ``folder``: a tree of video files, decoded with PyAV or torchcodec (``data.decoder``).
- ``cache``: windows of a cache built by ``stdann data cache`` (memory-mapped uint8; only the frames
  a pair uses are read).

For the video sources, :class:`StepReader` reads a step's clips as one uint8 array on the CPU, in
``data.workers`` background threads or DataLoader worker processes (``data.worker_type``) that
prepare the next ``data.prefetch`` steps; the clips stay uint8 until the device, where crops, flips
and colour are applied. A clip that fails to decode is replaced by a deterministic substitute (and
listed in ``stats()['failed']``); a worker that raises, dies or stalls is replaced by reading the step
in the caller, so training never stops in the middle.
"""

from __future__ import annotations

import hashlib
import sys
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import numpy as np
import torch

from stdann.data import augment as aug
from stdann.data.cache import CacheStore
from stdann.data.config import DataConfig
from stdann import distributed
from stdann.data.folder import (DataError, FolderIndex, clip_span, decode_frames, decode_frames_torchcodec, index_folder,
                                list_video_files, resolve_decoder, torchcodec_problem)
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

    if not (collective and distributed.is_dist()):
        return local()
    _INDEXES[key] = distributed.broadcast_from_main(distributed.on_main(f"indexing the videos of {cfg.root}", local))
    return _INDEXES[key]


class FolderStore:
    """Videos of a folder as items (decoded on demand)."""

    def __init__(self, cfg: DataConfig, collective: bool = False):
        self.index = folder_index(cfg, collective)
        if not self.index.videos:
            reasons = self.index.summary()["skipped_by_reason"]
            raise DataError(f"no usable video under {cfg.root} ({len(self.index.skipped)} files skipped: {reasons})")
        self.videos = self.index.videos
        self.hw = cfg.resize_hw()
        self.decoder = resolve_decoder(cfg.decoder)
        self._decode = decode_frames_torchcodec if self.decoder == "torchcodec" else decode_frames

    def __len__(self) -> int:
        return len(self.videos)

    def length(self, i: int) -> int:
        return self.videos[i].frames

    def fps(self, i: int) -> float:
        return self.videos[i].fps

    def name(self, i: int) -> str:
        return self.videos[i].rel

    def read(self, i: int, start: int, count: int) -> np.ndarray:
        return self._decode(self.videos[i], start, count, self.hw)


def read_frames(store, i: int, frames: np.ndarray) -> np.ndarray:
    """Frames ``frames`` (sorted, unique) of ``store``'s item ``i`` as uint8 (n, H, W, 3): through
    the store's ``read_frames`` when it has one (a cache reads only these frames), else one
    ``read`` of the whole range."""
    if hasattr(store, "read_frames"):
        return store.read_frames(i, frames)
    got = store.read(i, int(frames[0]), int(frames[-1] - frames[0]) + 1)
    return got[frames[frames - frames[0] < got.shape[0]] - frames[0]]


class StepReader:
    """The CPU part of a video source: which clips a step holds, read as one uint8 array.

    Picklable (the store, the configuration and integers), so that worker *processes* can run it;
    ``cpu_batch(step)`` depends on (cfg.seed, seed, step, rank) only, whichever process calls it.
    """

    def __init__(self, cfg: DataConfig, store, batch_size: int, seed: int, rank: int):
        self.cfg, self.store, self.batch_size, self.seed, self.rank = cfg, store, int(batch_size), int(seed), int(rank)
        stride = max(1, cfg.frame_stride)
        self.clip = np.arange(0, clip_span(cfg), stride)  # frame offsets of one clip

    def _row(self, g: torch.Generator, failed: dict) -> tuple[np.ndarray, np.ndarray]:
        cfg, store = self.cfg, self.store
        n, span = len(store), int(self.clip[-1]) + 1
        item = int(torch.randint(0, n, (1,), generator=g))
        u_gap = float(torch.rand(1, generator=g, dtype=torch.float64))
        u_start = float(torch.rand(1, generator=g, dtype=torch.float64))
        swap = bool(torch.rand(1, generator=g) < 0.5)
        for attempt in range(n):
            cand = (item + attempt * 7919) % n if attempt else item
            # no skipping of known-bad items: the substitute must not depend on earlier steps
            L, fps = store.length(cand), store.fps(cand)
            gap = int(round((cfg.pair_min_gap + u_gap * (cfg.pair_max_gap - cfg.pair_min_gap)) * fps))
            gap = max(0, min(gap, L - span))
            start = int(u_start * (L - span - gap + 1))
            used = np.union1d(self.clip, self.clip + gap)  # the two clips' frames, read once
            try:
                got = read_frames(store, cand, start + used)
                if got.shape[0] < used.size:
                    raise RuntimeError(f"only {got.shape[0]} of {used.size} frames could be read")
            except Exception as e:
                failed[cand] = f"{type(e).__name__}: {str(e)[:160]}"
                continue
            a, b = got[np.searchsorted(used, self.clip)], got[np.searchsorted(used, self.clip + gap)]
            return (b, a) if swap else (a, b)
        raise DataError("every video failed to decode; see stats()['failed']")

    def cpu_batch(self, step: int) -> tuple[np.ndarray, dict]:
        """The step's clips as uint8 (B, 2, T, H, W, 3), and {item: reason} of the items that failed
        (each replaced by a deterministic substitute)."""
        g = make_generator(self.cfg.seed, self.seed, int(step), self.rank, 0xF01D)
        failed: dict[int, str] = {}
        out = None
        for i in range(self.batch_size):
            a, b = self._row(g, failed)
            if out is None:
                out = np.empty((self.batch_size, 2) + a.shape, np.uint8)
            out[i, 0], out[i, 1] = a, b
        return out, failed


class _Steps(torch.utils.data.Dataset):
    """Step ``s`` → its uint8 clips (a tensor, pinned by the DataLoader when bound for a GPU)."""

    def __init__(self, reader: StepReader):
        self.reader = reader

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, step: int):
        x, failed = self.reader.cpu_batch(step)
        return torch.from_numpy(x), failed


def _as_is(item):
    return item


class _From(torch.utils.data.Sampler):
    """Steps ``start``, ``start + 1``, … (``start`` set before each new iterator)."""

    def __init__(self):
        self.start = 0

    def __iter__(self):
        s = self.start
        while True:
            yield s
            s += 1

    def __len__(self) -> int:
        return 2**62


class ThreadPrefetcher:
    """The next ``prefetch`` steps read by a thread pool (decoding releases the GIL)."""

    def __init__(self, reader: StepReader, workers: int, prefetch: int, timeout: float, pin: bool):
        self.reader, self.prefetch, self.timeout, self.pin = reader, prefetch, timeout, pin
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="stdann-data")
        self._futures: dict = {}

    def get(self, step: int):
        for s in range(step, step + self.prefetch + 1):
            if s not in self._futures:
                self._futures[s] = self._pool.submit(self._read, s)
        for s in [s for s in self._futures if s < step or s > step + self.prefetch]:
            self._futures.pop(s).cancel()
        return self._futures.pop(step).result(timeout=self.timeout)

    def _read(self, step: int):
        x, failed = self.reader.cpu_batch(step)
        x = torch.from_numpy(x)
        return (x.pin_memory() if self.pin else x), failed

    def restart(self) -> None:
        self._futures.clear()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class ProcessPrefetcher:
    """The next steps read by ``torch.utils.data.DataLoader`` worker processes: persistent workers,
    ``prefetch`` steps in flight in all, pinned memory when the clips go to a GPU. Steps are read in
    order from the last one asked for; asking for another step restarts the order there."""

    def __init__(self, reader: StepReader, workers: int, prefetch: int, timeout: float, pin: bool):
        self.reader, self.workers, self.prefetch, self.timeout, self.pin = reader, max(1, workers), max(1, prefetch), timeout, pin
        self.sampler = _From()
        self.loader = self._make()
        self._it, self._next = None, None

    def _make(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            _Steps(self.reader), batch_size=None, sampler=self.sampler, num_workers=self.workers,
            prefetch_factor=-(-self.prefetch // self.workers), persistent_workers=True,
            pin_memory=self.pin, timeout=self.timeout, collate_fn=_as_is)

    def get(self, step: int):
        if self._it is None or step != self._next:
            self.sampler.start = step
            self._it = iter(self.loader)
        self._next = step + 1
        return next(self._it)

    def restart(self) -> None:
        """After a failure: stop the workers; new ones start with the next step asked for."""
        self.close()
        self.loader = self._make()

    def close(self) -> None:
        it, self._it = self._it, None
        if it is not None and hasattr(it, "_shutdown_workers"):
            it._shutdown_workers()


class VideoPairSource:
    """Pairs from a video folder or a clip cache (see the module docstring)."""

    def __init__(self, cfg: DataConfig, batch_size: int, device, seed: int, rank: int = 0, world_size: int = 1, store=None):
        self.cfg, self.batch_size, self.seed, self.rank, self.world_size = cfg, int(batch_size), int(seed), int(rank), int(world_size)
        self.device = as_device(device)
        if store is None:
            store = CacheStore(cfg.root) if cfg.source == "cache" else FolderStore(cfg, collective=self.world_size > 1)
        self.store = store
        self.reader = StepReader(cfg, store, batch_size, seed, rank)
        self.failed: dict[int, str] = {}
        self.timeout = 300.0
        self.worker_errors = 0
        self._prefetcher = None
        if cfg.prefetch > 0 and cfg.workers > 0:
            if cfg.worker_type == "process":
                self._prefetcher = ProcessPrefetcher(self.reader, cfg.workers, cfg.prefetch, self.timeout,
                                                     pin=self.device.type == "cuda")
            else:
                self._prefetcher = ThreadPrefetcher(self.reader, cfg.workers, cfg.prefetch, self.timeout,
                                                    pin=self.device.type == "cuda")
        if self.rank == 0:
            report_skipped(self.stats(), cfg.root)
            if cfg.source == "folder" and cfg.decoder == "auto" and "decoder" not in _REPORTED_DECODER:
                _REPORTED_DECODER.add("decoder")
                why = "" if self.store.decoder == "torchcodec" else f" (torchcodec: {torchcodec_problem()})"
                print(f"[stdann] data.decoder auto: decoding with {self.store.decoder}{why}", file=sys.stderr, flush=True)

    def _get_cpu(self, step: int) -> torch.Tensor:
        """The step's uint8 clips (B, 2, T, H, W, 3): from the prefetcher, or read here when there is
        none or it failed (a worker that raised, died or stalled: the step is read in this process
        and the prefetcher starts again, so training never stops in the middle)."""
        got = None
        if self._prefetcher is not None:
            try:
                got = self._prefetcher.get(step)
            except KeyboardInterrupt:
                raise
            except (FutureTimeout, BaseException):  # SystemExit in a worker thread included
                self.worker_errors += 1
                self._prefetcher.restart()
        if got is None:
            x, failed = self.reader.cpu_batch(step)
            got = torch.from_numpy(x), failed
        self.failed.update(got[1])
        return got[0]

    # -- device part ---------------------------------------------------------------------------
    def batch(self, step: int):
        cfg = self.cfg
        raw = self._get_cpu(int(step))  # (B, 2, T, H, W, 3) uint8
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
        return {"source": self.cfg.source, "decoder": getattr(self.store, "decoder", None),
                "videos": len(vids) if isinstance(vids, list) else int(vids or 0),
                "items": len(self.store), "skipped": skipped,
                "failed": [{"item": self.store.name(i), "reason": r} for i, r in sorted(self.failed.items())],
                "worker_errors": self.worker_errors}

    def close(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.close()
            self._prefetcher = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


_REPORTED: set[tuple[str, int]] = set()  # (root, skipped) already reported by this process
_REPORTED_DECODER: set[str] = set()


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

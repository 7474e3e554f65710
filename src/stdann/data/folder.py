"""Video folders: indexing with PyAV (with reasons for every skipped file) and clip decoding with
PyAV or, where it is installed and ``data.decoder`` asks for it, torchcodec (PyTorch's decoder,
2–3× the clips per core of PyAV here: docs/benchmarks.md).

Any folder tree of video files is accepted; UCF101's official split lists (``trainlist01.txt`` …,
in the root or in ``ucfTrainTestlist/``) restrict the set when ``DataConfig.split`` names one.
Frames are converted to RGB, turned upright when the file carries rotation metadata, centre-cropped
to 4:3 and resized to ``DataConfig.resize_hw()`` — the same geometry the cache stores.
"""

from __future__ import annotations

import importlib
import os
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from stdann.data.config import DataConfig
from stdann.errors import StdannError


class DataError(StdannError, ValueError):
    """A data source that cannot be used at all (missing or empty folder, bad split list)."""


class DecodeError(RuntimeError):
    """One video could not deliver the requested frames."""


@dataclass
class VideoInfo:
    path: str  # absolute path
    rel: str  # path relative to the root (the video's name in indexes and split lists)
    frames: int  # usable frames (packets of the video stream)
    fps: float
    width: int  # stored (coded) size
    height: int
    rotation: int = 0  # degrees counter-clockwise to display upright (0, ±90, 180)
    label: str = ""  # parent folder name (the class in UCF101's layout)


@dataclass
class FolderIndex:
    root: str
    videos: list[VideoInfo] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # {path, reason}

    def summary(self) -> dict:
        reasons: dict[str, int] = {}
        for s in self.skipped:
            key = s["reason"].split(" (")[0].split(":")[0]
            reasons[key] = reasons.get(key, 0) + 1
        return {"root": self.root, "videos": len(self.videos), "skipped_count": len(self.skipped), "skipped_by_reason": reasons}

    def to_json(self) -> dict:
        d = self.summary()
        d["skipped"] = list(self.skipped)
        d["files"] = [asdict(v) for v in self.videos]
        return d


def clip_span(cfg: DataConfig) -> int:
    """Frames one clip covers in the source video."""
    return (cfg.frames - 1) * max(1, cfg.frame_stride) + 1


def find_split_list(root: Path, split: str) -> Path | None:
    name = split if split.endswith(".txt") else f"{split}.txt"
    for cand in (root / name, root / "ucfTrainTestlist" / name, root.parent / "ucfTrainTestlist" / name):
        if cand.is_file():
            return cand
    return None


def list_video_files(root: str | Path, extensions) -> list[Path]:
    root = Path(root)
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for f in sorted(filenames):
            if Path(f).suffix.lower() in exts:
                out.append(Path(dirpath) / f)
    return out


def probe(path: str | Path, root: str | Path, min_frames: int = 1, min_side: int = 16,
          max_side: int = 4096) -> tuple[VideoInfo | None, str | None]:
    """Cheap validity check of one file: (info, None) when usable, else (None, reason).

    Opens the container, counts the video stream's packets (demuxing only) and decodes the first
    frame. A file whose packet count falls short of its header's frame count is "truncated"; one
    whose frames are larger than ``max_side`` (stated in its header, or found decoded) is skipped
    before a frame of it is decoded into memory.
    """
    import av

    path = Path(path)
    try:
        st = path.stat()
    except OSError as e:
        return None, f"missing or unreadable: {e.strerror or e}"
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
        return None, "not a regular file"
    if st.st_size == 0:
        return None, "zero-length file"
    if not os.access(path, os.R_OK):
        return None, "unreadable: permission denied"
    try:
        container = av.open(str(path), mode="r", timeout=10)
    except PermissionError:
        return None, "unreadable: permission denied"
    except Exception as e:  # av.error.InvalidDataError and friends
        return None, f"not a readable video (not a video, or truncated/corrupt): {type(e).__name__}: {str(e)[:120]}"
    try:
        if not container.streams.video:
            return None, "no video stream"
        stream = container.streams.video[0]
        declared, fps = _declared_frames(container, stream), _frame_rate(stream)
        w, h = int(stream.codec_context.width or 0), int(stream.codec_context.height or 0)
        if max(w, h) > max_side:
            return None, _too_large(w, h, max_side)
        n_packets, first, problem = _packets_and_first_frame(container, stream)
        if problem:
            return None, problem
        rotation = 0
        w, h = first.width, first.height
        if max(w, h) > max_side:
            return None, _too_large(w, h, max_side)
        try:
            rotation = int(round((first.rotation or 0) / 90.0)) * 90
        except Exception:
            rotation = 0
        if declared > 0 and n_packets < 0.9 * declared:
            return None, f"truncated ({n_packets} of {declared} frames present)"
        if min(w, h) < min_side:
            return None, f"frame too small ({w}x{h} < {min_side})"
        if n_packets < min_frames:
            return None, f"shorter than one clip ({n_packets} frames < {min_frames})"
        rel = str(path.relative_to(root)) if str(path).startswith(str(root)) else path.name
        return VideoInfo(str(path), rel, n_packets, fps, w, h, rotation % 360, path.parent.name), None
    finally:
        container.close()


def _declared_frames(container, stream) -> int:
    """The frame count a file states: its stream's, else its duration × frame rate (mkv, webm); 0 if none."""
    declared = int(stream.frames or 0)
    if declared <= 0:
        dur = None
        if stream.duration is not None and stream.time_base:
            dur = float(stream.duration * stream.time_base)
        elif container.duration:
            dur = container.duration / 1_000_000
        rate0 = stream.average_rate or stream.guessed_rate
        if dur and rate0:
            declared = int(dur * float(rate0))
    return declared


def _frame_rate(stream) -> float:
    """The stream's frame rate; 25 where it states none or an impossible one."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else 25.0
    return fps if 0 < fps < 1000 else 25.0


def _packets_and_first_frame(container, stream) -> tuple[int, Any, str | None]:
    """(video packets in the file, its first decoded frame, None) by demuxing it once, or a reason
    the file cannot be used in place of None."""
    n_packets, first = 0, None
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            n_packets += 1
            if first is None:
                for frame in packet.decode():
                    first = frame
                    break
    except Exception as e:
        if n_packets == 0 or first is None:
            return n_packets, None, f"cannot decode: {type(e).__name__}: {str(e)[:120]}"
        return n_packets, first, f"truncated or corrupt: demuxing stopped after {n_packets} packets ({type(e).__name__})"
    if first is None and n_packets > 0:
        # decoders with delay only output after a few packets; retry by decoding properly
        try:
            container.seek(0)
            for frame in container.decode(stream):
                first = frame
                break
        except Exception as e:
            return n_packets, None, f"cannot decode: {type(e).__name__}: {str(e)[:120]}"
    if first is None:
        return n_packets, None, "no decodable frames"
    return n_packets, first, None


def _too_large(w: int, h: int, max_side: int) -> str:
    return f"frame too large ({w}x{h} > data.max_side = {max_side}; raise it to use this file)"


def index_folder(root: str | Path, cfg: DataConfig, progress: bool = False) -> FolderIndex:
    """Every usable video under ``root`` and a reason for every file that is not.

    Raises DataError for a missing root, a root that is not a folder, a folder without video
    files, or a split list that cannot be found.
    """
    root_p = Path(root).expanduser()
    if not str(root).strip():
        raise DataError("no video folder given (data.root is empty)")
    if not root_p.exists():
        raise DataError(f"video folder {root_p} does not exist")
    if not root_p.is_dir():
        raise DataError(f"{root_p} is not a folder")
    root_p = root_p.resolve()
    files = list_video_files(root_p, cfg.extensions)
    index = FolderIndex(str(root_p))
    if cfg.split:
        lst = find_split_list(root_p, cfg.split)
        if lst is None:
            raise DataError(f"split list {cfg.split!r} not found in {root_p} or {root_p / 'ucfTrainTestlist'}")
        wanted = []
        for line in lst.read_text().splitlines():
            if line.strip():
                wanted.append(line.split()[0].strip())
        by_rel = {str(f.relative_to(root_p)).replace(os.sep, "/"): f for f in files}
        by_name = {f.name: f for f in files}
        chosen = []
        for rel in wanted:
            f = by_rel.get(rel) or by_name.get(Path(rel).name)
            if f is None:
                index.skipped.append({"path": rel, "reason": "listed in the split list but missing"})
            else:
                chosen.append(f)
        files = chosen
    if not files and not index.skipped:
        raise DataError(f"no video files ({', '.join(cfg.extensions[:6])} …) under {root_p}")
    it = files
    if progress:
        it = tqdm(files, desc="index", unit="file")
    need = clip_span(cfg)
    for f in it:
        info, reason = probe(f, root_p, min_frames=need, min_side=cfg.min_side, max_side=cfg.max_side)
        if info is None:
            index.skipped.append({"path": str(f), "reason": reason})
        else:
            index.videos.append(info)
    return index


def _target_geometry(w: int, h: int, out_h: int, out_w: int) -> tuple[int, int, int, int]:
    """Resize size (rw, rh) covering (out_w, out_h) with the source aspect, and crop offsets."""
    scale = max(out_h / h, out_w / w)
    rw, rh = max(out_w, int(round(w * scale))), max(out_h, int(round(h * scale)))
    return rw, rh, (rw - out_w) // 2, (rh - out_h) // 2


def _to_rgb(frame, rotation: int, out_h: int, out_w: int) -> np.ndarray:
    w, h = frame.width, frame.height
    k = (rotation // 90) % 4
    dw, dh = (h, w) if k % 2 else (w, h)  # displayed size
    rw, rh, x0, y0 = _target_geometry(dw, dh, out_h, out_w)
    sw, sh = (rh, rw) if k % 2 else (rw, rh)
    img = frame.reformat(width=sw, height=sh, format="rgb24").to_ndarray()
    if k:
        img = np.rot90(img, k)
    return np.ascontiguousarray(img[y0 : y0 + out_h, x0 : x0 + out_w])


def decode_frames(info: VideoInfo, start: int, count: int, out_hw: tuple[int, int]) -> np.ndarray:
    """Frames ``start`` … ``start+count-1`` of a video as uint8 (n, H, W, 3); n < count only when
    the file ends early (then DecodeError if no frame came out)."""
    import av

    out_h, out_w = out_hw
    frames: list[np.ndarray] = []
    try:
        with av.open(info.path, mode="r", timeout=10) as container:
            stream = container.streams.video[0]
            tb = float(stream.time_base) if stream.time_base else None
            t0 = float(stream.start_time * stream.time_base) if (stream.start_time is not None and tb) else 0.0
            use_pts = tb is not None
            if start > 0 and use_pts:
                target = int((t0 + start / info.fps) / tb)
                try:
                    container.seek(target, stream=stream, backward=True, any_frame=False)
                except Exception:
                    container.seek(0)
            counter = 0
            for frame in container.decode(stream):
                if use_pts and frame.pts is not None:
                    idx = int(round((frame.pts * tb - t0) * info.fps))
                else:
                    use_pts = False
                    idx = counter
                counter += 1
                if idx < start:
                    continue
                frames.append(_to_rgb(frame, info.rotation, out_h, out_w))
                if len(frames) >= count:
                    break
    except Exception as e:
        if not frames:
            raise DecodeError(f"{info.path}: {type(e).__name__}: {e}") from e
    if not frames:
        raise DecodeError(f"{info.path}: no frames at {start}")
    return np.stack(frames)


DECODERS = ("pyav", "torchcodec", "auto")
_TORCHCODEC: list = []  # [decoders module, transforms module, reason]: looked up once per process


def torchcodec_problem() -> str | None:
    """None when torchcodec decodes here, else why not (in a few words)."""
    if not _TORCHCODEC:
        try:
            # optional: imported by name so that a missing or broken install is a reason, not a crash
            _TORCHCODEC[:] = [importlib.import_module("torchcodec.decoders"), importlib.import_module("torchcodec.transforms"), None]
        except Exception as e:  # not installed, built for another PyTorch, no FFmpeg libraries
            _TORCHCODEC[:] = [None, None, f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"]
    return _TORCHCODEC[2]


def resolve_decoder(name: str) -> str:
    """``pyav`` or ``torchcodec`` for ``data.decoder`` (``auto``: torchcodec where it loads)."""
    if name not in DECODERS:
        raise DataError(f"data.decoder must be one of {', '.join(DECODERS)}, got {name!r}")
    if name == "pyav" or (name == "auto" and torchcodec_problem()):
        return "pyav"
    problem = torchcodec_problem()
    if problem:
        raise DataError(f"data.decoder = torchcodec, but torchcodec cannot be used here ({problem}); install the "
                        "torchcodec release made for this PyTorch and FFmpeg's shared libraries (4 to 7, e.g. apt install "
                        "ffmpeg), or set data.decoder=pyav (or auto)")
    return "torchcodec"


def decode_frames_torchcodec(info: VideoInfo, start: int, count: int, out_hw: tuple[int, int]) -> np.ndarray:
    """:func:`decode_frames` through torchcodec: the same frames and geometry (resize covering
    ``out_hw`` with the source's aspect, centre crop), resized by FFmpeg's filter rather than PyAV's
    scaler, so pixels differ by a few levels. Rotated videos go through PyAV."""
    if info.rotation:
        return decode_frames(info, start, count, out_hw)
    if torchcodec_problem():
        raise DecodeError(f"torchcodec cannot be used here: {torchcodec_problem()}")
    tcd, tct = _TORCHCODEC[0], _TORCHCODEC[1]
    out_h, out_w = out_hw
    rw, rh, _, _ = _target_geometry(info.width, info.height, out_h, out_w)
    try:
        dec = tcd.VideoDecoder(info.path, dimension_order="NHWC", seek_mode="exact",
                                          transforms=[tct.Resize((rh, rw)), tct.CenterCrop((out_h, out_w))])
        stop = min(start + count, len(dec))
        if stop <= start:
            raise DecodeError(f"{info.path}: no frames at {start}")
        return dec.get_frames_in_range(start, stop).data.numpy()
    except DecodeError:
        raise
    except Exception as e:
        raise DecodeError(f"{info.path}: {type(e).__name__}: {e}") from e

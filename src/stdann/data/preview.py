"""What the model sees: a short animation, a contact sheet and motion statistics of a data source.

Motion statistics of the built-in video come from the generator's own ground truth (directions
in degrees, 0° = rightward, 90° = upward on the screen, counter-clockwise; speeds in px/frame of
the clip the model receives).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stdann.data.config import DataConfig
from stdann.data.loader import build_pair_source


def motion_statistics(direction: np.ndarray, speed: np.ndarray, n_bins: int = 8) -> dict:
    direction = np.asarray(direction, dtype=np.float64) % 360.0
    speed = np.asarray(speed, dtype=np.float64)
    width = 360.0 / n_bins
    bins = np.floor(((direction + width / 2) % 360.0) / width).astype(int)
    counts = np.bincount(bins, minlength=n_bins)
    edges = [0.0, 0.5, 1, 2, 4, 8, 16, np.inf]
    sp_counts, _ = np.histogram(speed, bins=edges)
    z = np.exp(1j * np.deg2rad(direction)).mean() if direction.size else 0
    return {
        "clips": int(direction.size),
        "direction_bins_deg": [float(i * width) for i in range(n_bins)],
        "direction_counts": counts.tolist(),
        "direction_resultant": float(abs(z)),  # 0 = directions balanced, 1 = all the same
        "speed_px_per_frame": {"min": float(speed.min()), "p5": float(np.percentile(speed, 5)), "median": float(np.median(speed)),
                               "p95": float(np.percentile(speed, 95)), "max": float(speed.max())},
        "speed_edges": [str(e) for e in edges],
        "speed_counts": sp_counts.tolist(),
        "convention": "direction 0 deg = rightward, 90 deg = upward on screen, counter-clockwise; speed in px per clip frame",
    }


def _to_uint8_frames(x: torch.Tensor) -> np.ndarray:
    """(B, 3, T, H, W) in [0,1] → (T, B·H-grid …) handled by callers; here (B, T, H, W, 3) uint8."""
    return (x.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 4, 1).cpu().numpy()


def _grid(frames: np.ndarray, cols: int, pad: int = 2) -> np.ndarray:
    """(N, H, W, 3) → one image with the N tiles on a grid."""
    n, h, w, _ = frames.shape
    rows = -(-n // cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        out[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = frames[i]
    return out


def write_animation(path: Path, frames: np.ndarray, fps: float = 8.0) -> Path:
    """Frames (T, H, W, 3) uint8 → MP4 (libx264) or GIF by the suffix."""
    path = Path(path)
    if path.suffix.lower() == ".gif":
        ims = [Image.fromarray(f) for f in frames]
        ims[0].save(path, save_all=True, append_images=ims[1:], duration=int(1000 / fps), loop=0)
        return path
    import av

    h, w = frames.shape[1:3]
    h2, w2 = h + h % 2, w + w % 2
    with av.open(str(path), mode="w") as c:
        s = c.add_stream("libx264", rate=int(round(fps)))
        s.width, s.height, s.pix_fmt = w2, h2, "yuv420p"
        s.options = {"crf": "18"}
        for f in frames:
            if (h2, w2) != (h, w):
                f = np.pad(f, ((0, h2 - h), (0, w2 - w), (0, 0)), mode="edge")
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def preview(cfg: DataConfig, out_dir: str | Path, clips: int = 16, stats_clips: int = 512, device="cpu", seed: int = 0,
            fmt: str = "mp4", scale: int = 2, augmented: bool = True) -> dict:
    """Write ``preview.<fmt>`` (pairs side by side, all clips on a grid), ``contact_sheet.png``
    (rows = clips, columns = frames) and ``motion_stats.json``; return the stats dict."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    src = build_pair_source(dataclasses.replace(cfg, prefetch=0), clips, device, seed)  # one batch: read it here
    result: dict = {"source": cfg.source}
    try:
        if cfg.source == "generated":
            if augmented:
                x1, x2, m1, _ = src.batch(0, return_motion=True)
            else:
                x1, m1 = src.generator.generate(clips, seed=seed, return_motion=True)
                x2 = src.generator.generate(clips, seed=seed + 10_000)
        else:
            x1, x2 = src.batch(0)
            m1 = None
        a, b = _to_uint8_frames(x1), _to_uint8_frames(x2)
        pairs = np.concatenate([a, b], axis=3)  # views side by side: (B, T, H, 2W, 3)
        if scale > 1:
            pairs = pairs.repeat(scale, 2).repeat(scale, 3)
        cols = max(1, int(np.ceil(np.sqrt(clips / 2))))
        anim = np.stack([_grid(pairs[:, t], cols) for t in range(pairs.shape[1])])
        anim_path = write_animation(out / f"preview.{fmt}", anim, fps=8.0)
        sheet = _grid(a.reshape(-1, *a.shape[2:]), cols=a.shape[1])
        if scale > 1:
            sheet = sheet.repeat(scale, 0).repeat(scale, 1)
        Image.fromarray(sheet).save(out / "contact_sheet.png")
        result.update(animation=str(anim_path), contact_sheet=str(out / "contact_sheet.png"))
        if cfg.source == "generated" and stats_clips > 0:
            gen = src.generator
            dirs, speeds = [], []
            done, k = 0, 0
            while done < stats_clips:
                n = min(64, stats_clips - done)
                g = torch.Generator().manual_seed(seed * 7919 + k)
                # the statistics come from the parameters of real pairs as training sees them
                _, _, mm1, mm2 = gen.pairs(n, seed=g, return_motion=True)
                dirs += [mm1["direction"].numpy(), mm2["direction"].numpy()]
                speeds += [mm1["speed"].numpy(), mm2["speed"].numpy()]
                done += n
                k += 1
            stats = motion_statistics(np.concatenate(dirs), np.concatenate(speeds))
            stats["objects_per_clip"] = float(m1["objects"].float().mean())
            result["motion"] = stats
        result["data_stats"] = {k: v for k, v in src.stats().items() if k != "scene_names"}
    finally:
        src.close()
    (out / "motion_stats.json").write_text(json.dumps(result, indent=1, default=str))
    return result

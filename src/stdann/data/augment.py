"""Clip augmentations, constant across the frames of a clip and vectorised over the batch.

Random parameters are drawn on the CPU from a ``torch.Generator`` (so batches are identical on
every device) and applied on the clips' device (copied there without blocking the host,
:func:`stdann.devices.upload`):
- random resized crop (area fraction ``crop_scale_min``–``crop_scale_max``, log-uniform aspect
  ratio) + horizontal flip, as one ``grid_sample`` over all frames;
- colour jitter (brightness, contrast, saturation, hue) and grayscale folded into one 3×3 matrix
  and an offset per clip (values are clipped to [0, 1] once, at the end).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from stdann.devices import upload

GRAY = (0.299, 0.587, 0.114)
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64)
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


def _u(gen: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return torch.rand(n, generator=gen, dtype=torch.float64) * (hi - lo) + lo


def sample_crops(gen: torch.Generator, n: int, height: int, width: int, cfg, centres: torch.Tensor | None = None) -> torch.Tensor:
    """Crop boxes (n, 4) = (centre x, centre y, box width, box height) in source pixels.

    ``centres`` (n, 2), when given, is the wished centre (clamped so the box stays inside).
    """
    area = _u(gen, n, cfg.crop_scale_min, cfg.crop_scale_max) * height * width
    logr = _u(gen, n, math.log(cfg.crop_ratio_min), math.log(cfg.crop_ratio_max))
    ratio = torch.exp(logr)
    bw = torch.sqrt(area * ratio).clamp(1.0, width)
    bh = torch.sqrt(area / ratio).clamp(1.0, height)
    if centres is None:
        cx = bw / 2 + torch.rand(n, generator=gen, dtype=torch.float64) * (width - bw)
        cy = bh / 2 + torch.rand(n, generator=gen, dtype=torch.float64) * (height - bh)
    else:
        cx = torch.minimum(torch.maximum(centres[:, 0].double(), bw / 2), width - bw / 2)
        cy = torch.minimum(torch.maximum(centres[:, 1].double(), bh / 2), height - bh / 2)
    return torch.stack([cx, cy, bw, bh], 1)


def sample_pair_crops(gen: torch.Generator, n: int, height: int, width: int, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops of the two views; with ``crop_max_distance`` > 0 the second centre lies within that
    fraction of the frame's larger side from the first."""
    if not cfg.augment:
        full = torch.tensor([width / 2, height / 2, width, height], dtype=torch.float64).repeat(n, 1)
        return full, full.clone()
    b1 = sample_crops(gen, n, height, width, cfg)
    if cfg.crop_max_distance > 0:
        r = cfg.crop_max_distance * max(height, width) * torch.sqrt(torch.rand(n, generator=gen, dtype=torch.float64))
        a = torch.rand(n, generator=gen, dtype=torch.float64) * 2 * math.pi
        c = b1[:, :2] + torch.stack([r * torch.cos(a), r * torch.sin(a)], 1)
        b2 = sample_crops(gen, n, height, width, cfg, centres=c)
    else:
        b2 = sample_crops(gen, n, height, width, cfg)
    return b1, b2


def sample_flips(gen: torch.Generator, n: int, cfg) -> torch.Tensor:
    if not cfg.augment or cfg.flip_prob <= 0:
        return torch.zeros(n, dtype=torch.bool)
    return torch.rand(n, generator=gen) < cfg.flip_prob


PAIR_FLIP_MODES = ("shared", "independent")


def sample_pair_flips(gen: torch.Generator, n: int, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal flips of the two views of ``n`` positive pairs.

    ``cfg.pair_flip = "shared"``: one decision per pair (both views flipped or neither), so the two
    views keep the same motion; ``"independent"``: one decision per view. A flip reverses the
    horizontal component of the motion, so independent flips make a clip and its mirror image
    (opposite horizontal motion) positives of each other.
    """
    mode = getattr(cfg, "pair_flip", "shared")
    if mode not in PAIR_FLIP_MODES:
        raise ValueError(f"data.pair_flip must be one of {PAIR_FLIP_MODES}, got {mode!r}")
    f1 = sample_flips(gen, n, cfg)
    f2 = f1.clone() if mode == "shared" else sample_flips(gen, n, cfg)
    return f1, f2


def crop_affine(boxes: torch.Tensor, flips: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """(n, 2, 3) affines mapping output pixel (x, y, 1) to source pixel coordinates."""
    n = boxes.shape[0]
    sx = boxes[:, 2] / out_w
    sy = boxes[:, 3] / out_h
    sgn = 1.0 - 2.0 * flips.double()
    A = torch.zeros(n, 2, 3, dtype=torch.float64)
    A[:, 0, 0] = sgn * sx
    A[:, 0, 2] = boxes[:, 0] - sgn * sx * (out_w - 1) / 2
    A[:, 1, 1] = sy
    A[:, 1, 2] = boxes[:, 1] - sy * (out_h - 1) / 2
    return A


def pixel_grid(h: int, w: int, device) -> torch.Tensor:
    """(h·w, 3) homogeneous pixel coordinates (x = column, y = row, 1)."""
    y, x = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32), torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1), torch.ones(h * w, device=device)], 1)


def crop_resize(clips: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """Crop + resize + flip float clips (n, 3, T, H, W) → (n, 3, T, out_h, out_w), one grid_sample."""
    n, c, t, h, w = clips.shape
    A = upload(crop_affine(boxes, flips, out_h, out_w), clips.device, torch.float32)
    # antialias crudely when shrinking a lot: pre-blur is skipped, bilinear is what the paper's pipelines use
    uv = torch.einsum("nij,pj->npi", A, pixel_grid(out_h, out_w, clips.device))  # (n, P, 2) source px
    g = torch.empty_like(uv)
    g[..., 0] = uv[..., 0] * (2.0 / max(w - 1, 1)) - 1.0
    g[..., 1] = uv[..., 1] * (2.0 / max(h - 1, 1)) - 1.0
    out = F.grid_sample(clips.reshape(n, c * t, h, w), g.view(n, out_h, out_w, 2), mode="bilinear", padding_mode="border", align_corners=True)
    return out.view(n, c, t, out_h, out_w)


def sample_color(gen: torch.Generator, n: int, cfg) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-clip colour parameters: matrix (n, 3, 3) (includes c·b), contrast-offset weight (n,)
    = (1 − c)·b, and the grayscale flag (n,)."""
    eye = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
    if not cfg.augment:
        return eye.float(), torch.zeros(n), torch.zeros(n, dtype=torch.bool)
    j = cfg.color_jitter
    on = torch.rand(n, generator=gen) < cfg.color_jitter_prob
    b = torch.where(on, _u(gen, n, max(0.0, 1 - j), 1 + j), torch.ones(n, dtype=torch.float64))
    c = torch.where(on, _u(gen, n, max(0.0, 1 - j), 1 + j), torch.ones(n, dtype=torch.float64))
    s = torch.where(on, _u(gen, n, max(0.0, 1 - j), 1 + j), torch.ones(n, dtype=torch.float64))
    hue = torch.where(on, _u(gen, n, -cfg.hue_jitter, cfg.hue_jitter), torch.zeros(n, dtype=torch.float64))
    gray = torch.rand(n, generator=gen) < cfg.grayscale_prob
    w = torch.tensor(GRAY, dtype=torch.float64)
    ones_w = torch.ones(3, 1, dtype=torch.float64) @ w[None]  # 1·wᵀ
    S = s[:, None, None] * eye + (1 - s)[:, None, None] * ones_w
    ang = hue * 2 * math.pi
    R = torch.zeros(n, 3, 3, dtype=torch.float64)
    R[:, 0, 0] = 1
    R[:, 1, 1] = torch.cos(ang)
    R[:, 1, 2] = -torch.sin(ang)
    R[:, 2, 1] = torch.sin(ang)
    R[:, 2, 2] = torch.cos(ang)
    H = _YIQ2RGB @ R @ _RGB2YIQ
    G = torch.where(gray[:, None, None], ones_w.expand(n, 3, 3), eye)
    M = (c * b)[:, None, None] * (G @ H @ S)
    return M.float(), ((1 - c) * b).float(), gray


def apply_color(x: torch.Tensor, M: torch.Tensor, offset_w: torch.Tensor, gain: torch.Tensor | None = None) -> torch.Tensor:
    """x (n, 3, T, H, W) → clip(M·x + offset_w · mean_gray(x)); ``gain`` (n, T) multiplies first."""
    n = x.shape[0]
    dev = x.device
    if gain is not None:
        x = x * upload(gain, dev, x.dtype)[:, None, :, None, None]
    means = x.mean(dim=(2, 3, 4))  # (n, 3)
    m = means[:, 0] * GRAY[0] + means[:, 1] * GRAY[1] + means[:, 2] * GRAY[2]  # mean gray level
    y = torch.bmm(upload(M, dev, x.dtype), x.reshape(n, 3, -1)).view_as(x)
    y += (upload(offset_w, dev, x.dtype) * m)[:, None, None, None, None]
    return y

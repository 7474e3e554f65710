"""Visual stimuli generated directly as model input clips (B, 3, T, H, W), float in [0, 1].

Mean luminance is 0.5 (grey); every stimulus is achromatic (three equal channels). Pass the clips
through :func:`stdann.models.normalize` before the model (:mod:`stdann.ephys.recording` does).

Direction convention: 0° = motion to the right (increasing column index), 90° = motion upward on
the screen (decreasing row index), counter-clockwise. A velocity of speed s in direction θ moves
an image point by (+s·cos θ columns, −s·sin θ rows) per frame.

Units: spatial frequency ``sf`` in cycles per pixel, temporal frequency ``tf`` in cycles per frame
(a grating drifts at tf / sf pixels per frame), phases in degrees, sizes in pixels unless named
otherwise. ``aperture`` is the diameter of a circular window in image widths (0 = full field; the
surround is mean grey).

Random-dot kinematograms draw one dot field per seed (a repeat), shared by every direction and
coherence, centred on the clip's middle frame and shifted by whole frames (``offset``), so that the
clip of θ + 180° is a time reversal of a clip of θ (``ephys.sampling``). ``blank_clips`` is the
mean-grey screen each unit's blank response is measured on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F


def _vec(v, n: int, device, dtype) -> torch.Tensor:
    t = torch.as_tensor(np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy(), device=device, dtype=dtype)
    return t.view(n, 1, 1, 1)


def _batch_size(*params) -> int:
    sizes = {np.size(p) for p in params if np.ndim(p) > 0}
    if len(sizes - {1}) > 1:
        raise ValueError(f"stimulus parameter arrays have different lengths: {sorted(sizes)}")
    return max(sizes) if sizes else 1


def _screen(frames: int, height: int, width: int, device, dtype):
    """(t, x, y_up) grids: x = column − centre, y_up = centre − row (upward positive)."""
    t = torch.arange(frames, device=device, dtype=dtype).view(1, frames, 1, 1)
    x = (torch.arange(width, device=device, dtype=dtype) - (width - 1) / 2).view(1, 1, 1, width)
    y = ((height - 1) / 2 - torch.arange(height, device=device, dtype=dtype)).view(1, 1, height, 1)
    return t, x, y


def _sine(direction_deg, sf, tf, phase_deg, n, t, x, y, device, dtype):
    th = _vec(np.deg2rad(direction_deg), n, device, dtype)
    u = x * torch.cos(th) + y * torch.sin(th)  # position along the motion direction
    arg = 2 * np.pi * (_vec(sf, n, device, dtype) * u - _vec(tf, n, device, dtype) * t)
    return torch.sin(arg + _vec(np.deg2rad(phase_deg), n, device, dtype))


def _finish(lum: torch.Tensor, aperture, n, x, y, device, dtype) -> torch.Tensor:
    ap = np.broadcast_to(np.asarray(aperture, dtype=np.float64), (n,))
    if np.any(ap > 0):
        width = x.shape[-1]
        r = torch.as_tensor(np.where(ap > 0, ap * width / 2, np.inf), device=device, dtype=dtype).view(n, 1, 1, 1)
        inside = (x**2 + y**2) <= r**2
        lum = torch.where(inside, lum, torch.full_like(lum, 0.5))
    return lum.clamp_(0.0, 1.0).unsqueeze(1).expand(-1, 3, -1, -1, -1)


def drifting_gratings(direction_deg, sf, tf, phase_deg=0.0, contrast=1.0, aperture=0.0, *, frames: int,
                      height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Sinusoidal gratings L = 0.5 + 0.5·c·sin(2π(sf·u − tf·t) + φ), u = position along the
    direction of motion (pixels from the image centre), t = frame index. Parameters are scalars
    or 1-D arrays of one length B (one stimulus each). Returns (B, 3, T, H, W)."""
    n = _batch_size(direction_deg, sf, tf, phase_deg, contrast, aperture)
    t, x, y = _screen(frames, height, width, device, dtype)
    s = _sine(direction_deg, sf, tf, phase_deg, n, t, x, y, device, dtype)
    lum = 0.5 + 0.5 * _vec(contrast, n, device, dtype) * s
    return _finish(lum, aperture, n, x, y, device, dtype)


def plaids(direction_deg, sf, tf, angle_deg=120.0, phase_deg=0.0, contrast=1.0, aperture=0.0, *, frames: int,
           height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Sum of two gratings drifting in directions θ ± angle/2, each of contrast c/2, so the plaid
    (pattern) moves in direction θ. Component phases are φ and −φ."""
    n = _batch_size(direction_deg, sf, tf, angle_deg, phase_deg, contrast, aperture)
    t, x, y = _screen(frames, height, width, device, dtype)
    d = np.asarray(direction_deg, dtype=np.float64)
    half = np.asarray(angle_deg, dtype=np.float64) / 2
    p = np.asarray(phase_deg, dtype=np.float64)
    s = _sine(d - half, sf, tf, p, n, t, x, y, device, dtype) + _sine(d + half, sf, tf, -p, n, t, x, y, device, dtype)
    lum = 0.5 + 0.25 * _vec(contrast, n, device, dtype) * s
    return _finish(lum, aperture, n, x, y, device, dtype)


# -- random-dot kinematograms ---------------------------------------------------------------------------
def rdk_dots(direction_deg: float, coherence: float, speed: float, n_dots: int, lifetime: int, *, frames: int,
             height: int, width: int, seed: int = 0, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dot trajectories of one kinematogram.

    The dot field (start positions and each noise dot's direction relative to the signal) depends
    on ``seed`` only, so every direction and coherence drawn with one seed moves the same field.
    Exactly round(coherence · n_dots) dots are signal dots moving ``speed`` px/frame in
    ``direction_deg``; every other dot moves at the same speed in its own direction, the signal
    direction plus an angle drawn once per dot ("random direction" noise). A dot is at its start
    position at time ``(frames − 1) / 2 − offset``: the trajectory is centred on the clip's middle
    frame and shifted by ``offset`` frames, so with ``lifetime`` 0 the clip of θ + 180° shifted by
    s is the time reversal of the clip of θ shifted by −s (same seed). With ``lifetime`` > 0 a dot
    is replotted
    at a random place after that many frames (ages staggered); positions wrap round the image.
    Returns ``pos`` (T, N, 2) as (column, row) in pixels, ``signal`` (N,) bool, ``replotted``
    (T, N) bool (True where the dot jumped to a new place at that frame).
    """
    if not 0.0 <= coherence <= 1.0:
        raise ValueError(f"coherence must be in [0, 1], got {coherence}")
    rng = np.random.default_rng(seed)
    n_sig = int(round(coherence * n_dots))
    signal = np.arange(n_dots) < n_sig
    th = np.deg2rad(direction_deg) + np.where(signal, 0.0, rng.uniform(0, 2 * np.pi, n_dots))
    vel = speed * np.stack([np.cos(th), -np.sin(th)], axis=1)  # (col, row) per frame
    size = np.array([width, height], dtype=np.float64)
    pos = np.empty((frames, n_dots, 2))
    replot = np.zeros((frames, n_dots), dtype=bool)
    start = rng.random((n_dots, 2)) * size
    pos[0] = np.mod(start + vel * (offset - (frames - 1) / 2), size)
    age0 = rng.integers(0, lifetime, n_dots) if lifetime > 0 else None
    for t in range(1, frames):  # a loop over frames (≤ 16), not over dots
        nxt = pos[t - 1] + vel
        if age0 is not None:
            replot[t] = (age0 + t) % lifetime == 0
            nxt[replot[t]] = rng.random((int(replot[t].sum()), 2)) * size
        pos[t] = np.mod(nxt, size)
    return pos, signal, replot


def render_dots(pos, dot_size: float, height: int, width: int, contrast: float = 1.0, device=None,
                dtype=torch.float32) -> torch.Tensor:
    """Luminance frames (B, T, H, W) of dots (B, T, N, 2) in (column, row) pixels: alternate dots
    white and black on grey (mean 0.5), bilinear sub-pixel placement, disc of diameter
    ``dot_size``, wrapping at the borders."""
    p = torch.as_tensor(np.asarray(pos), device=device, dtype=torch.float64)
    b, t, n, _ = p.shape
    pol = torch.where(torch.arange(n, device=device) % 2 == 0, 1.0, -1.0).to(torch.float64)
    c0 = torch.floor(p[..., 0])
    r0 = torch.floor(p[..., 1])
    fc, fr = p[..., 0] - c0, p[..., 1] - r0
    img = torch.zeros(b * t, height * width, device=device, dtype=torch.float64)
    base = torch.arange(b * t, device=device).view(b, t, 1)
    for dc, dr, w in ((0, 0, (1 - fc) * (1 - fr)), (1, 0, fc * (1 - fr)), (0, 1, (1 - fc) * fr), (1, 1, fc * fr)):
        cc = (c0.long() + dc) % width
        rr = (r0.long() + dr) % height
        idx = (rr * width + cc)
        img.view(-1).index_add_(0, (base * height * width + idx).reshape(-1), (w * pol).reshape(-1))
    img = img.view(b * t, 1, height, width)
    rad = max(dot_size / 2, 0.5)
    k = int(np.ceil(rad - 0.5))
    yy, xx = np.mgrid[-k : k + 1, -k : k + 1]
    disc = torch.as_tensor((xx**2 + yy**2 <= rad**2 + 1e-9).astype(np.float64), device=device)
    if k > 0:
        img = F.pad(img, (k, k, k, k), mode="circular")
    img = F.conv2d(img, disc.view(1, 1, *disc.shape))
    lum = 0.5 + 0.5 * contrast * img.clamp(-1, 1)
    return lum.view(b, t, height, width).to(dtype)


def random_dot_kinematograms(direction_deg, coherence, speed=2.0, density=0.02, dot_size=2.0, lifetime=0,
                             contrast=1.0, seed=0, offset=0.0, *, frames: int, height: int, width: int, device=None,
                             dtype=torch.float32) -> torch.Tensor:
    """RDK clips (B, 3, T, H, W); ``density`` in dots per pixel², one dot field per ``seed``,
    trajectories shifted by ``offset`` frames (:func:`rdk_dots`; scalars or 1-D arrays of one
    length B)."""
    n = _batch_size(direction_deg, coherence, speed, density, dot_size, lifetime, contrast, seed, offset)
    arr = {k: np.broadcast_to(np.asarray(v), (n,)) for k, v in dict(
        d=direction_deg, c=coherence, s=speed, rho=density, ds=dot_size, lt=lifetime, con=contrast, seed=seed,
        off=offset).items()}
    if len(set(np.asarray(arr["ds"], dtype=float))) > 1:
        raise ValueError("one dot size per batch")
    n_dots = np.maximum(1, np.rint(arr["rho"] * height * width).astype(int))
    nmax = int(n_dots.max())
    pos = np.zeros((n, frames, nmax, 2))
    for i in range(n):  # one random pattern per stimulus (independent of batch composition)
        pos[i, :, : n_dots[i]], _, _ = rdk_dots(float(arr["d"][i]), float(arr["c"][i]), float(arr["s"][i]),
                                                int(n_dots[i]), int(arr["lt"][i]), frames=frames, height=height,
                                                width=width, seed=int(arr["seed"][i]), offset=float(arr["off"][i]))
    if len(set(n_dots.tolist())) == 1 and len(set(np.asarray(arr["con"], dtype=float))) == 1:
        lum = render_dots(pos, float(arr["ds"][0]), height, width, float(arr["con"][0]), device, dtype)
    else:
        lum = torch.cat([render_dots(pos[i : i + 1, :, : n_dots[i]], float(arr["ds"][i]), height, width,
                                     float(arr["con"][i]), device, dtype) for i in range(n)])
    return lum.unsqueeze(1).expand(-1, 3, -1, -1, -1)


def blank_clips(n: int = 1, *, frames: int, height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Mean-grey clips (n, 3, T, H, W): the blank screen a unit's spontaneous response is measured on."""
    return torch.full((n, 3, frames, height, width), 0.5, device=device, dtype=dtype)


# -- stimulus sets ----------------------------------------------------------------------------------------
@dataclass
class StimulusSet:
    """A factorial table of conditions and the generator that renders any subset of them.

    ``conditions``: name → 1-D array, one entry per stimulus; ``axes``: the factor names in
    C order with their levels, so responses (N, units) reshape to (*levels, units);
    ``average_over``: trailing factors responses are averaged over (phases, repeats).
    """

    kind: str
    conditions: dict[str, np.ndarray]
    axes: list[tuple[str, np.ndarray]]
    render: Callable[..., torch.Tensor]
    frames: int
    height: int
    width: int
    average_over: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(next(iter(self.conditions.values())).size)

    def make(self, index, device=None) -> torch.Tensor:
        idx = np.asarray(index)
        kw = {k: v[idx] for k, v in self.conditions.items()}
        return self.render(**kw, frames=self.frames, height=self.height, width=self.width, device=device)

    def batches(self, batch_size: int, device=None) -> Iterator[torch.Tensor]:
        for s in range(0, len(self), batch_size):
            yield self.make(np.arange(s, min(s + batch_size, len(self))), device)

    def n_batches(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)

    def groups(self) -> tuple[np.ndarray, tuple[int, ...]]:
        """Row of each stimulus after averaging over ``average_over``, and the kept shape."""
        keep = [len(levels) for name, levels in self.axes if name not in self.average_over]
        idx = np.indices([len(lv) for _, lv in self.axes]).reshape(len(self.axes), -1)
        kept = [i for i, (name, _) in enumerate(self.axes) if name not in self.average_over]
        flat = np.ravel_multi_index(idx[kept], keep) if kept else np.zeros(idx.shape[1], dtype=np.int64)
        return flat, tuple(keep)


def _factorial(axes: list[tuple[str, np.ndarray]]) -> dict[str, np.ndarray]:
    grids = np.meshgrid(*[np.asarray(v) for _, v in axes], indexing="ij")
    return {name: g.ravel() for (name, _), g in zip(axes, grids)}


def directions(n: int) -> np.ndarray:
    if n < 4 or n % 2:
        raise ValueError(f"n_directions must be even and >= 4, got {n}")
    return np.arange(n) * 360.0 / n


def grating_set(ecfg, frames: int, size: int) -> StimulusSet:
    """direction × sf × tf × phase (phases averaged) at the config's contrast and aperture."""
    axes = [("direction_deg", directions(ecfg.n_directions)), ("sf", np.asarray(ecfg.spatial_frequencies, float)),
            ("tf", np.asarray(ecfg.temporal_frequencies, float)),
            ("phase_deg", np.arange(ecfg.n_phases) * 360.0 / ecfg.n_phases)]
    cond = _factorial(axes)

    def render(**kw):
        return drifting_gratings(contrast=ecfg.contrast, aperture=ecfg.aperture, **kw)

    return StimulusSet("gratings", cond, axes, render, frames, size, size, ["phase_deg"])


def plaid_set(ecfg, frames: int, size: int) -> StimulusSet:
    """Plaids (components ± plaid_angle/2) over direction × sf × tf × phase (phases averaged)."""
    axes = [("direction_deg", directions(ecfg.n_directions)), ("sf", np.asarray(ecfg.spatial_frequencies, float)),
            ("tf", np.asarray(ecfg.temporal_frequencies, float)),
            ("phase_deg", np.arange(ecfg.n_phases) * 360.0 / ecfg.n_phases)]
    cond = _factorial(axes)

    def render(**kw):
        return plaids(angle_deg=ecfg.plaid_angle, contrast=ecfg.contrast, aperture=ecfg.aperture, **kw)

    return StimulusSet("plaids", cond, axes, render, frames, size, size, ["phase_deg"])


def rdk_set(ecfg, frames: int, size: int, n_offsets: int = 1) -> StimulusSet:
    """direction × coherence × offset × repeat. One dot field per repeat, shared by every direction
    and coherence; trajectories centred on the middle frame and shifted by 0 … ``n_offsets`` − 1
    frames (kept apart: each block averages over its own offsets, ``ephys.sampling``); repeats
    averaged."""
    axes = [("direction_deg", directions(ecfg.n_directions)), ("coherence", np.asarray(ecfg.rdk_coherences, float)),
            ("offset", np.arange(int(n_offsets), dtype=float)), ("repeat", np.arange(ecfg.rdk_repeats))]
    cond = _factorial(axes)
    cond["seed"] = ecfg.seed * 1_000_003 + cond.pop("repeat")

    def render(**kw):
        return random_dot_kinematograms(speed=ecfg.rdk_speed, density=ecfg.rdk_density, dot_size=ecfg.rdk_dot_size,
                                        lifetime=ecfg.rdk_lifetime, contrast=ecfg.contrast, **kw)

    return StimulusSet("rdk", cond, axes, render, frames, size, size, ["repeat"])


def _blank_render(blank, *, frames: int, height: int, width: int, device=None) -> torch.Tensor:
    return blank_clips(np.size(blank), frames=frames, height=height, width=width, device=device)


def blank_set(ecfg, frames: int, size: int) -> StimulusSet:
    """One mean-grey clip (the blank screen; ``ecfg`` is not needed, kept for the common signature)."""
    axes = [("blank", np.zeros(1))]
    return StimulusSet("blank", _factorial(axes), axes, _blank_render, frames, size, size)


STIMULUS_SETS = {"gratings": grating_set, "rdk": rdk_set, "plaids": plaid_set}

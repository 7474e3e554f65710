"""Base textures of the built-in video: natural images shipped with scikit-image and 1/f noise.

The images are read as files from ``skimage/data/`` in the install folder (scikit-image itself is
not imported, nothing is downloaded). A bank of ``num_scenes`` square textures is cut from them
(random crops, flips and quarter turns) and from coloured 1/f noise, deterministically from a seed.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stdann.data.config import DEFAULT_IMAGES

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def skimage_data_dir() -> Path | None:
    """The ``skimage/data`` folder of the installed scikit-image, or None."""
    try:
        spec = importlib.util.find_spec("skimage")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        d = Path(loc) / "data"
        if d.is_dir():
            return d
    return None


@lru_cache(maxsize=1)
def available_images() -> tuple[str, ...]:
    """The names ``data.images`` may hold: the sample images of the installed scikit-image (the
    default list when it is not installed, which then falls back to noise textures)."""
    d = skimage_data_dir()
    found = set() if d is None else {p.stem for p in d.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES}
    return tuple(sorted(found | set(DEFAULT_IMAGES)))


@lru_cache(maxsize=64)
def load_image(name: str) -> np.ndarray | None:
    """One sample image as float32 (H, W, 3) in [0, 1], or None when it is not installed."""
    d = skimage_data_dir()
    if d is None:
        return None
    for ext in _IMAGE_SUFFIXES:
        p = d / f"{name}{ext}"
        if p.is_file():
            try:
                with Image.open(p) as im:
                    im = im.convert("RGB")
                    return np.asarray(im, dtype=np.float32) / 255.0
            except OSError:
                return None
    return None


def pink_noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """Coloured 1/f^β noise texture (size, size, 3) in [0, 1], periodic, β ∈ [0.8, 1.6]."""
    beta = rng.uniform(0.8, 1.6)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.sqrt(fx**2 + fy**2)
    f[0, 0] = 1.0
    amp = f ** (-beta)
    amp[0, 0] = 0.0
    chans = []
    for _ in range(3):
        phase = rng.uniform(0, 2 * np.pi, size=amp.shape)
        chans.append(np.fft.irfft2(amp * np.exp(1j * phase), s=(size, size)))
    x = np.stack(chans, -1)
    # correlate the channels (natural colours are mostly luminance) with a random mixing matrix
    mix = 0.7 * np.ones((3, 3)) / 3 + 0.3 * rng.uniform(0, 1, size=(3, 3))
    x = x @ mix.T
    x = (x - x.mean()) / (x.std() + 1e-8)
    x = 0.5 + 0.18 * x + rng.uniform(-0.1, 0.1, size=3)
    return np.clip(x, 0, 1).astype(np.float32)


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None]
    t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return t[0].permute(1, 2, 0).clamp(0, 1).numpy()


def build_bank(num_scenes: int, size: int, seed: int, images=None, noise_fraction: float = 0.25) -> tuple[torch.Tensor, list[str]]:
    """(num_scenes, 3, size, size) float32 textures and a name for each (``image:crop`` or ``noise``).

    Falls back to noise only when no sample image can be read.
    """
    rng = np.random.default_rng([int(seed), 0x7E57])
    names = list(images) if images else list(DEFAULT_IMAGES)
    loaded = [(n, load_image(n)) for n in names]
    loaded = [(n, im) for n, im in loaded if im is not None]
    n_noise = int(round(num_scenes * noise_fraction)) if loaded else num_scenes
    n_img = num_scenes - n_noise
    out = np.empty((num_scenes, size, size, 3), dtype=np.float32)
    labels = []
    for i in range(n_img):
        name, im = loaded[i % len(loaded)]
        h, w = im.shape[:2]
        s = int(min(h, w) * (1.0 if i < len(loaded) else rng.uniform(0.5, 1.0)))
        y0 = int(rng.integers(0, h - s + 1))
        x0 = int(rng.integers(0, w - s + 1))
        crop = im[y0 : y0 + s, x0 : x0 + s]
        if i >= len(loaded):
            crop = np.rot90(crop, int(rng.integers(0, 4)))
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
        out[i] = _resize(crop, size)
        labels.append(f"{name}:{i}")
    for j in range(n_noise):
        out[n_img + j] = pink_noise(rng, size)
        labels.append(f"noise:{n_img + j}")
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous(), labels

"""The model's input format, shared by training clips and electrophysiology stimuli.

Clips are float tensors (B, 3, T, H, W), normalised per channel with the statistics torchvision
uses for its Kinetics-400 video models, so that converted checkpoints see what they expect.
"""

from __future__ import annotations

import torch

KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Map clips in [0, 1] (or uint8 in [0, 255]) of shape (B, 3, T, H, W) to model input."""
    if x.dim() != 5 or x.shape[1] != 3:
        raise ValueError(f"expected clips of shape (B, 3, T, H, W), got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    elif not x.is_floating_point():
        raise TypeError(f"clips must be uint8 or floating point, got {x.dtype}")
    mean, std = _stats(x.device, x.dtype)
    return (x - mean) / std


_CACHE: dict[tuple[str, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}


def _stats(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean/std tensors, made once per device and dtype (no host-to-device copy per call)."""
    key = (str(device), dtype)
    if key not in _CACHE:
        _CACHE[key] = (
            torch.tensor(KINETICS_MEAN, dtype=dtype).view(1, 3, 1, 1, 1).to(device),
            torch.tensor(KINETICS_STD, dtype=dtype).view(1, 3, 1, 1, 1).to(device),
        )
    return _CACHE[key]

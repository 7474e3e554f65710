"""What the machine offers a run and what a run needs: memory (a lower bound of what a
configuration allocates, to refuse one that cannot fit before it allocates) and CPU cores (to
choose a thread count when other processes share them)."""

from __future__ import annotations

import math
import os
from typing import Any

import torch

from stdann.config import Config, ConfigError
from stdann.models.motion_classifier import SUPERVISED
from stdann.models.r3d import block_output_shapes, r3d_parameter_count
from stdann.topography.init import MIN_NEIGHBORHOOD


def memory_of(device: torch.device) -> tuple[float, str]:
    """(total bytes, description) of the memory a run on ``device`` allocates from."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return float(props.total_memory), f"GPU {index} ({props.name})"
    try:
        total = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not a POSIX system: no estimate to compare with
        return float("inf"), "this machine"
    return total, "this machine's RAM"


def check_memory(cfg: Config, device: torch.device, world_size: int = 1) -> None:
    """Refuse (:class:`ConfigError`) a configuration whose memory lower bound exceeds the device's
    memory (:func:`estimate_memory`), before anything is allocated."""
    total, where = memory_of(device)
    problem = memory_problem(cfg, total, where, world_size)
    if problem:
        raise ConfigError(problem)


# -- memory ----------------------------------------------------------------------------------------------------
GiB = 1024 ** 3


def head_parameter_count(features: int, hidden: int, dim: int, head_bn: bool) -> int:
    """Parameters of MoCo's projection head (``stdann.models.moco.Encoder``)."""
    if head_bn:  # Linear (no bias), BN, ReLU, Linear (no bias), BN without affine
        return features * hidden + 2 * hidden + hidden * dim
    return features * hidden + hidden + hidden * dim + dim


def estimate_memory(cfg: Any, world_size: int = 1) -> dict[str, float]:
    """A lower bound of the bytes one training process allocates, by part: the encoders' weights,
    gradients and SGD momentum (fp32), the activations kept for the backward pass of the query views (both, or view 1 when
    ``moco.symmetric`` is off)
    (at 2 bytes a value: bf16 at best; only the three largest tensors of each block and two of the
    stem are counted), the generated video's texture bank and the held-out pairs. What exceeds
    the machine's memory cannot run; what stays below may still not fit."""
    width, frames, size = cfg.model.width, cfg.data.frames, cfg.data.size
    supervised = cfg.train.objective in SUPERVISED
    if supervised:  # one encoder and a linear head per classification: weights, gradients, optimiser state
        classes = cfg.train.direction_bins + (cfg.train.speed_bins if cfg.train.objective.endswith("speed") else 0)
        params = (r3d_parameter_count(width) + (8 * width + 1) * classes) * 12 / 16
    else:  # query encoder (weights, gradients, momentum) and its EMA key encoder
        params = r3d_parameter_count(width) + head_parameter_count(8 * width, cfg.moco.hidden_dim, cfg.moco.dim,
                                                                    cfg.moco.head_bn)
    shapes = block_output_shapes(width, frames, size)
    per_clip = 2 * math.prod(shapes["layer1.0"]) + sum(3 * math.prod(s) for s in shapes.values())  # stem + blocks
    local_batch = max(1, cfg.optim.batch_size // max(1, world_size))
    queried = 1 if (not supervised and not cfg.moco.symmetric) else 2  # views whose activations backward keeps
    clip = 3 * frames * size * size
    parts = {
        "weights, gradients and optimiser state (model.width)": 16.0 * params,
        "activations of the query views (optim.batch_size, data.frames, data.size, model.width, moco.symmetric)":
            2.0 * per_clip * queried * local_batch,
        "input clips (optim.batch_size, data.frames, data.size)": 4.0 * clip * 2 * local_batch,
        "held-out pairs (train.eval_pairs)": 4.0 * clip * 2 * cfg.train.eval_pairs if cfg.train.eval_pairs >= 2 else 0.0,
        "MoCo queue of negatives (moco.queue_size, moco.dim)": 0.0 if supervised else 4.0 * cfg.moco.queue_size * cfg.moco.dim,
        "motion-only negative clips (moco.motion_negatives)": 0.0 if supervised else 4.0 * clip * cfg.moco.motion_negatives * local_batch,
        # each window keeps at least MIN_NEIGHBORHOOD candidate members (int64) while neighbourhoods are drawn
        "neighbourhood windows (topography.n_windows)": 8.0 * MIN_NEIGHBORHOOD * cfg.topography.n_windows,
    }
    if cfg.data.source == "generated":
        side = max(cfg.data.texture_size if cfg.data.texture_size > 0 else 3 * size, 16)
        parts["texture bank (data.num_scenes, data.size or data.texture_size)"] = 4.0 * 3 * side * side * cfg.data.num_scenes
    return parts


def memory_problem(cfg: Any, available: float, where: str, world_size: int = 1) -> str | None:
    """A problem when the lower bound of :func:`estimate_memory` exceeds ``available`` bytes."""
    parts = estimate_memory(cfg, world_size)
    need = sum(parts.values())
    if need <= available:
        return None
    biggest = max(parts, key=parts.get)
    return (f"this configuration needs at least {_bytes(need)} of memory, more than the {_bytes(available)} of {where} "
            f"(largest part: {biggest}, {_bytes(parts[biggest])}; model.width = {cfg.model.width}, data.size = "
            f"{cfg.data.size}, data.frames = {cfg.data.frames}, optim.batch_size = {cfg.optim.batch_size}); lower the "
            "value(s) named in that part (the presets demo and smoke fit a laptop)")


def _bytes(n: float) -> str:
    for unit, scale in (("TiB", 1024 ** 4), ("GiB", GiB), ("MiB", 1024 ** 2)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} bytes"

"""Topography section of the configuration (see stdann.config)."""

from __future__ import annotations

from dataclasses import dataclass, field

from stdann.models.r3d import BLOCK_NAMES


@dataclass
class TopographyConfig:
    alpha: float = 0.25  # weight of the spatial loss
    blocks: list[str] = field(default_factory=lambda: list(BLOCK_NAMES))
    neighborhoods_per_step: int = 4  # per block per step, evaluated in one batched call
    loss: str = "rel"  # rel (SL_rel) | abs (SL_abs)
    spatial_only: bool = False  # switch the task loss off

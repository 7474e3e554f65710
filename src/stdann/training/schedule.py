"""Learning-rate schedule: linear warm-up then cosine decay (Loshchilov & Hutter 2017) from ``base_lr``
to ``base_lr · final_fraction`` (0 = to zero, MoCo v2; 1 = constant after warm-up)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from stdann.config import Config


def lr_at(step: int, total_steps: int, base_lr: float, warmup_steps: int, final_fraction: float = 0.0) -> float:
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / span))
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return base_lr * (final_fraction + (1.0 - final_fraction) * cosine)


@dataclass(frozen=True)
class Schedule:
    """Linear warm-up then cosine decay to ``final_fraction`` × ``base_lr``, over ``total_steps``."""

    total_steps: int
    base_lr: float
    warmup_steps: int
    final_fraction: float = 0.0

    @classmethod
    def from_config(cls, cfg: Config) -> "Schedule":
        warmup = int(round(cfg.optim.warmup_epochs * cfg.optim.epoch_size / cfg.optim.batch_size))
        return cls(cfg.optim.total_steps(), cfg.optim.scaled_lr(), warmup, cfg.optim.final_lr_fraction)

    def lr(self, step: int) -> float:
        return lr_at(step, self.total_steps, self.base_lr, self.warmup_steps, self.final_fraction)

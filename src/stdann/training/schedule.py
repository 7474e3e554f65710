"""Learning-rate schedule: linear warm-up then cosine decay to zero (Loshchilov & Hutter 2017)."""

from __future__ import annotations

import math


def lr_at(step: int, total_steps: int, base_lr: float, warmup_steps: int) -> float:
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, max(0.0, (step - warmup_steps) / span))
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * progress))

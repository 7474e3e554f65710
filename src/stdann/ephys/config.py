"""Electrophysiology section of the configuration (see stdann.config)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EphysConfig:
    blocks: list[str] = field(default_factory=lambda: ["layer2.1", "layer3.1", "layer4.1"])
    n_directions: int = 16

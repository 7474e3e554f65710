"""Data section of the configuration (see stdann.config)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DataConfig:
    source: str = "generated"  # generated | folder | cache
    root: str = ""  # video folder or cache directory (source folder/cache)
    frames: int = 16  # frames per clip (T)
    size: int = 112  # clip height and width after augmentation
    seed: int = 0

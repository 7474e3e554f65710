"""Topography section of the configuration (see stdann.config)."""

from __future__ import annotations

from dataclasses import dataclass, field

from stdann.models.r3d import BLOCK_NAMES


@dataclass
class TopographyConfig:
    # weight of the spatial loss. Its correlations run over the clips of the *global* batch (both views):
    # under torchrun every rank gathers the sampled units' responses of all ranks before correlating
    # them (stdann.distributed.gather_samples), so one alpha is one objective on any number of GPUs.
    alpha: float = 0.25
    blocks: list[str] = field(default_factory=lambda: list(BLOCK_NAMES))
    neighborhoods_per_step: int = 4  # per block per step, evaluated in one batched call
    loss: str = "rel"  # rel (SL_rel) | abs (SL_abs)
    spatial_only: bool = False  # switch the task loss off
    # Per-block overrides of the cortical-sheet presets (defaults live in topography/sheets.py):
    # {block: {sheet_side: mm, neighborhood_width: mm, area: name}}, e.g.
    # --set 'topography.sheets={layer3.1: {sheet_side: 5.0}}'
    sheets: dict[str, dict] = field(default_factory=dict)
    n_windows: int = 20000  # random square windows drawn to build the neighborhoods of a block
    position_seed: int = 0  # seed of the retinotopic position initialisation
    # Swap pre-optimisation of positions (0 steps = off)
    swap_steps: int = 0
    # share of optim's total steps spent on contrastive-only pretraining by the topographic recipe
    # (the rest is joint training with the spatial loss)
    pretrain_fraction: float = 0.3
    swap_windows_per_step: int = 64
    swap_pairs_per_window: int = 32

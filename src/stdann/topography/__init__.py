"""Cortical sheets, unit positions, the spatial loss and swap pre-optimisation (TDANN for video).

Figures of positions are drawn by :mod:`stdann.reports.figures.positions`.
"""

from stdann.topography.config import TopographyConfig
from stdann.topography.init import (
    compute_neighborhoods,
    effective_neighborhood_width,
    init_model_positions,
    init_positions,
    recompute_neighborhoods,
    retinotopic_coordinates,
)
from stdann.topography.positions import (
    LayerPositions,
    PositionsError,
    load_run_positions,
    positions_path,
    save_run_positions,
)
from stdann.topography.sheets import (
    SheetSpec,
    default_sheets,
    resolve_sheets,
    sheets_from_config,
)
from stdann.topography.spatial_loss import (
    SpatialLoss,
    batched_spatial_loss,
    block_responses,
    neighborhood_losses,
    spatial_loss,
)
from stdann.topography.swap import record_probe_responses, swap_optimize

__all__ = [
    "TopographyConfig", "LayerPositions", "PositionsError", "load_run_positions", "positions_path",
    "save_run_positions", "SheetSpec", "default_sheets", "resolve_sheets", "sheets_from_config",
    "init_positions", "init_model_positions", "compute_neighborhoods", "recompute_neighborhoods",
    "retinotopic_coordinates", "effective_neighborhood_width", "spatial_loss", "batched_spatial_loss",
    "block_responses", "neighborhood_losses", "SpatialLoss", "swap_optimize", "record_probe_responses",
]

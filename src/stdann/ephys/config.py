"""Electrophysiology section of the configuration (see stdann.config).

Units of the stimulus parameters are chosen so that one preset works at every clip size:
spatial frequency in cycles per pixel, temporal frequency in cycles per frame (speed of a grating
= tf / sf pixels per frame; tf < 0.5 keeps the drift direction unambiguous between frames), sizes
in pixels or in image widths as named. Direction convention everywhere: 0° = motion to the right
(increasing column index), 90° = motion upward on the screen (decreasing row index),
counter-clockwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class EphysConfig:
    blocks: list[str] = field(default_factory=lambda: ["layer2.1", "layer3.1", "layer4.1"])
    n_directions: int = 16  # evenly spaced over 360° (22.5° steps at 16); must be even and >= 4
    # -- drifting gratings ------------------------------------------------------------------------
    spatial_frequencies: list[float] = field(default_factory=lambda: [0.04, 0.08, 0.16])  # cycles/pixel
    # cycles/frame. Every block analyses only the conditions the map its stage reads samples without aliasing
    # (sf·S_in < 1/2, tf·T_in < 1/2; ephys.sampling): with r3d_18, layer1-2 every condition here, layer3 sf <= 0.08
    # (every tf), layer4 sf 0.04 / tf 0.0625. Speeds tf/sf from 0.39 to 4.7 px/frame.
    temporal_frequencies: list[float] = field(default_factory=lambda: [0.0625, 0.125, 0.1875])
    # evenly spaced starting phases, averaged: at least 8 (ephys.sampling.MIN_PHASES), whatever the block's temporal
    # stride; with 2 a direction-blind network read as direction selective (median DSI up to 0.28 per condition)
    n_phases: int = 8
    contrast: float = 1.0  # Michelson contrast in [0, 1]
    aperture: float = 0.0  # circular aperture diameter in image widths; 0 = full field
    # -- random-dot kinematograms ------------------------------------------------------------------
    rdk_coherences: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.25])
    rdk_speed: float = 2.0  # pixels per frame
    rdk_density: float = 0.05  # dots per pixel^2 (51 dots at 32², 205 at 64²)
    rdk_dot_size: float = 2.0  # dot diameter in pixels
    rdk_lifetime: int = 0  # frames a dot lives before it is replotted (0 = the whole clip)
    # dot fields per direction and coherence (responses averaged); each field is shared by every direction and
    # coherence, and shifted by 0 .. n-1 frames for a block of temporal stride n (ephys.sampling)
    rdk_repeats: int = 8
    # -- plaids -------------------------------------------------------------------------------------
    plaid_angle: float = 120.0  # degrees between the two component gratings
    # -- analysis -------------------------------------------------------------------------------------
    responsive_threshold: float = 0.1  # peak > threshold x 99th percentile of the block's peaks
    # and driven: peak >= driven_ratio x the unit's grey-screen response (1 = off); units whose responses ride on a
    # grey-screen response near their peak read as sharply tuned once the blank is subtracted (ephys.tuning.driven_mask)
    driven_ratio: float = 2.0
    dsi_criterion: float = 1.0 / 3.0  # "direction selective" = DSI above this (DI >= 0.5 equivalently)
    # FWHM of the Gaussian map kernel; 0 = chosen against the measured column spacing
    # (ephys.maps.choose_kernel: max(2 unit spacings, Λ_fine / 4)), never the retinotopic tile
    map_window_mm: float = 0.0
    map_pixels_per_window: float = 4.0  # map pixel size = kernel FWHM / this
    smoothness_units: int = 3000  # units sampled for the smoothness curve (all pairs among them)
    # Unused: confidence intervals are exact (order statistics, Clopper-Pearson) and need no
    # resampling. Kept so that configs and commands that set it still load.
    n_bootstrap: int = 1000
    batch_size: int = 32  # stimuli per forward pass
    # BatchNorm statistics: before recording, both the trained and the untrained network get their
    # running statistics re-estimated on the same generated naturalistic clips (train-mode passes,
    # no gradients), then run in eval mode. Otherwise the untrained network meets the stimuli with
    # its initial statistics (mean 0, var 1) and the trained one with statistics of its training
    # batches, and the comparison mixes learned weights with BatchNorm state. 0 = keep the stored
    # running statistics.
    bn_calibration_clips: int = 256
    # The untrained reference of `stdann analyze` (and the demo): besides the run's own untrained control, the
    # networks seeds 0 .. N-1 of the run's configuration start from, measured the same way; each block then gets a
    # verdict against their range (above only when its CI lies above all N). Between seeds the untrained networks'
    # MT selectivity moves ~10x further than one network's CI (docs/emergence.md §13). 0 = none; else >= 2.
    untrained_seeds: int = 0
    seed: int = 0

"""Networks whose direction selectivity is known by construction: tests of the measurement.

Two hand-built 3D ResNet-18s (:func:`stdann.models.r3d.r3d_18`, any width >= 16):

* :func:`direction_blind_network`: the stem holds 16 spatial Gabor filters (8 orientations over
  180° × a quadrature pair of phases) with the symmetric temporal taps [0.5, 1, 0.5]. The filters
  are space–time separable and time-symmetric: they cannot tell a grating from the same grating
  drifting the other way. A correct measurement gives every block a DSI near 0.
* :func:`motion_energy_network`: the same, with drifting spatiotemporal Gabors (8 directions over
  360° × a quadrature pair, carrier drifting ``drift`` cycles per frame): each stem channel is a
  direction-selective linear filter followed by a rectifier. A correct measurement gives every
  block the stem's high DSI.

Every later block passes the stem channels through unchanged: the residual branches are zeroed
(the last BatchNorm of each branch has weight and bias 0) and the 1×1×1 shortcuts of stages 2–4
copy the first 16 channels (the other channels stay 0, i.e. unresponsive). The BatchNorm running
statistics are set so that every BatchNorm on the path is the identity, so analyse these networks
with their stored statistics (``bn_calibration_clips = 0``): re-estimating them would rescale the
pass-through.

Direction convention: 0° = motion to the right (increasing column index), 90° = motion upward on
the screen (decreasing row index), counter-clockwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from stdann.ephys.analyze import analyze_network
from stdann.ephys.registry import get
from stdann.models.inputs import KINETICS_STD
from stdann.models.r3d import VideoResNet, block_output_shapes, r3d_18

N_CONTROL_CHANNELS = 16  # 8 orientations (or directions) x a quadrature pair
BLIND_TAPS = (0.5, 1.0, 0.5)


def gabor_bank(angles_deg, phases_deg, sf: float, sigma: float, drift: float = 0.0, taps=BLIND_TAPS,
               size: int = 7) -> np.ndarray:
    """Spatiotemporal Gabor kernels, one per (angle, phase) pair, shape (n, 3 taps, size, size).

    Kernel k of tap j (frame offset j − 1) at pixel offset (x right, y up) from the centre:
    taps[j] · exp(−(x² + y²) / 2σ²) · cos(2π(sf·u − drift·(j − 1)) + phase), u = x cos θ + y sin θ.
    With ``drift`` > 0 the carrier moves in direction θ (the filter prefers that motion); with
    ``drift`` = 0 it is a static Gabor of orientation θ. Each tap's spatial kernel has its mean
    removed, so a uniform field (a blank screen, a zero-padded frame) gives 0.

    Parameters
    ----------
    angles_deg, phases_deg : array_like
        One angle (direction of the carrier's wave vector, degrees) and one phase (degrees) per kernel.
    sf : float
        Carrier spatial frequency, cycles per pixel.
    sigma : float
        Standard deviation of the Gaussian envelope, pixels.
    drift : float
        Carrier temporal frequency, cycles per frame (0 = no drift).
    taps : sequence of 3 floats
        Weights of the three frames (t − 1, t, t + 1).
    size : int
        Spatial kernel size (odd).

    Returns
    -------
    numpy.ndarray
        float64 kernels (n, 3, size, size), rows top to bottom, columns left to right.
    """
    th = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))[:, None, None, None]
    ph = np.deg2rad(np.asarray(phases_deg, dtype=np.float64))[:, None, None, None]
    r = np.arange(size) - (size - 1) / 2
    x = r[None, None, None, :]
    y = -r[None, None, :, None]  # upward positive
    lag = (np.arange(3) - 1.0)[None, :, None, None]
    u = x * np.cos(th) + y * np.sin(th)
    k = np.exp(-(x**2 + y**2) / (2 * sigma**2)) * np.cos(2 * np.pi * (sf * u - drift * lag) + ph)
    k = k - k.mean(axis=(2, 3), keepdims=True)
    return k * np.asarray(taps, dtype=np.float64)[None, :, None, None]


def _identity_bn(bn: torch.nn.BatchNorm3d) -> None:
    """BatchNorm in eval mode that returns its input exactly."""
    bn.weight.data.fill_(1.0)
    bn.bias.data.zero_()
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)


@torch.no_grad()
def pass_through(model: VideoResNet, n_channels: int = N_CONTROL_CHANNELS) -> VideoResNet:
    """Make every residual block of ``model`` copy its input's first ``n_channels`` channels to its
    output (other channels 0): residual branches zeroed, 1×1×1 shortcuts the identity on those
    channels, their BatchNorms the identity. Modifies and returns ``model``."""
    for _, block in model.blocks():
        bn = block.conv2[1]
        bn.weight.data.zero_()
        bn.bias.data.zero_()
        if block.downsample is not None:
            conv, dbn = block.downsample[0], block.downsample[1]
            w = torch.zeros_like(conv.weight)
            idx = torch.arange(n_channels)
            w[idx, idx] = 1.0
            conv.weight.copy_(w)
            _identity_bn(dbn)
    return model


@torch.no_grad()
def _gabor_stem_network(kernels: np.ndarray, width: int, gain: float) -> VideoResNet:
    """r3d_18 of ``width`` whose stem holds ``kernels`` (n, 3, 7, 7) in its first n channels
    (applied to luminance: the three colour channels share it, undoing the input normalisation's
    per-channel scale) and whose blocks pass those channels through."""
    n = kernels.shape[0]
    if width < n:
        raise ValueError(f"width must be >= {n} (the control's stem channels), got {width}")
    model = r3d_18(None, width=width)
    stem = model.stem[0]
    w = torch.zeros_like(stem.weight)
    k = torch.as_tensor(kernels * gain, dtype=w.dtype)
    std = torch.as_tensor(KINETICS_STD, dtype=w.dtype).view(1, 3, 1, 1, 1)
    w[:n] = k[:, None] * std / 3.0  # sum over colours of w_c (L - m_c) / s_c = kernel * L (zero-sum kernels)
    stem.weight.copy_(w)
    _identity_bn(model.stem[1])
    return pass_through(model, n).eval()


def direction_blind_network(width: int = 16, sf: float = 0.125, sigma: float = 2.0, gain: float = 4.0) -> VideoResNet:
    """The direction-blind control (module docstring): 8 orientations over 180° × phases 0°/90°,
    carrier ``sf`` cycles/pixel, envelope ``sigma`` pixels, temporal taps [0.5, 1, 0.5], no drift.

    Returns
    -------
    VideoResNet
        In eval mode; BatchNorm statistics as built (analyse with ``bn_calibration_clips = 0``).
    """
    angles = np.repeat(np.arange(8) * 22.5, 2)
    phases = np.tile([0.0, 90.0], 8)
    return _gabor_stem_network(gabor_bank(angles, phases, sf, sigma), width, gain)


def motion_energy_network(width: int = 16, sf: float = 0.125, sigma: float = 2.0, drift: float = 0.25,
                          gain: float = 4.0) -> VideoResNet:
    """The motion-energy control (module docstring): 8 directions over 360° × phases 0°/90°,
    carrier ``sf`` cycles/pixel drifting ``drift`` cycles/frame, envelope ``sigma`` pixels.

    Returns
    -------
    VideoResNet
        In eval mode; BatchNorm statistics as built (analyse with ``bn_calibration_clips = 0``).
    """
    angles = np.repeat(np.arange(8) * 45.0, 2)
    phases = np.tile([0.0, 90.0], 8)
    return _gabor_stem_network(gabor_bank(angles, phases, sf, sigma, drift=drift), width, gain)


# -- the measurement applied to the controls ----------------------------------------------------------------------
CONTROLS = {"direction_blind": direction_blind_network, "motion_energy": motion_energy_network}


@dataclass(frozen=True)
class GridPositions:
    """Unit positions on a plain retinotopic grid (1 mm per feature-map pixel, every channel of a place at
    the same point): enough for :func:`stdann.ephys.analyze.analyze_block`, which needs a block's unit
    count, dims and coordinates."""

    name: str
    dims: tuple[int, int, int]

    @property
    def num_units(self) -> int:
        c, h, w = self.dims
        return c * h * w

    @property
    def coordinates(self) -> np.ndarray:
        c, h, w = self.dims
        rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
        return np.tile(np.stack([cols.ravel(), rows.ravel()], axis=1), (c, 1))


def grid_positions(model: VideoResNet, blocks, frames: int, size: int) -> dict[str, GridPositions]:
    """:class:`GridPositions` of ``blocks`` for ``frames x size x size`` clips."""
    shapes = block_output_shapes(model.width, frames, size)
    return {b: GridPositions(b, (shapes[b][0], shapes[b][2], shapes[b][3])) for b in blocks}


CONTROL_KEYS = ("dsi_median", "dsi_blank_median", "vector_strength_blank_median", "direction_consistency",
                "n_responsive", "rdk.dsi_median", "rdk.vector_strength_median")


def measure_controls(ecfg, frames: int = 8, size: int = 32, blocks=("layer1.1", "layer2.1", "layer3.1", "layer4.1"),
                     stimuli=("gratings", "rdk"), width: int = 16, device="cpu") -> dict[str, dict[str, dict]]:
    """The analysis (``ephys.analyze.analyze_network``, stored BatchNorm statistics, no maps: the
    controls' units sit on a plain grid) of both controls.

    Parameters
    ----------
    ecfg : EphysConfig
        The measurement to test (its ``bn_calibration_clips`` is ignored: the controls keep theirs).
    frames, size : int
        Clip size.
    blocks : sequence of str
        Blocks to analyse.
    stimuli : sequence of str
        Stimulus sets (gratings are always recorded).
    width : int
        Network width (>= 16).

    Returns
    -------
    dict
        control name → block → the :data:`CONTROL_KEYS` of its summary (None where not measured).
    """
    out: dict[str, dict[str, dict]] = {}
    for name, build in CONTROLS.items():
        model = build(width=width).to(device)
        res = analyze_network(model, grid_positions(model, blocks, frames, size), list(blocks), stimuli, ecfg, frames,
                              size, device, maps=False)
        out[name] = {b: {k: get(res[b][0], k) for k in CONTROL_KEYS} for b in blocks}
    return out

"""How each block samples a stimulus: its strides (read from the network), the aliasing rule for
grating conditions, the starting phases and the dot-field offsets that make a measurement blind to
the block's sampling grid.

Strides are counted in input frames (time) and input pixels (space). For torchvision's r3d_18 they
follow from the layout (stem stride (1, 2, 2), stages 2–4 stride 2 in T, H and W):

=========  ======================  ==================================
block      output stride (T, H, W) stride of the map its stage reads
=========  ======================  ==================================
layer1.x   (1, 2, 2)               (1, 2, 2)  (the stem's output)
layer2.x   (2, 4, 4)               (1, 2, 2)
layer3.x   (4, 8, 8)               (2, 4, 4)
layer4.x   (8, 16, 16)             (4, 8, 8)
=========  ======================  ==================================

:func:`block_sampling` reads them from the model's convolutions, so this table is never typed twice.

Rules (``rules`` in metrics.json says them in words):

* **aliasing** — a grating condition (sf cycles/pixel, tf cycles/frame) is *sampled* by a block when
  the map its stage reads represents the grating without aliasing in space and time:
  sf · S_in < 1/2 and tf · T_in < 1/2, S_in = the larger spatial stride and T_in the temporal stride
  of that map (strict: at exactly half a cycle per sample the direction of the drift is undefined).
  The stage's strided convolution reads that map with its 3-tap kernels, so this is the finest
  sampling at which the stage can compute a direction from the grating; a condition beyond it
  reaches the stage already aliased (a drift read in the wrong direction, a static or flickering
  pattern). Oblique gratings have smaller components along the rows and columns, so the rule holds
  for every direction of a condition. Excluded conditions are never a unit's best condition.
* **phases** — grating responses average ``n_phases`` evenly spaced starting phases; at least
  :data:`MIN_PHASES`. The average over P evenly spaced phases removes every harmonic of the phase
  response below the P-th exactly, in every block, whatever its temporal stride. The block's own
  time samples do not replace starting phases: frames at the clip's ends meet zero padding, so
  the response is not the same function of phase at every sample (measured: a direction-blind
  network scored median DSI up to 0.28 per condition with 2 phases, ≤ 0.02 with 8).
* **dot-field offsets** — a random-dot kinematogram's trajectory is centred on the clip's middle
  frame and shifted by 0 … n − 1 frames, n = the block's temporal stride (at most the clip length);
  the block averages over its own n offsets (and over the repeats). The block samples frames
  0, n, 2n, …, so over its offsets it sees the dot field at trajectory times (frame + offset −
  centre) that are symmetric about 0; the clip of θ + 180° is the clip of θ with time negated, so
  the block sees the same dot configurations for both directions, in reverse order. A network that
  cannot tell forward from backward time then gives the two directions the same response (up to
  the clip's end frames, where the zero padding differs; exactly so when the clip length is a
  multiple of n).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import nn

MIN_PHASES = 8  # evenly spaced starting phases every grating response averages (at least)
NYQUIST = 0.5  # cycles per sample


@dataclass(frozen=True)
class BlockSampling:
    """Strides of one block in input frames and pixels: ``output`` of the block's own map,
    ``stage_input`` of the map its stage reads (both (T, H, W))."""

    block: str
    output: tuple[int, int, int]
    stage_input: tuple[int, int, int]

    @property
    def spatial_input(self) -> int:
        return max(self.stage_input[1:])

    @property
    def temporal_input(self) -> int:
        return self.stage_input[0]

    @property
    def temporal_output(self) -> int:
        return self.output[0]


def _conv_stride(conv: nn.Conv3d) -> tuple[int, int, int]:
    s = conv.stride
    return tuple(int(v) for v in (s if isinstance(s, tuple) else (s, s, s)))


def block_sampling(model) -> dict[str, BlockSampling]:
    """Every residual block's strides, read from the network's convolutions.

    Parameters
    ----------
    model : stdann.models.r3d.VideoResNet
        Needs ``stem[0]`` (the stem convolution) and ``blocks()`` (name, block) with each block's
        first convolution at ``conv1[0]``.

    Returns
    -------
    dict
        block name → :class:`BlockSampling`, in forward order.
    """
    stride = np.asarray(_conv_stride(model.stem[0]), dtype=np.int64)
    out: dict[str, BlockSampling] = {}
    stage_in: dict[str, np.ndarray] = {}
    for name, block in model.blocks():
        stage = name.split(".")[0]
        stage_in.setdefault(stage, stride.copy())
        stride = stride * np.asarray(_conv_stride(block.conv1[0]), dtype=np.int64)
        out[name] = BlockSampling(name, tuple(int(v) for v in stride), tuple(int(v) for v in stage_in[stage]))
    return out


def sampled_conditions(spatial_frequencies, temporal_frequencies, sampling: BlockSampling) -> np.ndarray:
    """Which (sf, tf) grating conditions ``sampling``'s block samples (module docstring, aliasing).

    Parameters
    ----------
    spatial_frequencies : array_like
        Cycles per pixel.
    temporal_frequencies : array_like
        Cycles per frame.
    sampling : BlockSampling
        The block's strides.

    Returns
    -------
    numpy.ndarray
        bool (n_sf, n_tf), True where sf · S_in < 1/2 and tf · T_in < 1/2.
    """
    sf = np.asarray(spatial_frequencies, dtype=np.float64)[:, None]
    tf = np.asarray(temporal_frequencies, dtype=np.float64)[None, :]
    return (sf * sampling.spatial_input < NYQUIST) & (tf * sampling.temporal_input < NYQUIST)


def dot_offsets(sampling: BlockSampling, frames: int) -> int:
    """Number of trajectory offsets (frames) a block averages its dot responses over: its temporal
    stride, at most the clip length."""
    return int(max(1, min(sampling.temporal_output, frames)))


def sampling_summary(spatial_frequencies, temporal_frequencies, sampling: BlockSampling, frames: int) -> dict:
    """A block's sampling as metrics.json states it: strides, the conditions it samples and those
    excluded (as [sf, tf] pairs), and its dot-field offsets."""
    ok = sampled_conditions(spatial_frequencies, temporal_frequencies, sampling)
    sf = np.asarray(spatial_frequencies, dtype=np.float64)
    tf = np.asarray(temporal_frequencies, dtype=np.float64)
    isf, itf = np.nonzero(~ok)
    return {"output_stride_thw": list(sampling.output), "stage_input_stride_thw": list(sampling.stage_input),
            "max_sf_sampled": NYQUIST / sampling.spatial_input, "max_tf_sampled": NYQUIST / sampling.temporal_input,
            "n_conditions_sampled": int(ok.sum()), "n_conditions": int(ok.size),
            "excluded_conditions": [[float(sf[i]), float(tf[j])] for i, j in zip(isf, itf)],
            "dot_offsets": dot_offsets(sampling, frames)}


def phase_problem(n_phases: int) -> str | None:
    """A note for metrics.json when fewer than :data:`MIN_PHASES` starting phases were averaged."""
    if n_phases >= MIN_PHASES:
        return None
    return (f"ephys.n_phases = {n_phases} < {MIN_PHASES}: grating responses keep part of their phase dependence, "
            "which reads as direction selectivity (a direction-blind network scored median DSI up to 0.28 per "
            f"condition with 2 phases); use n_phases >= {MIN_PHASES}")

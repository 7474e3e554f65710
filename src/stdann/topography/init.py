"""Retinotopic initialisation of unit positions and the neighborhoods of the spatial loss.

Following Margalit et al. 2024 (TDANN), every unit (c, h, w) of a block output of shape (C, H, W)
is placed on the block's square sheet of side L (mm):

* the H×W feature-map grid tiles the sheet: tile (h, w) has size L/W × L/H and centre
  ((w + ½)·L/W, (h + ½)·L/H); x runs along W (columns) and y along H (rows, so y grows downwards on
  the screen, as the row index does);
* each of the C channel units at (h, w) is drawn uniformly inside its tile enlarged by the factor
  ``1 + tile_overlap`` (tiles overlap slightly), then moved by a Gaussian jitter of s.d.
  ``jitter`` × tile size; positions are clipped to [0, L].

Neighborhoods: ``n_windows`` random square windows of side w (the neighborhood width), lying
wholly on the sheet, are drawn; the window counts n_k give
``M = min(max(P5(n_k), 25), 500)`` (P5 = 5th percentile); windows with n_k ≥ M are kept and a
uniformly random subset of exactly M of their units is stored (P × M int64, row-major unit
indices).

Small networks (CPU presets) keep the sheet sizes in mm and have fewer units per mm². When the
expected number of units in a window, N·w²/L², falls below ``min_expected_units`` (default 32),
the window is widened to w' = L·sqrt(min_expected_units/N) (at most L) and w' is what the
positions file records as ``neighborhood_width``. The paper-scale network (width 64, 112² clips)
is never widened. When few units exist, M is also capped by the number of units, and if fewer
than 5 % of the windows reach M, M falls to P5(n_k) (never below 2).

All of this is vectorised (units are sorted into square bins of the window's width, so a window
only looks at the units of the 2×2 bins it overlaps) and runs with torch on CPU or CUDA.
"""

from __future__ import annotations

import math
from typing import Iterable

import numpy as np
import torch

from stdann.models.r3d import BLOCK_NAMES, block_output_shapes
from stdann.topography.positions import LayerPositions, PositionsError
from stdann.topography.sheets import SheetSpec, default_sheets

MAX_NEIGHBORHOOD = 500
MIN_NEIGHBORHOOD = 25


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def _check_dims(block: str, dims) -> tuple[int, int, int]:
    try:
        c, h, w = (int(d) for d in dims)
    except (TypeError, ValueError):
        raise PositionsError(f"{block}: dims must be (C, H, W), got {dims!r}") from None
    if min(c, h, w) < 1:
        raise PositionsError(f"{block}: dims must be positive (C, H, W), got {dims!r}")
    if c * h * w < 2:
        raise PositionsError(f"{block}: {c * h * w} unit(s); a sheet needs at least 2 units")
    return c, h, w


def effective_neighborhood_width(block: str, num_units: int, sheet: SheetSpec, min_expected_units: float = 32) -> float:
    """The window width actually used: the sheet's width, widened for sparse (small) networks.

    Raises PositionsError when the neighborhood width exceeds the sheet side.
    """
    side, width = sheet.sheet_side, sheet.neighborhood_width
    if width > side:
        raise PositionsError(
            f"{block}: neighborhood width {width:g} mm is larger than the sheet side {side:g} mm; "
            f"choose topography.sheets.{block}.neighborhood_width <= {side:g} or a larger sheet_side"
        )
    expected = num_units * width**2 / side**2
    if expected < min_expected_units:
        width = min(side, side * math.sqrt(min_expected_units / num_units))
    return float(width)


def retinotopic_coordinates(block: str, dims, sheet_side: float, rng=None, tile_overlap: float = 0.1, jitter: float = 0.02) -> np.ndarray:
    """(C·H·W, 2) float32 positions in mm, unit order = row-major (C, H, W)."""
    c, h, w = _check_dims(block, dims)
    rng = _rng(rng)
    if tile_overlap < 0 or jitter < 0:
        raise PositionsError(f"{block}: tile_overlap and jitter must be >= 0, got {tile_overlap}, {jitter}")
    tx, ty = sheet_side / w, sheet_side / h
    cols = np.broadcast_to(np.arange(w)[None, None, :], (c, h, w)).reshape(-1)
    rows = np.broadcast_to(np.arange(h)[None, :, None], (c, h, w)).reshape(-1)
    n = c * h * w
    u = rng.uniform(-0.5, 0.5, size=(n, 2)) * (1.0 + tile_overlap)
    x = (cols + 0.5 + u[:, 0]) * tx
    y = (rows + 0.5 + u[:, 1]) * ty
    x = x + rng.normal(0.0, jitter * tx, size=n)
    y = y + rng.normal(0.0, jitter * ty, size=n)
    xy = np.stack([x, y], axis=1)
    return np.clip(xy, 0.0, sheet_side).astype(np.float32)


def _bin_table(coords: torch.Tensor, bin_size: float, nb: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort units into nb×nb square bins. Returns (table (nb*nb + 1, Kmax) of unit ids padded with
    -1 — the last row is an empty bin —, bin index of every unit)."""
    n = coords.shape[0]
    b = torch.clamp((coords / bin_size).floor().long(), 0, nb - 1)
    bid = b[:, 1] * nb + b[:, 0]
    order = torch.argsort(bid, stable=True)
    sorted_bid = bid[order]
    counts = torch.bincount(bid, minlength=nb * nb)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(n, device=coords.device) - starts[sorted_bid]
    kmax = max(int(counts.max().item()), 1)
    table = torch.full((nb * nb + 1, kmax), -1, dtype=torch.long, device=coords.device)
    table[sorted_bid, rank] = order
    return table, bid


def window_members(
    coords: torch.Tensor,
    corners: torch.Tensor,
    width: float,
    sheet_side: float,
    keep: int,
    generator: torch.Generator | None = None,
    chunk_elems: int = 1 << 24,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Units inside square windows [x0, x0+width) × [y0, y0+width).

    Returns (counts (K,), members (K, keep)): members[k, :min(counts[k], keep)] are a uniformly
    random ordering of window k's units (the rest is -1). Vectorised over windows in chunks.
    """
    device = coords.device
    nb = max(1, int(math.ceil(sheet_side / width - 1e-9)))
    table, _ = _bin_table(coords, width, nb)
    empty = nb * nb
    kmax = table.shape[1]
    cand_len = 4 * kmax
    keep = min(keep, cand_len)
    k_all = corners.shape[0]
    counts_out = torch.empty(k_all, dtype=torch.long, device=device)
    members_out = torch.full((k_all, keep), -1, dtype=torch.long, device=device)
    step = max(1, chunk_elems // cand_len)
    for s in range(0, k_all, step):  # chunks of windows (memory), not a loop over windows
        cor = corners[s : s + step]
        b0 = torch.clamp((cor / width).floor().long(), 0, nb - 1)
        bx = torch.stack([b0[:, 0], b0[:, 0] + 1], 1)  # (k, 2)
        by = torch.stack([b0[:, 1], b0[:, 1] + 1], 1)
        bins = by[:, :, None] * nb + bx[:, None, :]  # (k, 2, 2)
        valid_bin = (bx[:, None, :] < nb) & (by[:, :, None] < nb)
        bins = torch.where(valid_bin, bins, torch.full_like(bins, empty)).reshape(-1, 4)
        cand = table[bins].reshape(bins.shape[0], cand_len)  # (k, L)
        ok = cand >= 0
        xy = coords[cand.clamp_min(0)]  # (k, L, 2)
        lo = cor[:, None, :]
        inside = ok & ((xy >= lo) & (xy < lo + width)).all(-1)
        counts_out[s : s + step] = inside.sum(1)
        keys = torch.rand(cand.shape, generator=generator, device=generator.device if generator is not None else device)
        keys = keys.to(device).masked_fill(~inside, 2.0)
        kk, idx = torch.topk(keys, keep, dim=1, largest=False)
        mem = torch.gather(cand, 1, idx)
        members_out[s : s + step] = torch.where(kk < 2.0, mem, torch.full_like(mem, -1))
    return counts_out, members_out


def neighborhood_size(counts: np.ndarray, num_units: int) -> int:
    """M = min(max(P5(counts), 25), 500, N); lowered to max(P5, 2) when < 5 % of windows reach it."""
    p5 = int(np.floor(np.percentile(counts, 5)))
    m = min(max(p5, MIN_NEIGHBORHOOD), MAX_NEIGHBORHOOD, num_units)
    if np.mean(counts >= m) < 0.05:
        m = max(min(p5, m), 2)
    return max(int(m), 2)


def compute_neighborhoods(
    block: str,
    coordinates: np.ndarray,
    neighborhood_width: float,
    sheet_side: float,
    n_windows: int = 20000,
    rng=None,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """P × M int64 neighborhoods from random square windows (see the module docstring)."""
    rng = _rng(rng)
    n = int(coordinates.shape[0])
    if n_windows < 1:
        raise PositionsError(f"{block}: n_windows must be >= 1, got {n_windows}")
    if neighborhood_width > sheet_side:
        raise PositionsError(
            f"{block}: neighborhood width {neighborhood_width:g} mm is larger than the sheet side {sheet_side:g} mm"
        )
    device = torch.device(device) if device is not None else torch.device("cpu")
    coords = torch.as_tensor(np.asarray(coordinates, dtype=np.float32), device=device)
    corners = torch.as_tensor(
        rng.uniform(0.0, sheet_side - neighborhood_width, size=(n_windows, 2)).astype(np.float32), device=device
    )
    gen = torch.Generator(device="cpu").manual_seed(int(rng.integers(2**62)))
    counts, members = window_members(coords, corners, neighborhood_width, sheet_side, MAX_NEIGHBORHOOD, gen)
    counts_np = counts.cpu().numpy()
    m = neighborhood_size(counts_np, n)
    keep = counts >= m
    if not bool(keep.any()):
        raise PositionsError(
            f"{block}: no window of width {neighborhood_width:g} mm holds {m} units (max {counts_np.max()}) "
            f"on a {sheet_side:g} mm sheet with {n} units; use a wider neighborhood_width"
        )
    return members[keep][:, :m].cpu().numpy().astype(np.int64)


def init_positions(
    block: str,
    dims,
    sheet: SheetSpec | None = None,
    rng: int | np.random.Generator | None = 0,
    n_windows: int = 20000,
    *,
    tile_overlap: float = 0.1,
    jitter: float = 0.02,
    min_expected_units: float = 32,
    device: str | torch.device | None = None,
) -> LayerPositions:
    """Retinotopic positions and neighborhoods of one block (Margalit et al. 2024).

    block: block name (``layer3.1``); dims: (C, H, W) of its output; sheet: its SheetSpec (default
    from :func:`default_sheets`); rng: seed or numpy Generator (deterministic per seed).
    The recorded ``neighborhood_width`` is the width really used (see the module docstring).
    """
    c, h, w = _check_dims(block, dims)
    if sheet is None:
        sheets = default_sheets()
        if block not in sheets:
            raise PositionsError(f"{block}: no default sheet; pass sheet=SheetSpec(...). Known blocks {list(sheets)}")
        sheet = sheets[block]
    rng = _rng(rng)
    n = c * h * w
    width = effective_neighborhood_width(block, n, sheet, min_expected_units)
    coords = retinotopic_coordinates(block, (c, h, w), sheet.sheet_side, rng, tile_overlap, jitter)
    nbhd = compute_neighborhoods(block, coords, width, sheet.sheet_side, n_windows, rng, device)
    return LayerPositions(
        name=block, dims=(c, h, w), coordinates=coords, neighborhood_indices=nbhd,
        neighborhood_width=width, sheet_side=sheet.sheet_side,
    )


def recompute_neighborhoods(
    positions: LayerPositions, n_windows: int = 20000, rng=0, device: str | torch.device | None = None
) -> LayerPositions:
    """Fresh neighborhoods from the current coordinates (e.g. after swaps), same width and sheet."""
    nbhd = compute_neighborhoods(
        positions.name, positions.coordinates, positions.neighborhood_width, positions.sheet_side, n_windows, rng, device
    )
    return LayerPositions(
        name=positions.name, dims=positions.dims, coordinates=positions.coordinates.copy(),
        neighborhood_indices=nbhd, neighborhood_width=positions.neighborhood_width, sheet_side=positions.sheet_side,
    )


def init_model_positions(
    width: int,
    frames: int,
    size: int,
    blocks: Iterable[str] | None = None,
    sheets: dict[str, SheetSpec] | None = None,
    seed: int = 0,
    n_windows: int = 20000,
    device: str | torch.device | None = None,
) -> dict[str, LayerPositions]:
    """Positions of every requested block of an r3d_18 of this width on frames×size² clips.

    Each block gets its own random stream derived from ``seed`` and the block's index, so a block's
    positions do not depend on which other blocks are requested.
    """
    shapes = block_output_shapes(width, frames, size)
    blocks = list(BLOCK_NAMES if blocks is None else blocks)
    unknown = [b for b in blocks if b not in shapes]
    if unknown:
        raise PositionsError(f"unknown block(s) {unknown}; valid blocks are {list(shapes)}")
    all_sheets = default_sheets()
    all_sheets.update(sheets or {})
    out = {}
    for b in blocks:
        c, _, h, w = shapes[b]
        rng = np.random.default_rng([int(seed), BLOCK_NAMES.index(b)])
        out[b] = init_positions(b, (c, h, w), all_sheets[b], rng, n_windows, device=device)
    return out

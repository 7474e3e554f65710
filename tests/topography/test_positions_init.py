"""Sheets presets, retinotopic position initialisation and neighborhoods."""

import numpy as np
import pytest

from stdann.config import load_config
from stdann.topography import (
    LayerPositions,
    PositionsError,
    SheetSpec,
    default_sheets,
    init_model_positions,
    init_positions,
    recompute_neighborhoods,
    resolve_sheets,
    sheets_from_config,
)
from stdann.topography.init import neighborhood_size


def test_default_sheets_table():
    s = default_sheets()
    assert list(s) == [f"layer{a}.{b}" for a in range(1, 5) for b in range(2)]
    assert s["layer3.1"] == SheetSpec(7.07, 2.1, "MT")
    assert s["layer1.0"].neighborhood_width == pytest.approx(0.0475)
    assert s["layer2.1"].sheet_side == pytest.approx(34.4)


def test_sheet_overrides_from_config():
    cfg = load_config("smoke", overrides=["topography.sheets={layer3.1: {sheet_side: 5, neighborhood_width: 1.5}}"])
    s = sheets_from_config(cfg)
    assert s["layer3.1"] == SheetSpec(5.0, 1.5, "MT") and s["layer3.0"] == default_sheets()["layer3.0"]
    # the dotted form nests "layer3" -> "1"
    cfg = load_config("smoke", overrides=["topography.sheets.layer3.1.sheet_side=6"])
    assert sheets_from_config(cfg)["layer3.1"].sheet_side == 6.0
    with pytest.raises(PositionsError, match="layer3.1"):
        resolve_sheets({"layer31": {"sheet_side": 5}})
    with pytest.raises(PositionsError, match="unknown field"):
        resolve_sheets({"layer3.1": {"side": 5}})
    with pytest.raises(PositionsError, match="positive"):
        resolve_sheets({"layer3.1": {"sheet_side": -1}})


def test_counts_bounds_retinotopy():
    c, h, w = 6, 9, 7
    side = 10.0
    pos = init_positions("blk", (c, h, w), SheetSpec(side, 3.0), rng=1, n_windows=3000)
    assert isinstance(pos, LayerPositions) and pos.dims == (c, h, w)
    xy = pos.coordinates
    assert xy.shape == (c * h * w, 2) and xy.dtype == np.float32
    assert (xy >= 0).all() and (xy <= side).all()
    # unit (c, h, w) lies in its tile (enlarged by the 10 % overlap plus a generous jitter margin)
    cols = np.tile(np.arange(w), c * h)
    rows = np.tile(np.repeat(np.arange(h), w), c)
    tx, ty = side / w, side / h
    dx = np.abs(xy[:, 0] - (cols + 0.5) * tx) / tx
    dy = np.abs(xy[:, 1] - (rows + 0.5) * ty) / ty
    assert dx.max() < 0.55 + 0.15 and dy.max() < 0.55 + 0.15
    assert np.mean((dx < 0.5) & (dy < 0.5)) > 0.7  # most inside the plain tile
    # all channels of a location share the tile; different channels differ in position
    assert not np.allclose(xy[:h * w], xy[h * w: 2 * h * w])


def test_neighborhoods_size_and_in_window():
    pos = init_positions("blk", (8, 12, 12), SheetSpec(12.0, 3.0), rng=2, n_windows=4000)
    nb = pos.neighborhood_indices
    p, m = nb.shape
    assert nb.dtype == np.int64 and p > 1000
    assert 25 <= m <= 500
    # every neighborhood fits in a window of the neighborhood width and holds distinct units
    pts = pos.coordinates[nb]
    extent = pts.max(1) - pts.min(1)
    assert (extent <= pos.neighborhood_width + 1e-5).all()
    srt = np.sort(nb, 1)
    assert (np.diff(srt, axis=1) > 0).all()
    # expected units per window = 1152 * 9/144 = 72: M is the 5th percentile of the counts
    assert 40 <= m <= 72


def test_neighborhood_size_rule():
    assert neighborhood_size(np.full(100, 1000), 10**6) == 500
    assert neighborhood_size(np.arange(100, 200), 10**6) == 104
    assert neighborhood_size(np.full(100, 30), 10**6) == 30
    assert neighborhood_size(np.r_[np.full(90, 20), np.full(10, 40)], 10**6) == 25  # 10 % reach 25
    assert neighborhood_size(np.full(100, 20), 10**6) == 20  # none reach 25: the 5th percentile
    assert neighborhood_size(np.full(100, 100), 60) == 60  # capped by the number of units
    assert neighborhood_size(np.full(100, 8), 10**6) == 8  # few units: fall back to the 5th percentile
    assert neighborhood_size(np.full(100, 1), 10**6) == 2  # floor of 2


def test_determinism_and_seed():
    a = init_positions("blk", (4, 6, 6), SheetSpec(5.0, 2.0), rng=3, n_windows=500)
    b = init_positions("blk", (4, 6, 6), SheetSpec(5.0, 2.0), rng=3, n_windows=500)
    c = init_positions("blk", (4, 6, 6), SheetSpec(5.0, 2.0), rng=4, n_windows=500)
    assert np.array_equal(a.coordinates, b.coordinates)
    assert np.array_equal(a.neighborhood_indices, b.neighborhood_indices)
    assert not np.array_equal(a.coordinates, c.coordinates)


def test_small_network_widens_neighborhoods(tmp_path):
    # smoke preset: layer1 has 8x16x16 units on a 2.4 mm sheet; a 0.0475 mm window would hold < 1
    pos = init_model_positions(8, 4, 32, blocks=["layer1.0", "layer3.1"], n_windows=2000, seed=0)
    l1 = pos["layer1.0"]
    assert l1.dims == (8, 16, 16) and l1.sheet_side == pytest.approx(2.4)
    assert l1.neighborhood_width > 0.0475 and l1.neighborhood_indices.shape[1] >= 2
    # not widened where units are dense enough
    assert pos["layer3.1"].neighborhood_width == pytest.approx(2.1)
    # round trip through the npz file
    path = l1.save(tmp_path / "l1.npz")
    back = LayerPositions.load(path)
    assert np.array_equal(back.neighborhood_indices, l1.neighborhood_indices)
    # per-block streams: same result whether or not other blocks are requested
    alone = init_model_positions(8, 4, 32, blocks=["layer3.1"], n_windows=2000, seed=0)
    assert np.array_equal(alone["layer3.1"].coordinates, pos["layer3.1"].coordinates)


def test_bad_inputs():
    with pytest.raises(PositionsError, match="blk.*5 mm.*larger than the sheet side 2 mm"):
        init_positions("blk", (4, 4, 4), SheetSpec(2.0, 5.0))
    with pytest.raises(PositionsError, match="dims"):
        init_positions("blk", (4, 4), SheetSpec(2.0, 1.0))
    with pytest.raises(PositionsError, match="unknown block"):
        init_model_positions(8, 4, 32, blocks=["layer5.0"])
    pos = init_positions("blk", (2, 4, 4), SheetSpec(4.0, 2.0), rng=0, n_windows=200)
    with pytest.raises(PositionsError, match="31 positions for 32 units"):
        LayerPositions("blk", (2, 4, 4), pos.coordinates[:31], pos.neighborhood_indices, 2.0, 4.0)
    bad = pos.coordinates.copy()
    bad[0, 0] = np.nan
    with pytest.raises(PositionsError, match="NaN"):
        LayerPositions("blk", (2, 4, 4), bad, pos.neighborhood_indices, 2.0, 4.0)
    with pytest.raises(PositionsError, match="width"):
        SheetSpec(1.0, float("nan"))


def test_recompute_neighborhoods_after_permutation():
    pos = init_positions("blk", (4, 8, 8), SheetSpec(8.0, 3.0), rng=0, n_windows=1000)
    perm = np.random.default_rng(0).permutation(pos.num_units)
    moved = LayerPositions("blk", pos.dims, pos.coordinates[perm], pos.neighborhood_indices, 3.0, 8.0)
    fresh = recompute_neighborhoods(moved, n_windows=1000, rng=1)
    pts = fresh.coordinates[fresh.neighborhood_indices]
    assert ((pts.max(1) - pts.min(1)) <= 3.0 + 1e-5).all()

"""Swap pre-optimisation on a planted smooth map, the exact ΔSL of one swap, probe recording, plots."""

import numpy as np
import pytest
import torch

from stdann.models.r3d import r3d_18
from stdann.topography import (
    LayerPositions,
    PositionsError,
    SheetSpec,
    compute_neighborhoods,
    init_positions,
    record_probe_responses,
    spatial_loss,
    swap_optimize,
)
from stdann.topography.spatial_loss import (
    correlation_matrices,
    normalize_responses,
    proximity,
)
from stdann.topography.spatial_loss import sl_rel_from_matrices
from stdann.topography.swap import mean_window_sl, proposal_delta_sl

SIDE, WIDTH = 10.0, 3.0


@pytest.fixture(scope="module")
def planted():
    """A smooth map: 576 units, responses = sums of low-frequency sinusoids of position + noise."""
    rng = np.random.default_rng(0)
    pos = init_positions("planted", (4, 12, 12), SheetSpec(SIDE, WIDTH), rng=0, n_windows=2000)
    xy = pos.coordinates
    s = 64
    k = rng.normal(0, 2 * np.pi / SIDE, (s, 4, 2))
    ph = rng.uniform(0, 2 * np.pi, (s, 4))
    amp = rng.normal(0, 1, (s, 4))
    resp = (amp[:, :, None] * np.sin(np.einsum("skd,nd->skn", k, xy) + ph[:, :, None])).sum(1)
    resp = resp + 0.3 * rng.normal(size=resp.shape)
    perm = rng.permutation(len(xy))
    scrambled = LayerPositions(
        "planted", pos.dims, xy[perm], compute_neighborhoods("planted", xy[perm], WIDTH, SIDE, 2000, 1), WIDTH, SIDE
    )
    return torch.tensor(resp, dtype=torch.float32), pos, scrambled


def local_sl(resp, positions, n=300):
    nb = compute_neighborhoods("x", positions.coordinates, WIDTH, SIDE, 1000, 5)[:n]
    xn = normalize_responses(resp)
    return mean_window_sl(xn, torch.tensor(positions.coordinates), torch.arange(resp.shape[1]), torch.tensor(nb))


def global_corr(resp, coords):
    r = correlation_matrices(resp)
    d = proximity(torch.tensor(coords))
    iu = torch.triu_indices(len(coords), len(coords), 1)
    return float(np.corrcoef(r[iu[0], iu[1]], d[iu[0], iu[1]])[0, 1])


def test_swaps_recover_a_scrambled_smooth_map(planted):
    resp, true, scrambled = planted
    sl_true, sl_scr = local_sl(resp, true), local_sl(resp, scrambled)
    assert sl_true < 0.1 and sl_scr > 0.45
    new, hist = swap_optimize(resp, scrambled, steps=300, windows_per_step=32, pairs_per_window=32,
                              seed=0, progress=False, eval_every=100)
    # the fixed evaluation windows: SL_rel falls a lot
    assert hist["eval_sl"][0] > 0.45 and hist["eval_sl"][-1] < 0.25
    assert hist["total_accepted"] > 1000 and len(hist["sl"]) == 300
    assert np.mean(hist["sl"][-50:]) < np.mean(hist["sl"][:5]) - 0.2
    # smoothness mostly recovered: local SL_rel regains > 60 % of the way to the unscrambled map,
    # and the global correlation between response similarity and proximity comes back
    sl_new = local_sl(resp, new)
    assert (sl_scr - sl_new) / (sl_scr - sl_true) > 0.6
    g_true, g_scr, g_new = (global_corr(resp, p.coordinates) for p in (true, scrambled, new))
    assert abs(g_scr) < 0.05 and g_new > 0.2 * g_true
    # the positions are a permutation of the old ones; neighborhoods point at the units now in
    # their windows
    assert np.array_equal(np.sort(new.coordinates, 0), np.sort(scrambled.coordinates, 0))
    pts = new.coordinates[new.neighborhood_indices]
    assert ((pts.max(1) - pts.min(1)) <= WIDTH + 1e-5).all()
    # the loss on the new neighborhoods agrees with the swap's own bookkeeping
    nb = torch.tensor(new.neighborhood_indices[:50])
    direct = np.mean([spatial_loss(resp[:, i], torch.tensor(new.coordinates)[i]).item() for i in nb])
    assert direct < 0.3


def test_delta_of_one_swap_is_exact():
    g = torch.Generator().manual_seed(0)
    m = 15
    xn = normalize_responses(torch.randn(40, m, generator=g))
    xy = torch.rand(m, 2, generator=g) * 3
    r = (xn.T @ xn)[None]
    d = proximity(xy)[None]
    sl0, den = sl_rel_from_matrices(r, d)
    r0, d0 = r.clone(), d.clone()
    r0.diagonal(dim1=1, dim2=2).zero_()
    d0.diagonal(dim1=1, dim2=2).zero_()
    a = torch.tensor([[0, 3, 7, 14]])
    b = torch.tensor([[5, 2, 8, 0]])
    pred = proposal_delta_sl(r0, d0, den, a, b)[0]
    for q in range(4):
        perm = torch.arange(m)
        perm[a[0, q]], perm[b[0, q]] = b[0, q], a[0, q]
        new = spatial_loss(xn[:, perm] * 3.0 + 1.0, xy).item()  # units swapped between the two places
        assert new - sl0.item() == pytest.approx(pred[q].item(), abs=1e-5)


def test_swap_errors(planted):
    resp, _, scrambled = planted
    with pytest.raises(PositionsError, match="planted.*575 units.*576"):
        swap_optimize(resp[:, :575], scrambled, steps=1, progress=False)
    bad = resp.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(PositionsError, match="planted.*NaN"):
        swap_optimize(bad, scrambled, steps=1, progress=False)
    same, hist = swap_optimize(resp, scrambled, steps=0, progress=False)
    assert np.array_equal(same.coordinates, scrambled.coordinates) and hist["total_accepted"] == 0


def test_record_probe_responses_and_plots(tmp_path, planted):
    torch.manual_seed(0)
    model = r3d_18(width=4)
    clips = [torch.randn(3, 3, 4, 32, 32) for _ in range(2)]
    out = record_probe_responses(model, clips, ["layer2.1", "layer3.0"], device="cpu")
    assert out["layer2.1"].shape == (6, 8 * 8 * 8) and out["layer3.0"].shape == (6, 16 * 4 * 4)
    assert model.training  # mode restored
    _, blocks = model.eval().forward_blocks(clips[0], ["layer2.1"], stop_early=True)
    assert torch.allclose(out["layer2.1"][:3], blocks["layer2.1"].mean(2).flatten(1), atol=1e-5)

    from stdann.reports.figures.positions import (
        plot_swap_comparison,
        save_positions_plot,
    )

    resp, true, scrambled = planted
    new, hist = swap_optimize(resp, scrambled, steps=20, progress=False)
    p1 = plot_swap_comparison(scrambled, new, tmp_path / "swap.png", history=hist)
    p2 = save_positions_plot(true, tmp_path / "pos.png", values=resp[0].numpy())
    for p in (p1, p2):
        assert p.is_file() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

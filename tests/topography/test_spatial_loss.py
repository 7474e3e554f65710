"""Spatial loss against an independent numpy implementation (loop over pairs)."""

import itertools

import numpy as np
import pytest
import torch

from stdann.topography import LayerPositions, PositionsError, SpatialLoss, batched_spatial_loss, spatial_loss


def np_loss(x: np.ndarray, p: np.ndarray, kind: str = "rel") -> float:
    s, m = x.shape
    rs, ds = [], []
    for i, j in itertools.combinations(range(m), 2):
        a, b = x[:, i], x[:, j]
        if a.std() == 0 or b.std() == 0:
            r = 0.0
        else:
            r = float(np.sum((a - a.mean()) * (b - b.mean())) / np.sqrt(np.sum((a - a.mean()) ** 2) * np.sum((b - b.mean()) ** 2)))
        rs.append(r)
        ds.append(1.0 / (np.hypot(*(p[i] - p[j])) + 1.0))
    rs, ds = np.array(rs), np.array(ds)
    if kind == "abs":
        return float(np.mean(np.abs(rs - ds)))
    return float((1 - np.corrcoef(rs, ds)[0, 1]) / 2)


def smooth_responses(p: np.ndarray, s: int, rng, noise=0.2) -> np.ndarray:
    k = rng.normal(0, 1.0, (s, 3, 2))
    ph = rng.uniform(0, 2 * np.pi, (s, 3))
    return np.sin(np.einsum("skd,md->skm", k, p) + ph[:, :, None]).sum(1) + noise * rng.normal(size=(s, len(p)))


@pytest.mark.parametrize("structured", [False, True])
@pytest.mark.parametrize("kind", ["rel", "abs"])
def test_matches_numpy(structured, kind):
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 3, (20, 2))
    x = smooth_responses(p, 40, rng) if structured else rng.normal(size=(40, 20))
    got = spatial_loss(torch.tensor(x, dtype=torch.float64).float(), torch.tensor(p).float(), kind).item()
    assert got == pytest.approx(np_loss(x, p, kind), abs=2e-5)
    if structured and kind == "rel":
        assert got < 0.35  # smooth map: clearly below the unstructured value


def test_zero_for_distance_ordered_map():
    # responses whose sample correlation matrix is exactly 0.5*D + 0.5*I (D = 1/(d+1) is a positive
    # definite kernel), so r_ij = 0.5*D_ij for every pair: corr(r, D) = 1.
    rng = np.random.default_rng(0)
    m, s = 30, 80
    p = rng.uniform(0, 4, (m, 2))
    d = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1))
    c = 0.5 / (d + 1) + 0.5 * np.eye(m)
    z = rng.normal(size=(s, m))
    z -= z.mean(0)
    q, _ = np.linalg.qr(z)  # orthonormal, centred columns
    x = q @ np.linalg.cholesky(c).T
    assert np.allclose(np.corrcoef(x.T), c, atol=1e-8)
    assert spatial_loss(torch.tensor(x).float(), torch.tensor(p).float()).item() == pytest.approx(0.0, abs=1e-5)


def test_half_for_unstructured_responses():
    rng = np.random.default_rng(3)
    vals = []
    for _ in range(20):
        p = torch.tensor(rng.uniform(0, 3, (50, 2))).float()
        vals.append(spatial_loss(torch.tensor(rng.normal(size=(200, 50))).float(), p).item())
    assert np.mean(vals) == pytest.approx(0.5, abs=0.02)


def test_zero_variance_units():
    rng = np.random.default_rng(4)
    p = rng.uniform(0, 3, (12, 2))
    x = rng.normal(size=(30, 12))
    x[:, 3] = 0.0  # silent unit
    x[:, 7] = 0.37  # constant, not exactly representable
    for kind in ("rel", "abs"):
        xt = torch.tensor(x).float().requires_grad_(True)
        loss = spatial_loss(xt, torch.tensor(p).float(), kind)
        assert loss.item() == pytest.approx(np_loss(x, p, kind), abs=2e-5)
        loss.backward()
        assert torch.isfinite(xt.grad).all()
    # all units constant: corr undefined -> 0 -> SL_rel = 1/2, gradient finite
    xt = torch.ones(10, 5, requires_grad=True)
    loss = spatial_loss(xt, torch.rand(5, 2))
    assert loss.item() == pytest.approx(0.5)
    loss.backward()
    assert torch.isfinite(xt.grad).all()


@pytest.mark.parametrize("kind", ["rel", "abs"])
def test_batched_equals_loop(kind):
    g = torch.Generator().manual_seed(0)
    resp = torch.randn(24, 300, generator=g)
    coords = torch.rand(300, 2, generator=g) * 5
    nbhd = torch.stack([torch.randperm(300, generator=g)[:17] for _ in range(6)])
    batched = batched_spatial_loss(resp, coords, nbhd, kind)
    loop = torch.stack([spatial_loss(resp[:, nb], coords[nb], kind) for nb in nbhd])
    assert batched.shape == (6,)
    assert torch.allclose(batched, loop, atol=1e-6)


def test_gradients_to_responses_not_positions():
    resp = torch.randn(16, 20, requires_grad=True)
    pos = (torch.rand(20, 2) * 3).requires_grad_(True)
    loss = spatial_loss(resp, pos)
    loss.backward()
    assert resp.grad is not None and resp.grad.abs().sum() > 0
    assert pos.grad is None
    nb = torch.arange(20).reshape(2, 10)
    batched_spatial_loss(resp, pos, nb).sum().backward()
    assert pos.grad is None


def _positions(name, dims, seed=0):
    c, h, w = dims
    n = c * h * w
    rng = np.random.default_rng(seed)
    return LayerPositions(name, dims, rng.uniform(0, 2, (n, 2)), rng.integers(0, n, (50, 10)), 0.5, 2.0)


def test_module_through_conv_net_and_errors():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 3, padding=1), torch.nn.ReLU())
    x = torch.randn(6, 3, 2, 5, 5)
    pos = {"blk": _positions("blk", (4, 5, 5))}
    loss_fn = SpatialLoss(pos, kind="rel", neighborhoods_per_step=3)
    g = torch.Generator().manual_seed(0)
    out = loss_fn({"blk": net(x)}, g)
    assert set(out) == {"blk"} and out["blk"].ndim == 0 and 0 <= out["blk"].item() <= 1
    out["blk"].backward()
    assert net[0].weight.grad.abs().sum() > 0
    # same generator seed -> same neighborhoods -> same value
    y = net(x).detach()
    a = loss_fn({"blk": y}, torch.Generator().manual_seed(5))
    b = loss_fn({"blk": y}, torch.Generator().manual_seed(5))
    assert a["blk"].item() == b["blk"].item()
    # bf16 autocast: float32 inside, finite
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v = loss_fn({"blk": net(x)}, g)["blk"]
    assert v.dtype == torch.float32 and torch.isfinite(v)
    # errors
    with pytest.raises(PositionsError, match="blk.*100 units.*positions"):
        loss_fn({"blk": torch.randn(6, 4, 2, 5, 5).repeat(1, 1, 1, 2, 2)}, g)
    bad = net(x).detach().clone()
    bad[:, :, :, 0, 0] = float("nan")
    pos_all = {"blk": LayerPositions("blk", (4, 5, 5), pos["blk"].coordinates, np.tile(np.arange(100), (3, 1)), 0.5, 2.0)}
    with pytest.raises(PositionsError, match="blk.*NaN"):
        SpatialLoss(pos_all)({"blk": bad}, g)
    with pytest.raises(KeyError, match="other"):
        SpatialLoss({"other": pos["blk"]})({"blk": y}, g)
    with pytest.raises(ValueError, match="kind"):
        SpatialLoss(pos, kind="l2")


def test_module_equals_batched_on_time_averaged_responses():
    g = torch.Generator().manual_seed(1)
    y = torch.randn(5, 3, 4, 6, 7, generator=g).relu()
    pos = _positions("blk", (3, 6, 7))
    loss_fn = SpatialLoss({"blk": pos}, neighborhoods_per_step=4)
    got = loss_fn({"blk": y}, torch.Generator().manual_seed(9))["blk"]
    nb = loss_fn.sample_neighborhoods("blk", y.device, torch.Generator().manual_seed(9))
    resp = y.mean(2).flatten(1)  # row-major (C, H, W)
    ref = batched_spatial_loss(resp, torch.tensor(pos.coordinates), nb).mean()
    assert got.item() == pytest.approx(ref.item(), abs=1e-6)
    # channels_last_3d block outputs give the same value
    y_cl = y.contiguous(memory_format=torch.channels_last_3d)
    assert loss_fn({"blk": y_cl}, torch.Generator().manual_seed(9))["blk"].item() == pytest.approx(got.item(), abs=1e-6)

"""A synthetic sheet with known direction columns plus a population offset: the analysis of one
block (ephys.analyze.analyze_block) recovers the columns and reports the offset.

Construction. N units at uniform random positions on an 8Λ × 8Λ sheet (Λ = 1 mm). Unit u prefers
θ_u = arg z(x_u) + ε_u with the planted field

    z(x, y) = sin(2πx/Λ) + i·sin(2πy/Λ) + b,   b = 0.5·e^{i·225°},

and ε_u ~ N(0, 20°) unit-level scatter; its tuning curve is a von Mises of κ = 2 round θ_u at the
16 test directions. z has exactly one spectral ring, |f| = 1/Λ, and its zeros are known in
closed form: sin(kx) = −Re b and sin(ky) = −Im b, two solutions each per period, so 4 zeros per
Λ² (256 on the sheet), with charge sign(cos kx · cos ky). b shifts every direction towards 225°
(the mean direction of arg z is 225° exactly by the symmetry x ↔ y of the lattice, which
reflects directions about the 45°–225° line) without removing a single zero (|Re b|, |Im b| < 1).
"""

import numpy as np
import pytest

from stdann.ephys.analyze import analyze_block
from stdann.ephys.config import EphysConfig
from stdann.ephys.stimuli import directions
from stdann.topography.positions import LayerPositions

LAM, SIDE, N, SCATTER_DEG, KAPPA = 1.0, 8.0, 20000, 20.0, 2.0
OFFSET = 0.5 * np.exp(1j * np.deg2rad(225.0))
K = 2 * np.pi / LAM


def planted(xy):
    return np.sin(K * xy[:, 0]) + 1j * np.sin(K * xy[:, 1]) + OFFSET


def planted_zeros() -> np.ndarray:
    """(n, 3): x, y, charge of every zero of z on the sheet (closed form)."""
    def roots(c):  # sin(k t) = c on [0, SIDE)
        a = np.arcsin(c) / K
        base = np.r_[a, LAM / 2 - a] % LAM
        return np.sort((base[None, :] + LAM * np.arange(int(SIDE / LAM))[:, None]).ravel())

    xs, ys = roots(-OFFSET.real), roots(-OFFSET.imag)
    X, Y = np.meshgrid(xs, ys)
    q = np.sign(np.cos(K * X) * np.cos(K * Y))
    return np.stack([X.ravel(), Y.ravel(), q.ravel()], axis=1)


@pytest.fixture(scope="module")
def synthetic():
    rng = np.random.default_rng(0)
    xy = rng.random((N, 2)) * SIDE
    theta = np.angle(planted(xy)) + np.deg2rad(SCATTER_DEG) * rng.standard_normal(N)
    dirs = np.deg2rad(directions(16))
    curves = np.exp(KAPPA * np.cos(dirs[:, None] - theta[None, :]))  # (directions, units)
    pos = LayerPositions("synthetic", (N, 1, 1), xy, np.zeros((0, 2), dtype=np.int64), 1.0, SIDE)
    ecfg = EphysConfig(n_directions=16, smoothness_units=2000)
    s, d = analyze_block(curves[:, None, None, :], pos, ecfg)
    return s, d, theta


def test_offset_is_reported(synthetic):
    s, _, _ = synthetic
    bias = s["direction_bias"]
    # truth from the construction: R of arg z over a fine grid of one period (the field is Λ-periodic),
    # times E[e^{iε}] = exp(−σ²/2) for the Gaussian scatter
    g = (np.arange(400) + 0.5) / 400 * LAM
    gx, gy = np.meshgrid(g, g)
    mean = np.exp(1j * np.angle(planted(np.stack([gx.ravel(), gy.ravel()], 1)))).mean()
    r_true = abs(mean) * np.exp(-np.deg2rad(SCATTER_DEG) ** 2 / 2)
    assert np.rad2deg(np.angle(mean)) % 360 == pytest.approx(225.0, abs=1e-6)  # the symmetry argument
    # sampling error of N = 20,000 units: s.d. of R and of the mean direction ≈ 1/sqrt(2N) and
    # 1/(R sqrt(2N)) rad, i.e. 0.005 and 1°; tolerances are 5 s.d.
    assert bias["resultant_length"] == pytest.approx(r_true, abs=0.025)
    assert bias["mean_direction_deg"] == pytest.approx(225.0, abs=5.0)
    assert bias["above_chance"] and bias["n_channels"] == N
    assert s["maps"]["mean_removed_map_shown"]


def test_columns_are_recovered(synthetic):
    s, d, _ = synthetic
    maps = s["maps"]
    # the kernel follows the columns, not the unit spacing nor a retinotopic tile: between the fine
    # kernel (2 unit spacings = 0.11 mm) and Λ/4 of the planted spacing
    assert maps["fine_kernel_fwhm_mm"] < maps["kernel_fwhm_mm"] <= 0.25 * LAM * 1.05
    # Λ: the planted field has one spectral ring at 1/Λ; what moves the measurement is the
    # unit-vector normalisation (harmonics at ≥ 3/Λ, attenuated by the Λ/4 kernel to ≈ 1% of the
    # power), the unit-level scatter left after smoothing and the Hann taper's leakage over 8
    # periods (±1/(8Λ), symmetric about the ring): together well inside 10%
    assert s["column_spacing_mm"] == pytest.approx(LAM, rel=0.10)
    # pinwheels: every planted zero farther than one kernel FWHM + 2 pixels from the sheet's edge is
    # found (the kernel is truncated there and the outermost plaquettes are incomplete); none is
    # invented. Each found pinwheel sits within Λ/5 of a planted zero of the same charge (zeros of
    # the planted field are ≥ 0.38 Λ apart; the mean removal moves a zero by about
    # |mean| × kernel ≈ 0.1 Λ).
    truth = planted_zeros()
    assert len(truth) == 4 * (SIDE / LAM) ** 2
    margin = maps["kernel_fwhm_mm"] + 2 * maps["pixel_mm"]
    inner = truth[(truth[:, :2].min(1) > margin) & (truth[:, :2].max(1) < SIDE - margin)]
    found = d["pinwheels"]
    n = s["pinwheels"]["n_pinwheels"]
    assert len(found) == n and len(inner) <= n <= len(truth)
    dist = np.hypot(found[:, None, 0] - truth[None, :, 0], found[:, None, 1] - truth[None, :, 1])
    nearest = dist.argmin(1)
    assert (dist.min(1) < LAM / 5).all()
    assert (found[:, 2] == truth[nearest, 2]).all()
    assert len(np.unique(nearest)) == n  # one planted zero per found pinwheel
    # the column structure is real: the map is ordered against shuffled positions (close pairs differ
    # by about half as much as shuffled ones: index ≈ 0.5 here)
    assert s["map_order"]["verdict"] == "ordered" and s["smoothness"] > 0.3


def test_salt_and_pepper_keeps_the_fine_kernel():
    # no columns: each unit's direction is random. The kernel rule must not grow the kernel
    # (white noise smoothed by a Gaussian has Λ ≈ 3 FWHM, so Λ/4 < FWHM), and no order is found.
    rng = np.random.default_rng(1)
    n = 4000
    xy = rng.random((n, 2)) * SIDE
    theta = rng.random(n) * 2 * np.pi
    dirs = np.deg2rad(directions(16))
    curves = np.exp(KAPPA * np.cos(dirs[:, None] - theta[None, :]))
    pos = LayerPositions("salt", (n, 1, 1), xy, np.zeros((0, 2), dtype=np.int64), 1.0, SIDE)
    s, _ = analyze_block(curves[:, None, None, :], pos, EphysConfig(n_directions=16, smoothness_units=2000))
    assert s["maps"]["kernel_fwhm_mm"] == pytest.approx(s["maps"]["fine_kernel_fwhm_mm"])
    assert s["map_order"]["verdict"] == "not_ordered"
    assert not s["direction_bias"]["above_chance"] and not s["maps"]["mean_removed_map_shown"]

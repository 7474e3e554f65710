"""Pinwheels: planted pinwheels and charges, random-field densities (π and the broad-band formula), the exact CI, fracture index closed forms."""

import numpy as np
import pytest
from scipy import stats

from stdann.ephys.maps import column_spacing, gaussian_random_map, MapError
from stdann.ephys.pinwheels import find_pinwheels, map_span, pinwheel_axial_concentration, pinwheel_density, pinwheel_density_ci, pinwheel_fracture_summary, pinwheel_stats


def planted(shape, px, pins):
    """z = Π (w − w_k) for charge +1, Π conj(w − w_k) for −1, w = x + iy, x along columns."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]] * px
    w = xx + 1j * yy
    z = np.ones(shape, dtype=complex)
    for x, y, q in pins:
        f = w - (x + 1j * y)
        z *= f if q > 0 else np.conj(f)
    return z / np.abs(z).max()


def test_planted_pinwheels_positions_and_charges():
    px = 0.05
    pins = [(0.513, 0.771, 1), (1.87, 0.42, -1), (1.21, 1.66, 1), (0.33, 1.93, -1), (2.41, 2.05, -1)]
    z = planted((60, 60), px, pins)
    found = find_pinwheels(z, px)
    assert found.shape == (len(pins), 3)
    for x, y, q in pins:
        d = np.hypot(found[:, 0] - x, found[:, 1] - y)
        k = np.argmin(d)
        assert d[k] < px, (x, y, found)  # within a pixel
        assert found[k, 2] == q


def test_charge_follows_direction_convention():
    # arg z = atan2(y, x) turning counter-clockwise in (x = column, y = row): charge +1
    z = planted((11, 11), 1.0, [(5.3, 5.4, 1)])
    assert find_pinwheels(z, 1.0)[0, 2] == 1
    assert find_pinwheels(np.conj(z), 1.0)[0, 2] == -1


def test_narrow_band_random_map_has_density_pi():
    # Berry & Dennis 2000: zeros per area = <k^2>/(4π) for an isotropic complex Gaussian field; with
    # Λ = 2π/<k> the density per Λ² is π<k^2>/<k>^2 → π for a narrow band (Wolf & Geisel 1998).
    # A 512² field with Λ = 20 px holds ~2,000 pinwheels; their count fluctuates by ≲2% (pinwheel
    # counts are sub-Poissonian), Λ is measured to ~1% and a few close pairs are missed at
    # 20 px per Λ, so 6% is a safe tolerance on the density.
    shape, lam_px, bw = (512, 512), 20.0, 0.004
    z = gaussian_random_map(shape, lam_px, bw, seed=3)
    f = np.hypot(np.fft.fftfreq(shape[0])[:, None], np.fft.fftfreq(shape[1])[None, :])
    p = np.exp(-((f - 1 / lam_px) ** 2) / bw**2)
    p[0, 0] = 0
    expected = np.pi * (p * f**2).sum() / p.sum() / ((p * f).sum() / p.sum()) ** 2
    assert expected == pytest.approx(np.pi, rel=0.01)
    assert column_spacing(z, 1.0, taper=False) == pytest.approx(lam_px, rel=0.02)
    dens = pinwheel_density(z, 1.0, taper=False)
    assert dens == pytest.approx(np.pi, rel=0.06)
    # tapered spectrum (default, for non-periodic maps) gives nearly the same Λ
    assert column_spacing(z, 1.0) == pytest.approx(lam_px, rel=0.04)
    st = pinwheel_stats(z, 1.0, taper=False)
    assert abs(st["n_plus"] - st["n_minus"]) <= 0.1 * st["n_pinwheels"]


def expected_density(shape, lam_px, bw):
    f = np.hypot(np.fft.fftfreq(shape[0])[:, None], np.fft.fftfreq(shape[1])[None, :])
    p = np.exp(-((f - 1 / lam_px) ** 2) / bw**2)  # power = amplitude²
    p[0, 0] = 0
    return np.pi * (p * f**2).sum() / p.sum() / ((p * f).sum() / p.sum()) ** 2


def test_broad_band_random_map_has_more_than_pi():
    shape = (512, 512)
    for bw in (0.03, 0.05):
        exp = expected_density(shape, 20.0, bw)
        dens = pinwheel_density(gaussian_random_map(shape, 20.0, bw, seed=4), 1.0, taper=False)
        assert exp > 1.08 * np.pi
        assert dens > 1.05 * np.pi
        assert dens == pytest.approx(exp, rel=0.08)


def test_pinwheel_density_ci_is_the_exact_poisson_interval_scaled():
    lo, hi = pinwheel_density_ci(10, area_mm2=50.0, spacing_mm=2.0)
    scale = 4.0 / 50.0
    assert lo == pytest.approx(stats.chi2.ppf(0.025, 20) / 2 * scale)
    assert hi == pytest.approx(stats.chi2.ppf(0.975, 22) / 2 * scale)
    assert lo < 10 * scale < hi
    assert pinwheel_density_ci(0, 50.0, 2.0)[0] == 0.0
    # coverage of the count interval on Poisson counts (exact interval: at least the nominal level)
    rng = np.random.default_rng(0)
    counts = rng.poisson(7.3, 4000)
    cover = np.mean([(lambda b: b[0] <= 7.3 <= b[1])(pinwheel_density_ci(int(c), 1.0, 1.0)) for c in counts])
    assert cover >= 0.95
    with pytest.raises(MapError):
        pinwheel_density_ci(-1, 1.0, 1.0)


def test_map_span_counts_column_spacings():
    assert map_span(49.0, 2.0) == pytest.approx(3.5)


def _grid(n=81, px=0.05):
    y, x = np.mgrid[0:n, 0:n] * px
    return x - 40 * px - 0.013, y - 40 * px + 0.021, px  # the zero off the grid points


@pytest.mark.parametrize("a, b", [(1.0, 1.0), (3.0, 1.0), (1.0, 4.0), (2.0, 0.5)])
def test_fracture_index_of_a_linear_pinwheel_is_the_closed_form(a, b):
    # z = a·x + i·b·y: on a circle, |<e^{2i arg z}>| = |a - b| / (a + b); bilinear interpolation is exact here
    x, y, px = _grid()
    for charge in (1, -1):
        z = a * x + 1j * charge * b * y
        pw = find_pinwheels(z, px)
        assert pw.shape == (1, 3) and pw[0, 2] == charge
        got = pinwheel_axial_concentration(z, px, pw, radius_mm=0.6, n_samples=720)
        assert got[0] == pytest.approx(abs(a - b) / (a + b), abs=1e-3)


def test_fracture_index_tells_a_pinwheel_on_a_fracture_from_one_where_all_directions_meet():
    x, y, px = _grid()
    fracture = np.tanh(x / 0.05) + 1j * 0.3 * y  # 0° domain against a 180° one, a thin winding between
    centre = x + 1j * y
    idx = {name: pinwheel_axial_concentration(z, px, find_pinwheels(z, px), radius_mm=0.6)[0]
           for name, z in (("fracture", fracture), ("centre", centre))}
    assert idx["fracture"] > 0.8 and idx["centre"] < 1e-6
    s = pinwheel_fracture_summary(fracture, px, spacing_mm=3.6)  # circle of Λ/6 = 0.6 mm
    assert s["n_measured"] == 1 and s["radius_mm"] == pytest.approx(0.6)
    assert s["median"] == pytest.approx(idx["fracture"]) and s["fraction_above_half"] == 1.0


def test_fracture_index_is_nan_where_the_circle_leaves_the_map_or_its_mask():
    x, y, px = _grid()
    z = x + 1j * y
    pw = find_pinwheels(z, px)
    assert np.isnan(pinwheel_axial_concentration(z, px, pw, radius_mm=2.5)).all()  # 2.5 mm > half the 4 mm map
    mask = np.ones(z.shape, bool)
    mask[40, 52] = False  # one pixel 0.6 mm to the right of the pinwheel
    assert np.isnan(pinwheel_axial_concentration(z, px, pw, radius_mm=0.6, mask=mask)).all()
    assert np.isfinite(pinwheel_axial_concentration(z, px, pw, radius_mm=0.3, mask=mask)).all()
    s = pinwheel_fracture_summary(z, px, spacing_mm=15.0)
    assert s["n_measured"] == 0 and np.isnan(s["median"])
    with pytest.raises(MapError, match="radius"):
        pinwheel_axial_concentration(z, px, pw, radius_mm=0.0)

"""Maps: planted pinwheels, random-field pinwheel density, column spacing, smoothness, controls."""

import numpy as np
import pytest
from scipy import stats

from stdann.ephys.maps import (
    MapError,
    axial_map,
    column_spacing,
    direction_map,
    find_pinwheels,
    gaussian_random_map,
    map_span,
    pinwheel_density,
    pinwheel_axial_concentration,
    pinwheel_density_ci,
    pinwheel_fracture_summary,
    pinwheel_stats,
    pinwheels_on_sheet,
    random_map_same_spectrum,
    smoothness_curve,
    smoothness_index,
)


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


def test_random_map_same_spectrum_keeps_power():
    z = gaussian_random_map((64, 64), 10.0, 0.01, seed=0)
    r = random_map_same_spectrum(z, seed=1)
    assert np.allclose(np.abs(np.fft.fft2(r)), np.abs(np.fft.fft2(z)))
    assert not np.allclose(r, z)


def test_direction_map_from_units_recovers_linear_gradient_and_pinwheel():
    rng = np.random.default_rng(0)
    xy = rng.random((20000, 2)) * 4.0  # mm
    # planted pinwheel at (2, 2): preference = angle around it (charge +1)
    pref = np.rad2deg(np.arctan2(xy[:, 1] - 2.0, xy[:, 0] - 2.0)) % 360
    m = direction_map(xy, pref, np.ones(len(pref)), pixel_size_mm=0.05, window_mm=0.2, extent=(0, 4, 0, 4))
    assert m.z.shape == (80, 80) and m.valid.all()
    pw = pinwheels_on_sheet(find_pinwheels(m.z, m.pixel_size_mm, m.valid), m)
    assert pw.shape[0] == 1 and pw[0, 2] == 1
    assert np.hypot(pw[0, 0] - 2.0, pw[0, 1] - 2.0) < 0.05  # within a map pixel
    a = axial_map(xy, pref, np.ones(len(pref)), 0.05, 0.2, (0, 4, 0, 4))
    assert find_pinwheels(a.z, 0.05).shape[0] >= 1  # a double-charge zero splits into near ones


def test_bad_maps():
    z = gaussian_random_map((32, 32), 8.0, 0.01)
    z[3, 3] = np.nan
    for fn in (column_spacing, find_pinwheels, pinwheel_density):
        with pytest.raises(MapError, match="NaN"):
            fn(z, 1.0)
        with pytest.raises(MapError, match="zero magnitude"):
            fn(np.zeros((8, 8), complex), 1.0)
    with pytest.raises(MapError, match="complex"):
        column_spacing(np.ones((8, 8)), 1.0)
    # masked plaquettes are excluded and counted
    z = gaussian_random_map((64, 64), 8.0, 0.01)
    mask = np.ones(z.shape, bool)
    mask[:, :32] = False
    st = pinwheel_stats(z, 1.0, mask)
    assert st["n_plaquettes_excluded"] == 63 * 63 - 63 * 31
    assert (find_pinwheels(z, 1.0, mask)[:, 0] > 31).all()


def test_smoothness_curve_and_shuffle_control():
    rng = np.random.default_rng(0)
    xy = rng.random((2000, 2)) * 5.0
    pref = (xy[:, 0] * 72.0) % 360  # smooth: 360° per 5 mm along x
    c = smoothness_curve(xy, pref, np.linspace(0, 2.5, 11), seed=0)
    assert c["mean_delta"][0] < 20 and c["mean_delta"][-1] > c["mean_delta"][0]
    assert np.allclose(c["shuffled_delta"], 90.0, atol=6.0)  # chance level
    s = smoothness_index(xy, pref, 0.25)
    assert s["index"] > 0.8
    s0 = smoothness_index(xy, rng.random(2000) * 360, 0.25)
    assert abs(s0["index"]) < 0.1


def test_smoothness_permutation_test_separates_ordered_from_random_maps():
    from stdann.ephys.maps import smoothness_index

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 10, size=(800, 2))
    ordered = np.degrees(np.arctan2(np.sin(xy[:, 0]), np.cos(xy[:, 1]))) % 360  # smooth in space
    random = rng.uniform(0, 360, 800)
    s_ord = smoothness_index(xy, ordered, short_mm=0.5)
    s_rnd = smoothness_index(xy, random, short_mm=0.5)
    assert s_ord["index"] > 0.5 and s_ord["p_value"] <= 1 / 51 + 1e-12
    assert abs(s_rnd["index"]) < 0.1 and s_rnd["p_value"] > 0.05


def test_unit_spacing_and_remove_mean():
    from stdann.ephys.maps import remove_mean, sheet_map, unit_spacing

    assert unit_spacing(400, (0, 2, 0, 8)) == pytest.approx(0.2)  # sqrt(16 mm² / 400)
    with pytest.raises(MapError):
        unit_spacing(0, (0, 1, 0, 1))
    rng = np.random.default_rng(0)
    xy = rng.random((500, 2)) * [4.0, 1.0]
    m = sheet_map(xy, 0.3 + np.exp(1j * 2 * np.pi * xy[:, 0]), 0.05, 0.2, (0, 4, 0, 1))
    z = remove_mean(m)
    assert abs(z[m.valid].mean()) < 1e-12 and (z[~m.valid] == 0).all()
    assert np.allclose(z[m.valid], m.z[m.valid] - m.z[m.valid].mean())


def test_choose_kernel_follows_planted_columns():
    # a noiseless plane wave of directions, θ = 2π x / Λ: the fine map measures Λ and the kernel is Λ/4
    from stdann.ephys.maps import FINE_KERNEL_UNIT_SPACINGS, choose_kernel

    lam, side = 1.0, 6.0
    rng = np.random.default_rng(1)
    xy = rng.random((8000, 2)) * side
    k = choose_kernel(xy, np.exp(2j * np.pi * xy[:, 0] / lam), (0, side, 0, side))
    assert k["unit_spacing_mm"] == pytest.approx(side / np.sqrt(8000))
    assert k["fine_kernel_fwhm_mm"] == pytest.approx(FINE_KERNEL_UNIT_SPACINGS * k["unit_spacing_mm"])
    # one spectral line at 1/Λ, broadened by the Hann taper over 6 periods: within 5%
    assert k["fine_column_spacing_mm"] == pytest.approx(lam, rel=0.05)
    assert k["kernel_fwhm_mm"] == pytest.approx(k["fine_column_spacing_mm"] / 4)


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

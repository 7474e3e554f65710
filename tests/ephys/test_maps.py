"""Maps of a sheet: unit maps, column spacing, the kernel choice, random-map controls, bad input."""

import numpy as np
import pytest

from stdann.ephys.maps import axial_map, column_spacing, direction_map, gaussian_random_map, MapError, random_map_same_spectrum
from stdann.ephys.pinwheels import find_pinwheels, pinwheel_density, pinwheel_stats, pinwheels_on_sheet


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

"""Tuning metrics against closed forms (von Mises curves) and bad-input handling."""

import numpy as np
import pytest
from scipy import stats
from scipy.special import iv

from stdann.ephys.tuning import (
    TuningError,
    direction_bandwidth,
    fraction_ci,
    median_ci,
    median_ci_ranks,
    pattern_component_index,
    responsive_mask,
    curves_at,
    direction_agreement,
    ranked_conditions,
    select_best_condition,
    tuning_metrics,
)

D = 16
DIRS = np.arange(D) * 360.0 / D


def vm(kappa, mu_deg, dirs=DIRS):
    return np.exp(kappa * np.cos(np.deg2rad(dirs - mu_deg)))


@pytest.mark.parametrize("kappa", [0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize("mu", [0.0, 90.0, 202.5, 337.5])
def test_von_mises_closed_forms(kappa, mu):
    m = tuning_metrics(vm(kappa, mu)[None], DIRS)
    # discrete sums equal the continuous ones up to aliasing terms I_{n+16}(κ) < 1e-8
    assert m["preferred_direction"][0] == pytest.approx(mu, abs=1e-6)
    assert m["dsi"][0] == pytest.approx(np.tanh(kappa), rel=1e-9)
    assert m["di"][0] == pytest.approx(1 - np.exp(-2 * kappa), rel=1e-9)
    assert m["cv_direction"][0] == pytest.approx(1 - iv(1, kappa) / iv(0, kappa), rel=1e-6)
    assert m["cv_axial"][0] == pytest.approx(1 - iv(2, kappa) / iv(0, kappa), rel=1e-6)
    assert m["axial_ratio"][0] == pytest.approx(iv(2, kappa) / iv(1, kappa), rel=1e-6)
    assert m["dsi"][0] == pytest.approx(m["di"][0] / (2 - m["di"][0]))


def test_bidirectional_axial_ratio_and_preference_off_grid():
    a, b, k, mu = 1.0, 0.6, 2.0, 30.0  # preferred 30° is off the 22.5° grid
    c = a * vm(k, mu) + b * vm(k, mu + 180)
    m = tuning_metrics(c[None], DIRS)
    assert m["axial_ratio"][0] == pytest.approx((a + b) * iv(2, k) / ((a - b) * iv(1, k)), rel=1e-6)
    assert m["preferred_direction"][0] == pytest.approx(mu, abs=1e-6)
    pure_axis = vm(k, mu) + vm(k, mu + 180)
    assert np.isinf(tuning_metrics(pure_axis[None], DIRS)["axial_ratio"][0])


def test_vectorised_many_units_and_wraparound():
    mus = np.array([350.0, 10.0, 180.0])
    c = np.stack([vm(1.5, mu, DIRS) for mu in mus])
    m = tuning_metrics(c, DIRS)
    assert np.allclose(m["preferred_direction"], mus, atol=1e-6)
    assert np.all((m["preferred_direction"] >= 0) & (m["preferred_direction"] < 360))


def test_baseline_subtraction():
    c = vm(1.0, 0.0) + 5.0
    m0 = tuning_metrics(c[None], DIRS)
    m1 = tuning_metrics(c[None], DIRS, baseline=5.0)
    assert m1["dsi"][0] == pytest.approx(np.tanh(1.0), rel=1e-9)
    assert m0["dsi"][0] < m1["dsi"][0]


def test_bandwidth_von_mises():
    dirs = np.arange(360) * 1.0
    for k in (1.0, 2.0, 4.0):
        expected = 2 * np.rad2deg(np.arccos(np.log(np.cosh(k)) / k))
        bw = direction_bandwidth(vm(k, 100.0, dirs)[None], dirs)[0]
        assert bw == pytest.approx(expected, abs=0.5)
    # coarse sampling: still within a few degrees
    bw16 = direction_bandwidth(vm(2.0, 0.0)[None], DIRS)[0]
    assert bw16 == pytest.approx(2 * np.rad2deg(np.arccos(np.log(np.cosh(2.0)) / 2.0)), abs=6)
    assert np.isnan(direction_bandwidth(np.ones((1, D)), DIRS)[0])


def test_bad_inputs():
    c = vm(1.0, 0.0)[None]
    with pytest.raises(TuningError, match="NaN"):
        tuning_metrics(np.where(np.arange(D) == 3, np.nan, c), DIRS)
    with pytest.raises(TuningError, match="at least 4"):
        tuning_metrics(c[:, :2], DIRS[:2])
    with pytest.raises(TuningError, match="evenly spaced"):
        tuning_metrics(c, np.r_[DIRS[:-1], 350.0])
    with pytest.raises(TuningError, match="evenly spaced"):
        tuning_metrics(c, DIRS[::-1])
    with pytest.raises(TuningError, match="even number"):
        tuning_metrics(np.ones((1, 5)), np.arange(5) * 72.0)
    with pytest.raises(TuningError, match="negative"):
        tuning_metrics(-c, DIRS)
    with pytest.raises(TuningError, match="directions"):
        tuning_metrics(c, np.arange(8) * 45.0)


def test_all_zero_units_are_excluded_not_numbers():
    c = np.stack([vm(1.0, 45.0), np.zeros(D)])
    m = tuning_metrics(c, DIRS)
    assert m["valid"].tolist() == [True, False]
    for k in ("dsi", "di", "cv_direction", "cv_axial", "axial_ratio", "preferred_direction"):
        assert np.isnan(m[k][1]) and np.isfinite(m[k][0])


def test_responsive_mask_rule():
    peak = np.r_[np.linspace(0, 10, 101), np.nan]
    m = responsive_mask(peak, threshold=0.5)
    ref = np.percentile(peak[:-1], 99)
    assert np.array_equal(m[:-1], peak[:-1] > 0.5 * ref) and not m[-1]
    assert not responsive_mask(np.zeros(5)).any()


def test_select_best_condition():
    rng = np.random.default_rng(0)
    r = rng.random((D, 3, 2, 7))
    r[:, 2, 1, 4] += 10  # unit 4 prefers sf index 2, tf index 1
    curves, best = select_best_condition(r)
    assert curves.shape == (7, D)
    assert np.unravel_index(best[4], (3, 2)) == (2, 1)
    assert np.allclose(curves[4], r[:, 2, 1, 4])
    flat = r.reshape(D, 6, 7)
    for u in range(7):
        assert best[u] == np.argmax(flat[:, :, u].max(0))


def test_ranked_conditions_skip_the_invalid_ones():
    rng = np.random.default_rng(1)
    r = rng.random((D, 3, 2, 7))
    r[:, 2, 1, :] += 10  # every unit's largest responses at (2, 1) ...
    r[:, 0, 0, :] += 5  # ... then (0, 0)
    valid = np.ones((3, 2), dtype=bool)
    assert (ranked_conditions(r, valid)[:2] == [[5] * 7, [0] * 7]).all()
    valid[2, 1] = False  # ... which a block may not sample
    ranked = ranked_conditions(r, valid, k=3)
    assert (ranked[0] == 0).all() and (ranked[1:] != 5).all()
    curves, best = select_best_condition(r, valid)
    assert (best == 0).all() and np.allclose(curves, curves_at(r, np.zeros(7, dtype=int)))
    only = np.zeros((3, 2), dtype=bool)
    only[1, 1] = True
    assert (ranked_conditions(r, only, k=2) == [[3] * 7, [-1] * 7]).all()  # fewer valid conditions than asked
    with pytest.raises(TuningError, match="no valid"):
        select_best_condition(r, np.zeros((3, 2), dtype=bool))


def test_direction_agreement_wraps_round_the_circle():
    a = np.array([350.0, 10.0, 0.0, 90.0, np.nan])
    b = np.array([20.0, 330.0, 45.0, 270.0, 90.0])
    assert direction_agreement(a, b).tolist() == [True, True, True, False, False]
    assert direction_agreement([0.0], [45.0001]).tolist() == [False]


def test_median_ci_ranks_closed_forms():
    # n = 10: F(1) = 11/1024 ≤ 0.025 < F(2) = 56/1024, so [x_(2), x_(9)] with coverage 1 − 22/1024
    assert median_ci_ranks(10) == (2, 9, pytest.approx(1 - 22 / 1024))
    # n = 6: [x_(1), x_(6)] covers 1 − 2/64 = 0.969; n = 5: 1 − 2/32 < 0.95, no 95% interval exists
    assert median_ci_ranks(6) == (1, 6, pytest.approx(1 - 2 / 64))
    assert median_ci_ranks(5)[0] == 0
    # definition, for many n: the largest l with 2 F(l − 1) ≤ 0.05
    for n in (6, 7, 20, 101, 1000, 4096):
        lo, hi, cov = median_ci_ranks(n)
        assert hi == n + 1 - lo
        assert 2 * stats.binom.cdf(lo - 1, n, 0.5) <= 0.05 < 2 * stats.binom.cdf(lo, n, 0.5)
        assert cov == pytest.approx(1 - 2 * stats.binom.cdf(lo - 1, n, 0.5)) and cov >= 0.95


def test_median_ci_values_and_nan():
    x = np.r_[np.arange(10, 0, -1.0), [np.nan] * 3]  # 10 … 1, unsorted on purpose
    s = median_ci(x)
    assert s["n"] == 10 and s["n_nan"] == 3
    assert (s["median"], s["ci_low"], s["ci_high"]) == (5.5, 2.0, 9.0)
    assert np.isnan(median_ci([np.nan])["median"])
    assert np.isnan(median_ci([1.0, 2.0, 3.0])["ci_low"])  # n = 3: no 95% interval
    assert median_ci([1.0, np.inf, np.inf, 2.0, 3.0, np.inf, 4.0])["ci_high"] == np.inf  # ±inf kept


@pytest.mark.parametrize("dist, median", [
    (lambda rng, n: rng.exponential(1.0, n), np.log(2.0)),
    (lambda rng, n: rng.standard_cauchy(n), 0.0),
    (lambda rng, n: rng.integers(0, 2, n) * 10.0 + rng.random(n), 5.0),  # bimodal: median between modes
])
def test_median_ci_coverage(dist, median):
    # Coverage of the true median over 4,000 samples of n = 25, fixed seed. The exact coverage for
    # n = 25 is 1 − 2 F(7) = 0.9567; the simulated fraction has s.d. sqrt(.9567 × .0433 / 4000) =
    # 0.0032, so it must lie within 0.9567 ± 5 s.d. whatever the distribution.
    rng = np.random.default_rng(2024)
    n, reps = 25, 4000
    lo, hi, cov = median_ci_ranks(n)
    samples = np.sort(dist(rng, (reps, n)), axis=1)
    hit = (samples[:, lo - 1] <= median) & (median <= samples[:, hi - 1])
    assert cov == pytest.approx(1 - 2 * stats.binom.cdf(7, 25, 0.5))
    assert hit.mean() == pytest.approx(cov, abs=5 * np.sqrt(cov * (1 - cov) / reps))


def test_fraction_ci_clopper_pearson():
    r = fraction_ci(np.r_[np.ones(300, bool), np.zeros(700, bool)])
    assert r["fraction"] == pytest.approx(0.3) and (r["k"], r["n"]) == (300, 1000)
    # definition: beta quantiles
    assert r["ci_low"] == pytest.approx(stats.beta.ppf(0.025, 300, 701))
    assert r["ci_high"] == pytest.approx(stats.beta.ppf(0.975, 301, 700))
    # closed forms at the ends: k = 0 → [0, 1 − 0.025^(1/n)], k = n → [0.025^(1/n), 1]
    z = fraction_ci(np.zeros(20, bool))
    assert z["ci_low"] == 0 and z["ci_high"] == pytest.approx(1 - 0.025 ** (1 / 20))
    o = fraction_ci(np.ones(20, bool))
    assert o["ci_high"] == 1 and o["ci_low"] == pytest.approx(0.025 ** (1 / 20))
    assert np.isnan(fraction_ci([])["fraction"])


def test_fraction_ci_exact_coverage():
    # Exact (not simulated) coverage for n = 30 at many p: Σ_k Binom(k; n, p) · [p ∈ CI(k)] ≥ 0.95
    n = 30
    cis = [fraction_ci(np.r_[np.ones(k, bool), np.zeros(n - k, bool)]) for k in range(n + 1)]
    lo = np.array([c["ci_low"] for c in cis])
    hi = np.array([c["ci_high"] for c in cis])
    for p in np.linspace(0.01, 0.99, 99):
        cover = stats.binom.pmf(np.arange(n + 1), n, p)[(lo <= p) & (p <= hi)].sum()
        assert cover >= 0.95 - 1e-12


def test_pattern_component_classification():
    dirs = np.arange(24) * 15.0  # 60° shifts fall on the grid
    g = np.stack([vm(3.0, mu, dirs) for mu in (0.0, 90.0)])
    comp = np.stack([vm(3.0, mu - 60, dirs) + vm(3.0, mu + 60, dirs) for mu in (0.0, 90.0)])
    pc = pattern_component_index(comp, g, dirs)
    assert (pc["cls"] == -1).all() and (pc["pattern_index"] < -1.28).all()
    pp = pattern_component_index(g, g, dirs)
    assert (pp["cls"] == 1).all() and (pp["pattern_index"] > 1.28).all()
    # off-grid shifts (16 directions): still classified by interpolation
    g16 = vm(3.0, 0.0)[None]
    comp16 = (vm(3.0, -60.0) + vm(3.0, 60.0))[None]
    assert pattern_component_index(comp16, g16, DIRS)["cls"][0] == -1
    assert pattern_component_index(g16, g16, DIRS)["cls"][0] == 1


def test_driven_mask_keeps_units_the_stimulus_drives_above_the_grey_screen():
    from stdann.ephys.tuning import driven_mask

    peak = np.array([1.0, 1.0, 1.0, 0.5, np.nan, 1.0])
    blank = np.array([0.1, 0.5, 0.8, -0.2, 0.1, np.nan])
    assert driven_mask(peak, blank, 2.0).tolist() == [True, True, False, True, False, False]
    assert driven_mask(peak, blank, 1.0).tolist() == [True, True, True, True, False, True]


def test_a_pedestal_near_the_peak_is_what_driven_mask_removes():
    """The artefact it guards against: a weak tuning on a grey-screen response near the peak reads as
    sharp tuning once the blank is subtracted and clipped."""
    from stdann.ephys.tuning import driven_mask, tuning_metrics

    dirs = np.arange(16) * 22.5
    curve = 1.0 + 0.05 * np.cos(np.deg2rad(dirs))  # 5% modulation
    blank = np.array([1.0])
    vs = 1 - tuning_metrics(curve[None], dirs, baseline=blank)["cv_direction"][0]
    assert vs > 0.5 and (1 - tuning_metrics(curve[None], dirs)["cv_direction"][0]) < 0.05
    assert not driven_mask(curve.max()[None], blank, 2.0)[0]

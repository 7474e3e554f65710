"""Population direction bias: R, mean direction and the exact chance level (Kluyver's formula)
against closed forms and against the definition (fixed-seed simulation with stated error)."""

import numpy as np
import pytest

from stdann.ephys.population import (
    PopulationError,
    chance_resultant_length,
    direction_bias,
    resultant,
    resultant_length_cdf,
)


def test_resultant_closed_forms():
    assert resultant([10.0, 10.0, 10.0]) == pytest.approx((1.0, 10.0))
    r, _ = resultant([0.0, 180.0])
    assert r == pytest.approx(0.0, abs=1e-12)
    r, m = resultant([0.0, 90.0])  # |1 + i| / 2
    assert r == pytest.approx(np.sqrt(2) / 2) and m == pytest.approx(45.0)
    r, m = resultant([350.0, 10.0, 0.0], [1, 1, 2])  # symmetric about 0°
    assert m == pytest.approx(0.0, abs=1e-9) or m == pytest.approx(360.0, abs=1e-9)
    assert r == pytest.approx((2 * np.cos(np.deg2rad(10)) + 2) / 4)


# Two channels are the quadrature's hardest case (the integrand decays only as t^(-3/2) and the
# density of R is singular at its ends): 2e-5 is the accuracy claimed there; more channels converge
# far faster.
TWO_CHANNEL_TOL = 2e-5


@pytest.mark.parametrize("r", [0.05, 0.3, 0.7, 0.95, 0.999])
def test_cdf_two_equal_channels(r):
    # R = |cos(φ/2)|, φ uniform: P(R ≤ r) = 1 − 2 arccos(r) / π
    assert resultant_length_cdf(r, [1, 1])[0] == pytest.approx(1 - 2 * np.arccos(r) / np.pi, abs=TWO_CHANNEL_TOL)


@pytest.mark.parametrize("w1, w2", [(3.0, 1.0), (16.0, 5.0)])
def test_cdf_two_unequal_channels(w1, w2):
    # R² (w1 + w2)² = w1² + w2² + 2 w1 w2 cos φ: P(R ≤ r) = 1 − arccos(c) / π for c in [−1, 1]
    lo = (w1 - w2) / (w1 + w2)
    for r in np.linspace(lo + 0.01, 0.99, 7):
        c = (r**2 * (w1 + w2) ** 2 - w1**2 - w2**2) / (2 * w1 * w2)
        assert resultant_length_cdf(r, [w1, w2])[0] == pytest.approx(1 - np.arccos(c) / np.pi, abs=TWO_CHANNEL_TOL)
    # below |w1 − w2| / (w1 + w2) the resultant cannot fall
    assert resultant_length_cdf(lo - 0.01, [w1, w2])[0] == pytest.approx(0.0, abs=TWO_CHANNEL_TOL)


def test_chance_two_channels_and_one():
    # P(R > r) = 2 arccos(r) / π = 0.05 ⇒ r = cos(0.025 π)
    assert chance_resultant_length([7, 7]) == pytest.approx(np.cos(0.025 * np.pi), abs=1e-5)
    assert chance_resultant_length([5]) == 1.0  # one channel: R = 1 always, never above chance
    assert chance_resultant_length([0, 0, 5]) == 1.0  # channels without responsive units do not count


@pytest.mark.parametrize("weights", [[1] * 3, [1] * 8, [16] * 64, [16] * 30 + [1] * 4, [5, 1, 1, 1]])
def test_chance_level_is_the_95th_percentile(weights):
    # definition: P(R ≤ chance) = 0.95 for channel directions i.i.d. uniform. A fixed-seed simulation
    # of 100,000 populations estimates that probability with s.d. sqrt(.05 × .95 / 1e5) = 0.0007;
    # the tolerance is 5 s.d.
    w = np.asarray(weights, dtype=float)
    q = chance_resultant_length(w)
    rng = np.random.default_rng(12345)
    phi = rng.random((100_000, w.size)) * 2 * np.pi
    R = np.abs(np.exp(1j * phi) @ w) / w.sum()
    assert (R <= q).mean() == pytest.approx(0.95, abs=5 * np.sqrt(0.05 * 0.95 / 1e5))


def test_many_channels_tend_to_the_rayleigh_limit():
    # n large, equal weights: 2 n R² → χ²₂, so the 95th percentile → sqrt(ln 20 / n), with an
    # O(1/n) correction (Greenwood & Durand 1955): within 1% at n = 512
    n = 512
    assert chance_resultant_length(np.ones(n)) == pytest.approx(np.sqrt(np.log(20) / n), rel=0.01)


def test_direction_bias_uses_channels_not_units():
    # 8 channels × 100 units each, every unit of a channel sharing its channel's direction: R over
    # the 800 units equals R over the 8 channel directions, and chance is that of 8 channels
    rng = np.random.default_rng(3)
    ch_dir = rng.random(8) * 360
    channel = np.repeat(np.arange(8), 100)
    b = direction_bias(ch_dir[channel], channel)
    r8, m8 = resultant(ch_dir)
    assert b["resultant_length"] == pytest.approx(r8) and b["mean_direction_deg"] == pytest.approx(m8)
    assert b["chance_resultant_length"] == pytest.approx(chance_resultant_length(np.ones(8)))
    assert b["n_channels"] == 8 and b["n_units"] == 800
    assert b["above_chance"] == (b["resultant_length"] > b["chance_resultant_length"])
    assert b["p_value"] == pytest.approx(1 - resultant_length_cdf(r8, np.ones(8))[0])
    # the same units counted as independent would put chance far lower
    assert chance_resultant_length(np.ones(800)) < b["chance_resultant_length"] / 5


def test_bad_input():
    with pytest.raises(PopulationError, match="no responsive unit"):
        direction_bias([], [])
    with pytest.raises(PopulationError, match="NaN"):
        direction_bias([1.0, np.nan], [0, 1])
    with pytest.raises(PopulationError, match="channel ids"):
        direction_bias([1.0, 2.0], [0])

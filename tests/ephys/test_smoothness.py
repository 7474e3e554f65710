"""Smoothness of unit maps: the curve against its shuffle control, the permutation test."""

import numpy as np

from stdann.ephys.smoothness import smoothness_curve, smoothness_index


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

    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 10, size=(800, 2))
    ordered = np.degrees(np.arctan2(np.sin(xy[:, 0]), np.cos(xy[:, 1]))) % 360  # smooth in space
    random = rng.uniform(0, 360, 800)
    s_ord = smoothness_index(xy, ordered, short_mm=0.5)
    s_rnd = smoothness_index(xy, random, short_mm=0.5)
    assert s_ord["index"] > 0.5 and s_ord["p_value"] <= 1 / 51 + 1e-12
    assert abs(s_rnd["index"]) < 0.1 and s_rnd["p_value"] > 0.05

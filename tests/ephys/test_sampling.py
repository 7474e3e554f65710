"""How each block samples a stimulus (ephys.sampling) and what the analysis does with it: strides read from the
network, aliased grating conditions never chosen, blank-subtracted measures and the SF/TF consistency of the
preferred direction on tuning curves whose answers are known."""

import numpy as np
import pytest

from stdann.ephys import tuning as TU
from stdann.ephys.analyze import analyze_block
from stdann.ephys.config import EphysConfig
from stdann.ephys.controls import GridPositions
from stdann.ephys.sampling import (
    MIN_PHASES,
    BlockSampling,
    block_sampling,
    dot_offsets,
    phase_problem,
    sampled_conditions,
    sampling_summary,
)
from stdann.ephys.stimuli import directions
from stdann.models.r3d import block_output_shapes, r3d_18


def test_strides_are_read_from_the_network():
    s = block_sampling(r3d_18(None, width=2))
    assert list(s) == [f"layer{i}.{j}" for i in range(1, 5) for j in range(2)]
    want = {1: ((1, 2, 2), (1, 2, 2)), 2: ((2, 4, 4), (1, 2, 2)), 3: ((4, 8, 8), (2, 4, 4)), 4: ((8, 16, 16), (4, 8, 8))}
    for name, b in s.items():
        assert (b.output, b.stage_input) == want[int(name[5])]
    # the output strides agree with the block output shapes the model gives at a clip of 16 x 64²
    for name, (c, t, h, w) in block_output_shapes(2, 16, 64).items():
        assert (16 // s[name].output[0], 64 // s[name].output[1]) == (t, h)


def test_aliasing_rule_at_the_nyquist_limit_of_the_stage_input():
    layer3 = BlockSampling("layer3.1", (4, 8, 8), (2, 4, 4))
    ok = sampled_conditions([0.04, 0.08, 0.125, 0.16], [0.0625, 0.1875, 0.25], layer3)
    # sf x 4 < 1/2 and tf x 2 < 1/2, strictly: 0.125 cycles/px and 0.25 cycles/frame are out
    assert ok.tolist() == [[True, True, False], [True, True, False], [False] * 3, [False] * 3]
    summary = sampling_summary([0.04, 0.16], [0.0625, 0.25], layer3, frames=8)
    assert summary["excluded_conditions"] == [[0.04, 0.25], [0.16, 0.0625], [0.16, 0.25]]
    assert summary["n_conditions_sampled"] == 1 and summary["max_sf_sampled"] == 0.125
    assert summary["dot_offsets"] == 4 and dot_offsets(layer3, frames=2) == 2  # at most the clip length
    assert phase_problem(MIN_PHASES) is None and "n_phases = 2" in phase_problem(2)


def _cosine_curves(pref_deg, amplitude, pedestal, dirs):
    """Von-Mises-like direction tuning: pedestal + amplitude * exp(2 (cos(θ - pref) - 1)); (units, directions)."""
    d = np.deg2rad(dirs[None, :] - np.asarray(pref_deg, dtype=float)[:, None])
    return np.asarray(pedestal, dtype=float)[:, None] + np.asarray(amplitude, dtype=float)[:, None] * np.exp(
        2 * (np.cos(d) - 1))


def test_an_aliased_condition_is_never_a_units_best():
    e = EphysConfig(n_directions=8, spatial_frequencies=[0.04, 0.16], temporal_frequencies=[0.0625, 0.25])
    dirs = directions(8)
    n = 40
    pos = GridPositions("layer3.1", (10, 2, 2))
    base = _cosine_curves(np.zeros(n), np.ones(n), np.full(n, 0.1), dirs).T  # (dirs, units), preferring 0°
    resp = np.stack([np.stack([base, base * 0.9]), np.stack([base * 5, base * 4])])  # (sf, tf, dirs, units)
    resp = np.moveaxis(resp, 2, 0).copy()  # (dirs, sf, tf, units): the largest responses at sf 0.16 ...
    layer3 = BlockSampling("layer3.1", (4, 8, 8), (2, 4, 4))  # ... which layer3 does not sample
    s, d = analyze_block(resp, pos, e, sampling=layer3, frames=8, maps=False)
    assert (d["best"] == 0).all() and s["best_sf_counts"] == [n, 0]
    assert s["sampling"]["excluded_conditions"] == [[0.04, 0.25], [0.16, 0.0625], [0.16, 0.25]]
    # the second-best condition is the only other sampled one: (0.04, 0.0625) has no partner, consistency not measured
    assert "direction_consistency" not in s and "fewer than 2" in s["direction_consistency_note"]
    s_all, d_all = analyze_block(resp, pos, e, maps=False)  # without the rule the aliased corner wins
    assert (d_all["best"] == 2).all()
    none, _ = analyze_block(resp, pos, e, sampling=BlockSampling("x", (64, 64, 64), (32, 32, 32)), frames=8)
    assert none["n_responsive"] == 0 and "no grating condition" in none["note"]


def test_blank_subtracted_measures():
    e = EphysConfig(n_directions=16, spatial_frequencies=[0.04], temporal_frequencies=[0.0625, 0.125])
    dirs = directions(16)
    n = 30
    rng = np.random.default_rng(0)
    pref = dirs[rng.integers(0, 16, n)]  # on the sampled directions: every peak is 2
    pedestal = np.full(n, 1.0)
    tuned = _cosine_curves(pref, np.full(n, 1.0), pedestal, dirs).T
    resp = np.stack([tuned, 0.5 * tuned], axis=1)[:, None]  # (dirs, 1 sf, 2 tf, units)
    s, d = analyze_block(resp, GridPositions("layer2.1", (n, 1, 1)), e, blank=pedestal, maps=False)
    clean = TU.tuning_metrics(tuned.T - pedestal[:, None], dirs)
    # the pedestal dilutes the classic DSI; subtracting the blank recovers the tuning itself
    assert s["dsi_median"] < 0.5 < s["dsi_blank_median"] == pytest.approx(np.median(clean["dsi"]))
    assert s["vector_strength_blank_median"] == pytest.approx(np.median(1 - clean["cv_direction"]))
    assert s["blank_ratio_median"] == pytest.approx(0.5)  # blank 1, peak 2
    assert s["n_blank_excluded"] == 0 and s["blank_ratio_ci"][0] <= 0.5 <= s["blank_ratio_ci"][1]
    # the second condition is the same curve at half gain: every preferred direction agrees
    assert s["direction_consistency"] == 1.0 and s["direction_consistency_detail"]["above_chance"]
    # an axial (bidirectional) unit: R(θ) = R(θ + 180°) gives vector strength 0 exactly, whatever its pedestal
    axial = (_cosine_curves(pref, np.ones(n), pedestal, dirs) + _cosine_curves(pref + 180, np.ones(n), 0 * pedestal, dirs)).T
    sa, _ = analyze_block(np.stack([axial, axial], axis=1)[:, None], GridPositions("layer2.1", (n, 1, 1)), e,
                          blank=pedestal, maps=False)
    assert sa["vector_strength_blank_median"] == pytest.approx(0.0, abs=1e-12)


def test_consistency_counts_direction_selective_units_and_knows_chance():
    e = EphysConfig(n_directions=16, spatial_frequencies=[0.04], temporal_frequencies=[0.0625, 0.125])
    dirs = directions(16)
    n = 400
    rng = np.random.default_rng(1)
    first = _cosine_curves(rng.uniform(0, 360, n), np.ones(n), np.zeros(n), dirs).T
    second = 0.9 * _cosine_curves(rng.uniform(0, 360, n), np.ones(n), np.zeros(n), dirs).T  # unrelated preference
    flat = np.ones((16, n)) + 1e-3 * np.cos(np.deg2rad(dirs))[:, None]  # flat, a tiny asymmetry always to 0°
    s, _ = analyze_block(np.stack([first, second], axis=1)[:, None], GridPositions("layer2.1", (n, 1, 1)), e,
                         maps=False)
    det = s["direction_consistency_detail"]
    assert det["n"] == n and det["chance"] == 0.25
    assert s["direction_consistency_ci"][0] < 0.25 < s["direction_consistency_ci"][1] and not det["above_chance"]
    # flat curves point the same way at every condition but are not direction selective: not counted
    s, _ = analyze_block(np.stack([flat, 0.9 * flat], axis=1)[:, None], GridPositions("layer2.1", (n, 1, 1)), e,
                         maps=False)
    assert s["dsi_median"] < 0.01 and s["direction_consistency_detail"]["n"] == 0

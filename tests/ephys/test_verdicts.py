"""Verdicts decided from the statistics (stored, never recomputed by a renderer), the metric registry
and the macaque range rows."""

import pytest

from stdann.ephys.macaque import comparison_rows, load_reference, range_verdict
from stdann.ephys.registry import (HEADLINE, METRICS, SELECTIVITY, STUDY_PANELS, format_number, format_with_ci, get,
                                   metric, slim)
from stdann.ephys.verdicts import compare_intervals, map_order, trained_vs_untrained, untrained_range_verdict


@pytest.mark.parametrize("t, tci, u, uci, expected", [
    (0.12, [0.10, 0.14], 0.31, [0.29, 0.33], "below"),
    (0.50, [0.45, 0.55], 0.31, [0.29, 0.33], "above"),
    (0.30, [0.25, 0.35], 0.31, [0.29, 0.33], "not_distinguishable"),
    (0.30, [0.25, 0.29], 0.31, [0.29, 0.33], "not_distinguishable"),  # touching intervals overlap
    (0.20, None, 0.30, [0.29, 0.33], "no_ci"),  # no verdict from values alone
    (0.20, [None, 0.3], 0.30, [0.29, 0.33], "no_ci"),
    (None, None, 0.31, [0.2, 0.4], "missing"),
    ("inf", ["inf", "inf"], 0.31, [0.2, 0.4], "missing"),  # metrics.json writes inf as a string
])
def test_compare_intervals(t, tci, u, uci, expected):
    assert compare_intervals(t, tci, u, uci) == expected


def test_trained_vs_untrained_covers_metrics_with_a_ci():
    tr = {"dsi_median": 0.5, "dsi_ci": [0.45, 0.55], "fraction_direction_selective": 0.8,
          "fraction_direction_selective_ci": [0.7, 0.9], "pinwheel_density": 3.0}
    un = {"dsi_median": 0.3, "dsi_ci": [0.28, 0.33], "fraction_direction_selective": 0.75,
          "fraction_direction_selective_ci": [0.65, 0.85], "pinwheel_density": 5.0}
    v = trained_vs_untrained(tr, un)
    assert v["dsi_median"]["verdict"] == "above" and "do not overlap" in v["dsi_median"]["text"]
    assert v["fraction_direction_selective"]["verdict"] == "not_distinguishable"
    # the density has an exact Poisson CI in the registry; without it in the summaries, no verdict
    assert v["pinwheel_density"]["verdict"] == "no_ci"
    assert set(v) <= {k for k, m in METRICS.items() if m.ci_key}
    tr["pinwheel_density_ci"], un["pinwheel_density_ci"] = [2.0, 4.2], [4.5, 5.6]
    assert trained_vs_untrained(tr, un)["pinwheel_density"]["verdict"] == "below"


def test_map_order_from_the_permutation_p_value():
    assert map_order(0.0196)["verdict"] == "ordered"
    assert map_order(0.05)["verdict"] == "not_ordered"  # p < alpha, strictly
    assert map_order(0.3)["verdict"] == "not_ordered"
    assert map_order(None)["verdict"] == "not_tested"


def test_registry_paths_formats_and_slim():
    s = {"dsi_median": 0.4123, "dsi_ci": [0.39, 0.43], "direction_bias": {"resultant_length": 0.61, "n_channels": 32,
                                                                           "above_chance": True, "n_units": 99},
         "pinwheels": {"n_pinwheels": 12}, "map_order": {"verdict": "ordered"}, "junk": 1}
    assert get(s, "direction_bias.resultant_length") == 0.61 and get(s, "direction_bias.nope") is None
    assert format_with_ci(s, "dsi_median") == "0.41 [0.39, 0.43]"
    assert format_number(None) == "n/a" and format_number("inf") == "inf" and format_number(12.0) == "12"
    out = slim(s)
    assert out == {"dsi_median": 0.4123, "dsi_ci": [0.39, 0.43], "pinwheels": {"n_pinwheels": 12},
                   "direction_bias": {"resultant_length": 0.61, "n_channels": 32, "above_chance": True},
                   "map_order": {"verdict": "ordered"}}
    for keys in (HEADLINE, SELECTIVITY, STUDY_PANELS):
        for k in keys:
            metric(k)  # every selection names registry entries
    with pytest.raises(KeyError, match="registry"):
        metric("dsi")


def test_macaque_rows_carry_the_stored_rules():
    assert [range_verdict(v, 0.8, 1.0) for v in (0.5, 0.9, 1.2, None)] == ["below", "inside", "above", None]
    blocks = {"layer3.1": {"trained": {"dsi_median": 0.9, "dsi_ci": [0.8, 0.95], "fraction_di_ge_half": 0.5,
                                       "fraction_di_ge_half_ci": [0.4, 0.6]},
                           "untrained": {"dsi_median": 0.3, "dsi_ci": [0.25, 0.35], "fraction_di_ge_half": 0.45,
                                         "fraction_di_ge_half_ci": [0.35, 0.55]}}}
    rows = {r["quantity"]: r for r in comparison_rows(blocks, load_reference())}
    assert rows["dsi"]["trained_vs_macaque"] == "inside" and rows["dsi"]["trained_vs_untrained"] == "above"
    f = rows["fraction_direction_selective"]  # compared through fraction_di_ge_half and its exact CI
    assert f["trained_ci_low"] == 0.4 and f["trained_vs_macaque"] == "below"
    assert f["trained_vs_untrained"] == "not_distinguishable"


@pytest.mark.parametrize("t, tci, values, expected", [
    (0.65, [0.63, 0.67], [0.097, 0.204, 0.15], "above_range"),   # above the most selective untrained network
    (0.21, [0.205, 0.215], [0.097, 0.204], "above_range"),
    (0.20, [0.19, 0.21], [0.097, 0.204], "inside_range"),        # CI reaches into the range
    (0.12, [0.11, 0.13], [0.097, 0.204], "inside_range"),
    (0.05, [0.04, 0.06], [0.097, 0.204], "below_range"),
    (0.12, None, [0.097, 0.204], "no_ci"),
    (None, [0.1, 0.2], [0.097, 0.204], "missing"),
    (0.12, [0.11, 0.13], [], "missing"),
    (0.12, [0.11, 0.13], [0.1, None], "missing"),
])
def test_range_verdict_against_several_untrained_networks(t, tci, values, expected):
    assert untrained_range_verdict(t, tci, values) == expected

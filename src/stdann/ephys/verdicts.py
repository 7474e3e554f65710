"""Verdicts decided from the statistics, stored in metrics.json / study.json; renderers only show them.

* Trained vs untrained, per metric with a 95% CI (ephys.registry ``ci_key``): ``above`` /
  ``below`` the untrained control when the two CIs are disjoint, ``not_distinguishable`` when
  they overlap, ``no_ci`` when either CI is missing (no comparison is made from the values
  alone), ``missing`` when a value is missing. Disjoint 95% CIs are a conservative test (a
  difference can be significant while the CIs overlap): "not distinguishable" is not "equal".
* Map order, per network: ``ordered`` when the one-sided permutation test of the smoothness
  index (positions shuffled, ephys.smoothness.smoothness_permutation_test) gives p < ``MAP_ORDER_ALPHA``,
  else ``not_ordered``; ``not_tested`` without a p-value.
* Population bias: ``above_chance`` in ``direction_bias`` (ephys.population).
* Against the untrained range (studies with ``--untrained-seeds N``): ``above_range`` when the
  trained CI lies above every one of N untrained networks of other initial seeds, ``below_range``
  when below every one, ``inside_range`` otherwise. Between seeds an untrained network's
  selectivity moves ten times further than one network's CI (docs/results.md §1), so this is the
  verdict that says whether training made a network more selective than initialisation does.
"""

from __future__ import annotations

from stdann.ephys.registry import METRICS, as_number, ci, get

MAP_ORDER_ALPHA = 0.05

COMPARISON_TEXT = {
    "above": "above the untrained control (95% CIs do not overlap)",
    "below": "below the untrained control (95% CIs do not overlap)",
    "not_distinguishable": "not distinguishable from the untrained control (95% CIs overlap)",
    "no_ci": "not compared (no confidence interval)",
    "missing": "not compared (value missing)",
}
MAP_ORDER_TEXT = {
    "ordered": "smoother than with positions shuffled (permutation p < {alpha:g})",
    "not_ordered": "not smoother than with positions shuffled (permutation p ≥ {alpha:g})",
    "not_tested": "map order not tested (no permutation p-value)",
}


def compare_intervals(t, t_ci, u, u_ci) -> str:
    """``above`` / ``below`` / ``not_distinguishable`` / ``no_ci`` / ``missing`` for a trained
    value ``t`` with CI ``t_ci`` against an untrained ``u`` with ``u_ci`` (module docstring)."""
    if as_number(t) is None or as_number(u) is None:
        return "missing"
    bounds = [as_number(x) for x in (*(t_ci or (None, None)), *(u_ci or (None, None)))]
    if len(bounds) != 4 or None in bounds:
        return "no_ci"
    tlo, thi, ulo, uhi = bounds
    if tlo > uhi:
        return "above"
    if thi < ulo:
        return "below"
    return "not_distinguishable"


RANGE_TEXT = {
    "above_range": "above every untrained network of the reference (95% CI above their maximum)",
    "below_range": "below every untrained network of the reference (95% CI below their minimum)",
    "inside_range": "within the untrained networks' range",
    "no_ci": "not compared (no confidence interval)",
    "missing": "not compared (value or reference missing)",
}


MAX_UNTRAINED_SEEDS = 1000


def untrained_seeds_problem(n) -> str | None:
    """Why ``n`` cannot be the number of untrained reference networks, or None (0 = no reference;
    a range needs at least 2; at most :data:`MAX_UNTRAINED_SEEDS`)."""
    ok = isinstance(n, int) and not isinstance(n, bool) and (n == 0 or 2 <= n <= MAX_UNTRAINED_SEEDS)
    return None if ok else (f"untrained seeds must be 0 (none) or from 2 (a range) to {MAX_UNTRAINED_SEEDS}, "
                            f"got {n!r}")


def untrained_range_verdict(t, t_ci, untrained_values) -> str:
    """``above_range`` / ``below_range`` / ``inside_range`` / ``no_ci`` / ``missing`` for a trained
    value ``t`` with CI ``t_ci`` against the values of several untrained networks (module docstring)."""
    values = [as_number(v) for v in (untrained_values or [])]
    if as_number(t) is None or not values or None in values:
        return "missing"
    bounds = [as_number(x) for x in (t_ci or (None, None))]
    if len(bounds) != 2 or None in bounds:
        return "no_ci"
    if bounds[0] > max(values):
        return "above_range"
    if bounds[1] < min(values):
        return "below_range"
    return "inside_range"


def trained_vs_untrained(trained: dict, untrained: dict) -> dict[str, dict]:
    """{metric key: {"verdict", "text"}} for every registry metric with a CI present in either
    summary."""
    out = {}
    for key, m in METRICS.items():
        if m.ci_key is None or (get(trained, key) is None and get(untrained, key) is None):
            continue
        v = compare_intervals(get(trained, key), ci(trained, key), get(untrained, key), ci(untrained, key))
        out[key] = {"verdict": v, "text": COMPARISON_TEXT[v]}
    return out


def map_order(p_value, alpha: float = MAP_ORDER_ALPHA) -> dict:
    """The map-order verdict of one network from its smoothness permutation p-value."""
    p = as_number(p_value)
    v = "not_tested" if p is None else ("ordered" if p < alpha else "not_ordered")
    return {"verdict": v, "p_value": p, "alpha": alpha, "text": MAP_ORDER_TEXT[v].format(alpha=alpha)}

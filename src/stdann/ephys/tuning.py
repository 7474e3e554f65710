"""Direction-tuning metrics of many units at once. Pure numpy, vectorised over units.

Direction convention: 0° = motion to the right (increasing column index), 90° = motion upward on
the screen (decreasing row index), counter-clockwise.

Definitions (θ_k the directions, r_k ≥ 0 the responses of one unit):

* preferred direction = arg Σ r_k e^{iθ_k}, in [0°, 360°) (vector sum; Albright 1984 uses the peak,
  the vector sum is the smoother estimate);
* DSI = (R_pref − R_null) / (R_pref + R_null), R_pref = peak response, R_null = response to the
  direction 180° from the peak's direction;
* DI = 1 − R_null / R_pref (older MT papers, e.g. Albright 1984); DSI = DI / (2 − DI);
* CV_direction = 1 − |Σ r_k e^{iθ_k}| / Σ r_k, CV_axial = 1 − |Σ r_k e^{2iθ_k}| / Σ r_k;
* axial ratio = |F2| / |F1|, F_n = Σ r_k e^{inθ_k} (inf for a pure axis cell, F1 = 0);
* bandwidth = full width at half height, half height = min + (peak − min)/2, linearly
  interpolated between sampled directions.

Exclusions are explicit: a unit whose curve is all zero gets NaN metrics and ``valid = False``;
NaN/Inf or negative responses, fewer than 4 directions, an odd count or uneven spacing are errors.

Confidence intervals are exact and distribution-free (no resampling, no seed):

* median: the order-statistic interval [x_(l), x_(n+1−l)]. The number B of sample values below
  the population median is Binomial(n, ½) whatever the distribution (continuous), so
  P(x_(l) ≤ median ≤ x_(n+1−l)) = P(l ≤ B ≤ n − l) = 1 − 2·F(l − 1), F the Binomial(n, ½) CDF;
  l is the largest rank with 2·F(l − 1) ≤ 1 − level (coverage at least ``level``, the achieved
  coverage is returned). Below n = 6 no such rank exists at 95% and the interval is NaN.
* fraction k/n: the Clopper–Pearson interval (scipy.stats.binomtest(...).proportion_ci(method=
  "exact")): the p whose Binomial(n, p) tail beyond k is (1 − level)/2 on each side; coverage at
  least ``level`` for every p.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from stdann.ephys.errors import EphysError


class TuningError(EphysError):
    """Input that would give a wrong number; the message says what to fix."""


# -- input checks -------------------------------------------------------------------------------------
def check_directions(directions_deg) -> np.ndarray:
    """Return the directions as float64 after checking: >= 4, even count, evenly spaced over 360°."""
    d = np.asarray(directions_deg, dtype=np.float64).ravel()
    if d.size < 4:
        raise TuningError(f"need at least 4 directions for direction metrics, got {d.size}")
    if d.size % 2:
        raise TuningError(f"need an even number of directions (each with its opposite), got {d.size}")
    if not np.all(np.isfinite(d)):
        raise TuningError("directions contain NaN or Inf")
    step = 360.0 / d.size
    # consecutive directions (in the given order) must advance by exactly one step, mod 360
    inc = np.mod(np.diff(np.append(d, d[0])), 360.0)
    if not np.allclose(inc, step, atol=1e-6):
        raise TuningError(
            f"directions must be evenly spaced in increasing order over 360° (step {step:g}°); "
            f"got increments {np.round(inc, 4).tolist()}"
        )
    return d


def check_curves(curves, n_directions: int | None = None) -> np.ndarray:
    c = np.asarray(curves, dtype=np.float64)
    if c.ndim == 1:
        c = c[None, :]
    if c.ndim != 2:
        raise TuningError(f"curves must be (units, directions), got shape {c.shape}")
    if n_directions is not None and c.shape[1] != n_directions:
        raise TuningError(f"curves have {c.shape[1]} directions but {n_directions} direction values were given")
    bad = ~np.isfinite(c).all(axis=1)
    if bad.any():
        raise TuningError(f"{int(bad.sum())} of {c.shape[0]} tuning curves contain NaN or Inf; remove them first")
    if (c < 0).any():
        n = int((c < 0).any(axis=1).sum())
        raise TuningError(
            f"{n} tuning curves have negative responses; the metrics assume r >= 0 "
            "(subtract a baseline with baseline=… which clips at zero)"
        )
    return c


def _prepare(curves, directions_deg, baseline):
    d = check_directions(directions_deg)
    c = np.asarray(curves, dtype=np.float64)
    if baseline is not None:
        b = np.asarray(baseline, dtype=np.float64)
        if b.ndim == 1:
            b = b[:, None]
        c = np.maximum(c - b, 0.0)
    c = check_curves(c, d.size)
    return c, d


# -- metrics -------------------------------------------------------------------------------------------
def tuning_metrics(curves, directions_deg, baseline=None) -> dict[str, np.ndarray]:
    """Direction metrics of every unit's tuning curve (definitions in the module docstring).

    Parameters
    ----------
    curves : array (units, directions)
        Responses r >= 0 at each direction.
    directions_deg : array (directions,)
        Evenly spaced directions in degrees (0 = rightward, counter-clockwise).
    baseline : array (units,) or float, optional
        Subtracted from every response first (clipped at 0): e.g. the blank response.

    Returns
    -------
    dict of arrays (units,)
        ``preferred_direction`` (deg, [0, 360), arg F1), ``preferred_axis`` (deg, [0, 180),
        arg F2 / 2), ``dsi``, ``di``, ``cv_direction``, ``cv_axial``, ``axial_ratio``, ``peak``,
        ``valid`` (False for all-zero units, whose metrics are NaN).
    """
    c, d = _prepare(curves, directions_deg, baseline)
    th = np.deg2rad(d)
    n_dir = d.size
    total = c.sum(axis=1)
    valid = total > 0
    f1 = c @ np.exp(1j * th)
    f2 = c @ np.exp(2j * th)
    ipk = np.argmax(c, axis=1)
    r_pref = c[np.arange(c.shape[0]), ipk]
    r_null = c[np.arange(c.shape[0]), (ipk + n_dir // 2) % n_dir]
    with np.errstate(divide="ignore", invalid="ignore"):
        dsi = (r_pref - r_null) / (r_pref + r_null)
        di = 1.0 - r_null / r_pref
        cv_dir = 1.0 - np.abs(f1) / total
        cv_ax = 1.0 - np.abs(f2) / total
        a1 = np.abs(f1)
        tiny = 1e-12 * total
        axial_ratio = np.where(a1 > tiny, np.abs(f2) / np.where(a1 > tiny, a1, 1.0), np.inf)
    pref = np.mod(np.rad2deg(np.angle(f1)), 360.0)
    pref = np.where(pref >= 360.0, 0.0, pref)
    axis = np.mod(np.rad2deg(np.angle(f2)) / 2.0, 180.0)
    out = {
        "preferred_direction": pref,
        "preferred_axis": np.where(axis >= 180.0, 0.0, axis),
        "dsi": dsi,
        "di": di,
        "cv_direction": np.clip(cv_dir, 0.0, 1.0),
        "cv_axial": np.clip(cv_ax, 0.0, 1.0),
        "axial_ratio": axial_ratio,
        "peak": r_pref,
    }
    for k in out:
        if k != "peak":
            out[k] = np.where(valid, out[k], np.nan)
    out["valid"] = valid
    return out


def direction_bandwidth(curves, directions_deg, baseline=None) -> np.ndarray:
    """Full width at half height (deg) of each tuning curve around its peak.

    Half height = min + (peak − min) / 2. From the peak, walk both ways round the circle to the
    first sample below half height and interpolate linearly. A curve that never falls below half
    height within ±180° gets 360°; an all-zero or flat curve gets NaN.
    """
    c, d = _prepare(curves, directions_deg, baseline)
    n_dir = d.size
    step = 360.0 / n_dir
    n = c.shape[0]
    ipk = np.argmax(c, axis=1)
    peak = c[np.arange(n), ipk]
    lo = c.min(axis=1)
    half = lo + (peak - lo) / 2.0
    ks = np.arange(0, n_dir // 2 + 1)
    widths = np.zeros(n)
    for sign in (1, -1):  # two sides (not a loop over units)
        idx = (ipk[:, None] + sign * ks[None, :]) % n_dir
        vals = np.take_along_axis(c, idx, axis=1)  # vals[:, 0] = peak
        below = vals < half[:, None]
        has = below.any(axis=1)
        first = np.where(has, np.argmax(below, axis=1), 1)
        v_in = np.take_along_axis(vals, (first - 1)[:, None], axis=1)[:, 0]
        v_out = np.take_along_axis(vals, first[:, None], axis=1)[:, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = (v_in - half) / (v_in - v_out)
        side = (first - 1 + frac) * step
        widths += np.where(has, side, 180.0)
    flat = peak <= lo
    return np.where(flat, np.nan, np.minimum(widths, 360.0))


def responsive_mask(peak, threshold: float = 0.1, percentile: float = 99.0) -> np.ndarray:
    """Units whose peak response exceeds ``threshold`` × the ``percentile``-th percentile of the
    peaks of all units given (normally one block), and is > 0. NaN peaks are not responsive."""
    p = np.asarray(peak, dtype=np.float64)
    fin = np.isfinite(p)
    if not fin.any():
        return np.zeros(p.shape, dtype=bool)
    ref = np.percentile(p[fin], percentile)
    return fin & (p > 0) & (p > threshold * ref)


def driven_mask(peak, blank, ratio: float = 2.0) -> np.ndarray:
    """Units whose best stimulus drives them: peak ≥ ``ratio`` × their response to a grey screen
    (``blank``; a unit with blank ≤ 0 is driven by any positive peak). ``ratio`` ≤ 1 keeps every unit.

    Why: a unit whose grating responses ride on a grey-screen response close to its peak has a
    blank-subtracted tuning curve made of the small remainder; clipped at 0 it looks sharply tuned
    (a network trained with the spatial loss alone gave blank/peak 0.7-0.8 and a median
    blank-subtracted vector strength 0.43-0.71 in such units). Physiology counts a cell only when the
    stimulus drives it well above its spontaneous rate.

    Parameters
    ----------
    peak, blank : array_like, shape (units,)
    ratio : float

    Returns
    -------
    numpy.ndarray of bool, shape (units,)
    """
    p = np.asarray(peak, dtype=np.float64)
    b = np.asarray(blank, dtype=np.float64)
    if ratio <= 1:
        return np.isfinite(p)
    return np.isfinite(p) & np.isfinite(b) & (p > 0) & ((b <= 0) | (p >= ratio * b))


def ranked_conditions(responses, valid=None, k: int = 2) -> np.ndarray:
    """Each unit's ``k`` best stimulus conditions, by the peak of their tuning curves.

    Parameters
    ----------
    responses : array_like
        (directions, conditions..., units), e.g. (dir, sf, tf, unit).
    valid : array_like of bool, optional
        Shape of the condition axes (e.g. (sf, tf)); False = the condition may not be chosen
        (a condition the block cannot sample, ``ephys.sampling``). Default: every condition.
    k : int
        How many conditions to rank.

    Returns
    -------
    numpy.ndarray
        int (k, units): flat indices into the condition axes, best first; −1 where fewer than k
        conditions are valid. Ties go to the lower index.
    """
    r = np.asarray(responses)
    if r.ndim < 2:
        raise TuningError(f"responses must be (directions, [conditions...], units), got {r.shape}")
    n_dir, n_units = r.shape[0], r.shape[-1]
    peak = r.reshape(n_dir, -1, n_units).max(axis=0)  # (K, U)
    if not np.isfinite(peak).all():
        raise TuningError("responses contain NaN or Inf")
    ok = np.ones(peak.shape[0], dtype=bool) if valid is None else np.asarray(valid, dtype=bool).ravel()
    if ok.size != peak.shape[0]:
        raise TuningError(f"valid has {ok.size} conditions, the responses {peak.shape[0]}")
    order = np.argsort(np.where(ok[:, None], -peak, np.inf), axis=0, kind="stable")[:k]  # (k, U)
    n_ok = int(ok.sum())
    out = np.full((k, n_units), -1, dtype=np.int64)
    out[: min(k, n_ok)] = order[: min(k, n_ok)]
    return out


def curves_at(responses, condition) -> np.ndarray:
    """Tuning curves (units, directions) of each unit at its own condition (flat index per unit,
    as returned by :func:`ranked_conditions`; ≥ 0)."""
    r = np.asarray(responses)
    n_dir, n_units = r.shape[0], r.shape[-1]
    flat = r.reshape(n_dir, -1, n_units)
    idx = np.asarray(condition, dtype=np.int64)
    return np.ascontiguousarray(np.take_along_axis(flat, idx[None, None, :], axis=1)[:, 0, :].T)


def select_best_condition(responses, valid=None) -> tuple[np.ndarray, np.ndarray]:
    """Tuning curve at each unit's best stimulus condition.

    ``responses``: (directions, conditions..., units), e.g. (dir, sf, tf, unit). The best condition
    is the valid one (``valid``: bool over the condition axes, default all) with the largest peak
    over directions. Returns ``(curves (units, directions), best (units,) flat index into the
    condition axes)``; use ``np.unravel_index(best, shape[1:-1])``.
    """
    best = ranked_conditions(responses, valid, k=1)[0]
    if (best < 0).any():
        raise TuningError("no valid stimulus condition to choose from")
    return curves_at(responses, best), best


def direction_agreement(a_deg, b_deg, tolerance_deg: float = 45.0) -> np.ndarray:
    """Whether two preferred directions (deg) lie within ``tolerance_deg`` of each other round the
    circle (NaN in either gives False). Chance for independent uniform directions:
    tolerance / 180°."""
    d = np.abs(np.mod(np.asarray(a_deg, dtype=np.float64) - np.asarray(b_deg, dtype=np.float64) + 180.0, 360.0) - 180.0)
    return np.nan_to_num(d, nan=np.inf) <= tolerance_deg


def median_ci_ranks(n: int, level: float = 0.95) -> tuple[int, int, float]:
    """1-based ranks (l, u = n + 1 − l) of the order-statistic confidence interval of a median
    from n values, and its exact coverage 1 − 2·F(l − 1), F = Binomial(n, ½) CDF. ``l = 0``
    (interval undefined) when even [x_(1), x_(n)] covers less than ``level``."""
    if not 0.0 < level < 1.0:
        raise TuningError(f"confidence level must be in (0, 1), got {level}")
    if n < 1:
        return 0, 0, float("nan")
    # smallest k with F(k) >= (1 - level)/2; then F(k - 1) < (1 - level)/2 <= F(k): l = k is the
    # largest rank whose two tails together stay within 1 - level
    k = int(stats.binom.ppf((1.0 - level) / 2.0, n, 0.5))
    if 2.0 * stats.binom.cdf(k, n, 0.5) <= 1.0 - level:  # ppf lands on k with F(k) == target exactly
        k += 1
    if k < 1:
        return 0, 0, float("nan")
    return k, n + 1 - k, float(1.0 - 2.0 * stats.binom.cdf(k - 1, n, 0.5))


def median_ci(x, level: float = 0.95) -> dict[str, float]:
    """Median of ``x`` (NaN dropped and counted, ±inf kept) with its exact distribution-free
    order-statistic confidence interval (see the module docstring). Returns ``median, ci_low,
    ci_high, coverage, n, n_nan``; the interval is NaN when n is too small for ``level``."""
    a = np.asarray(x, dtype=np.float64).ravel()
    nan = np.isnan(a)
    a = np.sort(a[~nan])
    out = {"median": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "coverage": float("nan"),
           "n": int(a.size), "n_nan": int(nan.sum())}
    if a.size == 0:
        return out
    out["median"] = float(np.median(a))
    lo, hi, cov = median_ci_ranks(a.size, level)
    if lo >= 1:
        out.update(ci_low=float(a[lo - 1]), ci_high=float(a[hi - 1]), coverage=cov)
    return out


# -- pattern / component motion ---------------------------------------------------------------------
def _circular_shift(curves: np.ndarray, d: np.ndarray, shift_deg: float) -> np.ndarray:
    """curves evaluated at θ_k − shift (linear interpolation round the circle)."""
    step = 360.0 / d.size
    pos = (-shift_deg / step) % d.size  # fractional index offset
    i0 = int(np.floor(pos))
    f = pos - i0
    a = np.roll(curves, -i0, axis=1)
    b = np.roll(curves, -(i0 + 1), axis=1)
    return (1 - f) * a + f * b


def pattern_component_index(plaid_curves, grating_curves, directions_deg, plaid_angle: float = 120.0,
                            criterion: float = 1.28) -> dict[str, np.ndarray]:
    """Pattern vs component motion from plaid and grating tuning (Movshon, Adelson, Gizzi & Newsome
    1985; Fisher-Z form of Smith, Majaj & Movshon 2005).

    Both curves: (units, directions), plaid direction = direction of pattern motion. Predictions:
    pattern P(θ) = G(θ); component C(θ) = G(θ − a/2) + G(θ + a/2), a = ``plaid_angle`` (grating
    curve interpolated linearly where the shift is off the sampled directions). Partial
    correlations R_p, R_c; Z = atanh(R) · sqrt(n − 3), n = number of directions.
    ``cls`` = +1 pattern (Z_p − max(Z_c, 0) ≥ criterion), −1 component (Z_c − max(Z_p, 0) ≥
    criterion), 0 unclassed; NaN for units with a constant curve or prediction.
    """
    d = check_directions(directions_deg)
    p = check_curves(plaid_curves, d.size)
    g = check_curves(grating_curves, d.size)
    if p.shape != g.shape:
        raise TuningError(f"plaid curves {p.shape} and grating curves {g.shape} differ in shape")
    comp = _circular_shift(g, d, plaid_angle / 2) + _circular_shift(g, d, -plaid_angle / 2)

    def corr(a, b):
        a = a - a.mean(axis=1, keepdims=True)
        b = b - b.mean(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))

    lim = 1 - 1e-6  # a perfect correlation would make the other partial correlation 0/0
    rp, rc, rpc = (np.clip(r, -lim, lim) for r in (corr(p, g), corr(p, comp), corr(g, comp)))
    with np.errstate(divide="ignore", invalid="ignore"):
        Rp = (rp - rc * rpc) / np.sqrt((1 - rc**2) * (1 - rpc**2))
        Rc = (rc - rp * rpc) / np.sqrt((1 - rp**2) * (1 - rpc**2))
    eps = 1e-9
    scale = np.sqrt(max(d.size - 3, 1))
    Zp = np.arctanh(np.clip(Rp, -1 + eps, 1 - eps)) * scale
    Zc = np.arctanh(np.clip(Rc, -1 + eps, 1 - eps)) * scale
    cls = np.where(Zp - np.maximum(Zc, 0) >= criterion, 1, np.where(Zc - np.maximum(Zp, 0) >= criterion, -1, 0))
    ok = np.isfinite(Zp) & np.isfinite(Zc)
    return {"r_pattern": Rp, "r_component": Rc, "z_pattern": Zp, "z_component": Zc,
            "pattern_index": Zp - Zc, "cls": np.where(ok, cls, 0).astype(np.int64), "valid": ok}


def fraction_ci(mask, level: float = 0.95) -> dict[str, float]:
    """Fraction of True in ``mask`` with its exact (Clopper–Pearson) binomial confidence interval.
    Returns ``fraction, ci_low, ci_high, k, n`` (NaN for an empty mask)."""
    a = np.asarray(mask, dtype=bool).ravel()
    n, k = int(a.size), int(a.sum())
    if n == 0:
        return {"fraction": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "k": 0, "n": 0}
    if not 0.0 < level < 1.0:
        raise TuningError(f"confidence level must be in (0, 1), got {level}")
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return {"fraction": k / n, "ci_low": float(ci.low), "ci_high": float(ci.high), "k": k, "n": n}

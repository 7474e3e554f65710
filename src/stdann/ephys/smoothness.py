"""Smoothness of a map at the unit level: how alike the preferred directions of nearby units are.

The curve is the mean circular |Δ preferred direction| of unit pairs binned by cortical distance,
beside the same curve after shuffling the units' positions (chance = period / 4, 90° for directions);
the index compares short distances with the shuffle, and its permutation test gives the p-value
:mod:`stdann.ephys.verdicts` reads to call a map ordered.
"""

from __future__ import annotations

import numpy as np

from stdann.ephys.maps import MapError


def smoothness_curve(coords, pref_deg, bins, shuffle: bool = True, seed: int = 0, max_units: int = 3000,
                     period: float = 360.0) -> dict[str, np.ndarray]:
    """Mean |Δ preferred direction| (deg, circular, 0…period/2) of unit pairs binned by cortical
    distance (mm), over all pairs of up to ``max_units`` randomly chosen units; with ``shuffle``
    the same curve after a random permutation of the units' positions (the control). Chance level
    is period/4 (90° for directions)."""
    xy = np.asarray(coords, dtype=np.float64)
    th = np.asarray(pref_deg, dtype=np.float64).ravel()
    if xy.shape != (th.size, 2):
        raise MapError(f"coords must be (N, 2) matching {th.size} preferences, got {xy.shape}")
    keep = np.isfinite(th) & np.isfinite(xy).all(axis=1)
    xy, th = xy[keep], th[keep]
    if th.size < 2:
        raise MapError("smoothness needs at least 2 units with finite preferences")
    rng = np.random.default_rng(seed)
    if th.size > max_units:
        sel = rng.choice(th.size, max_units, replace=False)
        xy, th = xy[sel], th[sel]
    bins = np.asarray(bins, dtype=np.float64)
    iu, ju = np.triu_indices(th.size, k=1)
    dth = np.abs(np.mod(th[iu] - th[ju] + period / 2, period) - period / 2)

    def curve(pos):
        dist = np.hypot(*(pos[iu] - pos[ju]).T)
        idx = np.digitize(dist, bins) - 1
        ok = (idx >= 0) & (idx < bins.size - 1)
        cnt = np.bincount(idx[ok], minlength=bins.size - 1)
        s = np.bincount(idx[ok], weights=dth[ok], minlength=bins.size - 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return s / cnt, cnt

    out = {"bin_edges": bins, "bin_centres": (bins[:-1] + bins[1:]) / 2}
    out["mean_delta"], out["n_pairs"] = curve(xy)
    if shuffle:
        out["shuffled_delta"], _ = curve(xy[rng.permutation(th.size)])
    out["n_units"] = np.array(th.size)
    return out


def smoothness_index(coords, pref_deg, short_mm: float, seed: int = 0, max_units: int = 3000,
                     period: float = 360.0) -> dict[str, float]:
    """Smoothness index of a unit map: 1 − mean|Δpref|(d < short_mm) / the same with positions shuffled.

    0 = no spatial order, 1 = neighbours share their preference exactly, < 0 = anti-ordered.

    Parameters
    ----------
    coords : array (units, 2)
        Cortical positions in mm.
    pref_deg : array (units,)
        Preferred directions in degrees (non-finite ones are left out).
    short_mm : float
        The distance below which two units count as neighbours.
    seed, max_units : int
        The random subset of units (at most ``max_units``) and the shuffles.
    period : float
        360 for directions, 180 for axes.

    Returns
    -------
    dict
        ``index``, the values it is made of (``mean_delta_short``, ``shuffled_delta_short``,
        ``n_pairs_short``, ``short_mm``) and the permutation test's ``p_value``, ``n_shuffles``,
        ``shuffled_mean``, ``shuffled_sd`` (:func:`smoothness_permutation_test`)."""
    c = smoothness_curve(coords, pref_deg, [0.0, short_mm], True, seed, max_units, period)
    a, b = float(c["mean_delta"][0]), float(c["shuffled_delta"][0])
    out = {"index": 1.0 - a / b if b > 0 else float("nan"), "mean_delta_short": a, "shuffled_delta_short": b,
           "n_pairs_short": int(c["n_pairs"][0]), "short_mm": float(short_mm)}
    out.update(smoothness_permutation_test(coords, pref_deg, short_mm, a, seed=seed, max_units=max_units, period=period))
    return out


def smoothness_permutation_test(coords, pref_deg, short_mm: float, observed: float, n_shuffles: int = 50,
                                seed: int = 0, max_units: int = 3000, period: float = 360.0) -> dict[str, float]:
    """One-sided permutation test of map order: the fraction of position shuffles whose short-
    distance mean |Δpref| is at most the observed one (p, with the +1 correction), and the
    shuffles' mean and s.d. (so ``index`` can be read as a z-score)."""
    rng = np.random.default_rng(seed + 1)
    xy = np.asarray(coords, dtype=np.float64)
    th = np.asarray(pref_deg, dtype=np.float64).ravel()
    keep = np.isfinite(th) & np.isfinite(xy).all(axis=1)
    xy, th = xy[keep], th[keep]
    if th.size > max_units:
        sel = np.random.default_rng(seed).choice(th.size, max_units, replace=False)
        xy, th = xy[sel], th[sel]
    if th.size < 3:
        return {"p_value": float("nan"), "shuffled_mean": float("nan"), "shuffled_sd": float("nan"), "n_shuffles": 0}
    # Pairs closer than short_mm are fixed by the positions; shuffling the preferences over the
    # units is the same null as shuffling the positions, and much cheaper.
    iu, ju = np.triu_indices(th.size, k=1)
    close = np.hypot(*(xy[iu] - xy[ju]).T) < short_mm
    iu, ju = iu[close], ju[close]
    if iu.size == 0:
        return {"p_value": float("nan"), "shuffled_mean": float("nan"), "shuffled_sd": float("nan"), "n_shuffles": 0}
    null = np.empty(n_shuffles)
    for k in range(n_shuffles):  # a loop over shuffles (50), each vectorised over all close pairs
        t = th[rng.permutation(th.size)]
        null[k] = np.abs(np.mod(t[iu] - t[ju] + period / 2, period) - period / 2).mean()
    p = (1 + np.sum(null <= observed)) / (n_shuffles + 1)
    return {"p_value": float(p), "shuffled_mean": float(null.mean()), "shuffled_sd": float(null.std()),
            "n_shuffles": int(n_shuffles)}

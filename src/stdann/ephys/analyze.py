"""The electrophysiology of one network's blocks, and the metrics.json record of a run.

This module computes; it loads no checkpoint and draws no figure (``stdann.orchestration.run_analysis``
loads the networks and calls it, ``stdann.reports.figures`` draws from its ``details``).

Rules (written into metrics.json under ``rules``):

* response = block output after its final ReLU, averaged over frames and over ``n_phases`` (>= 8)
  evenly spaced starting phases (BatchNorm in eval mode); tuning curve at each unit's best
  (sf, tf) (largest peak) among the conditions the block samples without aliasing
  (``ephys.sampling``: sf · S_in < ½ and tf · T_in < ½ for the map the block's stage reads);
* blank = the response to a mean-grey clip; blank-subtracted DSI and vector strength
  (1 − CV_direction of the curve minus the blank, clipped at 0) beside the classic DSI; the
  consistency of the preferred direction between the best and the second-best sampled condition
  (agreement within 45°, chance 0.25). The headline direction verdict is the trained-vs-untrained
  verdict of the median blank-subtracted vector strength (``ephys.registry.DIRECTION_HEADLINE``);
* random-dot kinematograms: one dot field per repeat shared by every direction and coherence,
  trajectories centred on the middle frame and shifted by as many frames as the block's temporal
  stride (each block averages its own offsets);
* responsive = peak > ``responsive_threshold`` × 99th percentile of the block's peaks (and > 0),
  and driven: peak ≥ ``driven_ratio`` × the unit's grey-screen response (tuning.driven_mask);
  direction selective = DSI > 1/3 (⇔ DI > 0.5);
* medians with the exact order-statistic 95% CI, fractions with the exact Clopper–Pearson 95% CI
  (ephys.tuning);
* population bias: R of the responsive units' preferred directions, its mean direction, and the
  95th percentile of R for the block's channels with directions drawn at random
  (ephys.population);
* maps: each responsive unit contributes (1 − CV_direction)·e^{iθ} (axial map: (1 − CV_axial)·
  e^{2iθ_axis}) through a Gaussian kernel whose FWHM is chosen against the measured column spacing
  (ephys.maps.choose_kernel; or ``map_window_mm`` when > 0). Column spacing Λ, pinwheels and their
  density are measured on the smoothed map with its mean vector removed; the map with its mean is
  reported beside (``map_with_mean``). Controls: positions shuffled among the responsive units
  (same kernel, mean removed), a random map with the analysed map's spectrum;
* smoothness index = 1 − mean |Δ preferred direction| of unit pairs closer than the kernel FWHM /
  the same with positions shuffled; map order verdict from its permutation p-value
  (ephys.verdicts).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stdann.ephys import maps as M
from stdann.ephys import pinwheels as P
from stdann.ephys import smoothness as S
from stdann.ephys import tuning as TU
from stdann.ephys.errors import EphysError
from stdann.ephys.population import direction_bias
from stdann.ephys.recording import record_set
from stdann.ephys.sampling import (BlockSampling, block_sampling, dot_offsets, sampled_conditions, sampling_summary)
from stdann.ephys.stimuli import STIMULUS_SETS, blank_set, directions, rdk_set
from stdann.ephys.verdicts import map_order


MIN_UNITS_FOR_MAP = 10


CONSISTENCY_TOLERANCE_DEG = 45.0  # preferred directions at the best and second-best condition "agree"


MEASUREMENT_VERSION = 3  # metrics.json "measurement": 2 = phases, aliasing, blank, shared dot fields; 3 = + driven units


class AnalysisError(EphysError):
    """A run folder or request that cannot be analysed; the message says why and what to do."""


def unit_channels(dims) -> np.ndarray:
    """Channel of every unit of a block with dims (C, H, W), units in row-major (C, H, W) order."""
    c, h, w = (int(v) for v in dims)
    return np.repeat(np.arange(c), h * w)


# -- one block of one network ------------------------------------------------------------------------------
def analyze_block(grating_resp: np.ndarray, positions, ecfg, plaid_resp=None, rdk_resp=None, blank=None,
                  sampling: BlockSampling | None = None, frames: int | None = None, maps: bool = True
                  ) -> tuple[dict, dict]:
    """Metrics of one block of one network.

    ``grating_resp``: (directions, sf, tf, units) phase-averaged responses; ``plaid_resp`` the
    same shape for plaids; ``rdk_resp``: (directions, coherences, offsets, units) (or without the
    offset axis); ``blank``: (units,) response to the mean-grey screen (None: no blank-based
    metrics); ``sampling``: the block's strides (None: every grating condition counts as sampled,
    one dot offset); ``frames``: clip length (for the dot offsets); ``maps``: False skips the maps
    (the single-unit measures only). ``positions`` a
    LayerPositions (``coordinates``, ``dims``, ``name``). Returns ``(summary for metrics.json,
    details for tables and figures)``.
    """
    dirs = directions(ecfg.n_directions)
    n_units = _checked_units(grating_resp, positions)
    n_sf, n_tf = grating_resp.shape[1], grating_resp.shape[2]
    valid = (sampled_conditions(ecfg.spatial_frequencies, ecfg.temporal_frequencies, sampling)
             if sampling is not None else np.ones((n_sf, n_tf), dtype=bool))
    s: dict[str, Any] = {"n_units": int(n_units)}
    if sampling is not None:
        s["sampling"] = sampling_summary(ecfg.spatial_frequencies, ecfg.temporal_frequencies, sampling,
                                         frames or sampling.temporal_output)
    if not valid.any():
        s.update(n_responsive=0, n_excluded_unresponsive=int(n_units),
                 note="no grating condition this block samples without aliasing (see sampling): every metric is null; "
                      "add lower spatial / temporal frequencies")
        return s, _unmeasured_details(positions)
    ranked = TU.ranked_conditions(grating_resp, valid, k=2)
    best = ranked[0]
    curves = TU.curves_at(grating_resp, best)
    peak = curves.max(axis=1)
    resp = TU.responsive_mask(peak, ecfg.responsive_threshold)
    n_undriven = 0
    if blank is not None:  # and driven by the stimulus, well above the grey screen (TU.driven_mask)
        driven = TU.driven_mask(peak, blank, ecfg.driven_ratio)
        n_undriven = int((resp & ~driven).sum())
        resp &= driven
    n_resp = int(resp.sum())
    coords_all = np.asarray(positions.coordinates, dtype=np.float64)
    channel = unit_channels(positions.dims)
    s.update(n_responsive=n_resp, n_excluded_unresponsive=int(n_units - n_resp), n_excluded_undriven=n_undriven,
             n_all_zero=int((peak <= 0).sum()))
    m = TU.tuning_metrics(curves[resp], dirs) if n_resp else None
    details: dict[str, Any] = {"curves": curves, "best": best, "responsive": resp, "metrics": m, "peak": peak,
                               "coordinates": coords_all, "channel": channel}
    if n_resp == 0:
        s["note"] = "no responsive unit: every metric is null"
        return s, details
    bw = TU.direction_bandwidth(curves[resp], dirs)
    details["bandwidth"] = bw
    s.update(_selectivity(m, bw, ecfg))
    if blank is not None:
        bs, bd = _blank_metrics(curves[resp], np.asarray(blank, dtype=np.float64)[resp], dirs)
        s.update(bs)
        details.update(bd)
    second = ranked[1][resp]
    selective = details.get("dsi_blank", m["dsi"]) > ecfg.dsi_criterion  # blank-subtracted when there is a blank
    cs, cd = _consistency(m["preferred_direction"], selective, grating_resp[..., resp], second, dirs)
    s.update(cs)
    details.update(cd)
    isf, itf = np.unravel_index(best[resp], (n_sf, n_tf))
    s["best_sf_counts"] = np.bincount(isf, minlength=n_sf).tolist()
    s["best_tf_counts"] = np.bincount(itf, minlength=n_tf).tolist()
    s["direction_bias"] = direction_bias(m["preferred_direction"], channel[resp])

    if maps:
        _add_maps(s, details, coords_all, resp, m, ecfg)
    else:
        s["map_note"] = "maps not analysed (not asked for)"
    if plaid_resp is not None:
        ps, pd = _plaids(plaid_resp, best, curves, resp, dirs, ecfg)
        s["plaids"], details["plaids"] = ps, pd
    if rdk_resp is not None:
        n_off = dot_offsets(sampling, frames or sampling.temporal_output) if sampling is not None else 1
        s["rdk"] = _rdk(rdk_resp, dirs, ecfg, n_off, blank)
    return s, details


def _checked_units(grating_resp: np.ndarray, positions) -> int:
    """The block's number of units, refused when the positions were made for another network or the
    responses are not finite."""
    n_units = grating_resp.shape[-1]
    if positions.num_units != n_units:
        raise AnalysisError(
            f"{positions.name}: positions hold {positions.num_units} units (C,H,W = {positions.dims}) but the "
            f"block gives {n_units} at this clip size; the positions were made for another width or clip size"
        )
    if not np.isfinite(grating_resp).all():
        raise AnalysisError(f"{positions.name}: responses contain NaN/Inf (diverged weights?)")
    return int(n_units)


def _add_maps(s: dict, details: dict, coords_all: np.ndarray, resp: np.ndarray, m: dict, ecfg) -> None:
    """The block's maps (:func:`_maps`) into the summary ``s`` and ``details``, or a note saying why none."""
    n_resp = int(resp.sum())
    if n_resp < MIN_UNITS_FOR_MAP:
        s["map_note"] = f"maps not analysed: {n_resp} responsive units (< {MIN_UNITS_FOR_MAP})"
        return
    extent = (coords_all[:, 0].min(), coords_all[:, 0].max(), coords_all[:, 1].min(), coords_all[:, 1].max())
    try:
        ms, md = _maps(coords_all[resp], m, extent, ecfg, s["direction_bias"])
    except M.MapError as e:
        s["map_note"] = f"maps not analysed: {e}"
        return
    s.update(ms)
    details.update(md)


def _unmeasured_details(positions) -> dict:
    """The details (tables, figures) of a block without a single sampled grating condition."""
    n = positions.num_units
    return {"curves": None, "best": np.full(n, -1), "responsive": np.zeros(n, dtype=bool), "metrics": None,
            "peak": np.zeros(n), "coordinates": np.asarray(positions.coordinates, dtype=np.float64),
            "channel": unit_channels(positions.dims)}


def _blank_metrics(curves: np.ndarray, blank: np.ndarray, dirs: np.ndarray) -> tuple[dict, dict]:
    """Blank-subtracted DSI and vector strength, and the blank / peak ratio, of the responsive units'
    curves (units, directions) with their blank responses (units,)."""
    mb = TU.tuning_metrics(curves, dirs, baseline=blank)
    peak = curves.max(axis=1)
    ratio = blank / peak
    vs = 1.0 - mb["cv_direction"]
    s: dict[str, Any] = {}
    for key, vals in (("blank_ratio", ratio), ("dsi_blank", mb["dsi"]), ("vector_strength_blank", vs)):
        st = TU.median_ci(vals)
        s[f"{key}_median"] = st["median"]
        s[f"{key}_ci"] = [st["ci_low"], st["ci_high"]]
    s["n_blank_excluded"] = int((~mb["valid"]).sum())
    return s, {"blank": blank, "dsi_blank": mb["dsi"], "vector_strength_blank": vs, "blank_ratio": ratio}


def _consistency(pref: np.ndarray, selective: np.ndarray, responses: np.ndarray, second: np.ndarray,
                 dirs: np.ndarray) -> tuple[dict, dict]:
    """Whether each direction-selective unit's preferred direction at its best condition agrees
    (within ``CONSISTENCY_TOLERANCE_DEG``) with that at its second-best sampled condition; the
    fraction with its exact CI and the verdict against chance. ``pref``, ``selective`` (blank-subtracted
    DSI above the criterion at the best condition), ``second`` (units,) and ``responses`` (directions,
    conditions..., units) hold the responsive units only. Units that are not direction selective
    are left out: the vector sum of a flat curve points wherever small systematic asymmetries push
    it, the same way at every condition (a direction-blind network's flat curves agreed for
    0.69-0.79 of its units)."""
    has = second >= 0
    if not has.any():
        return ({"direction_consistency_note": "fewer than 2 grating conditions sampled: consistency not measured"},
                {})
    pref2 = np.full(pref.size, np.nan)
    pref2[has] = TU.tuning_metrics(TU.curves_at(responses[..., has], second[has]), dirs)["preferred_direction"]
    agree = TU.direction_agreement(pref, pref2, CONSISTENCY_TOLERANCE_DEG)
    counted = has & selective & np.isfinite(pref) & np.isfinite(pref2)
    st = TU.fraction_ci(agree[counted])
    chance = CONSISTENCY_TOLERANCE_DEG / 180.0
    above = bool(np.isfinite(st["ci_low"]) and st["ci_low"] > chance)
    detail = {"k": st["k"], "n": st["n"], "chance": chance, "tolerance_deg": CONSISTENCY_TOLERANCE_DEG,
              "above_chance": above,
              "text": (f"above chance (95% CI above {chance:.2f})" if above else f"not above chance ({chance:.2f})")
              if st["n"] else "no direction-selective unit to test"}
    return ({"direction_consistency": st["fraction"], "direction_consistency_ci": [st["ci_low"], st["ci_high"]],
             "direction_consistency_detail": detail},
            {"consistent": np.where(counted, agree.astype(float), np.nan), "preferred_direction_second": pref2})


def _selectivity(m: dict, bandwidth: np.ndarray, ecfg) -> dict:
    s: dict[str, Any] = {}
    for key, vals in (("dsi", m["dsi"]), ("di", m["di"]), ("cv_direction", m["cv_direction"]),
                      ("cv_axial", m["cv_axial"]), ("axial_ratio", m["axial_ratio"]), ("bandwidth", bandwidth)):
        st = TU.median_ci(vals)
        s[f"{key}_median"] = st["median"]
        s[f"{key}_ci"] = [st["ci_low"], st["ci_high"]]
    for key, mask in (("fraction_direction_selective", m["dsi"] > ecfg.dsi_criterion),
                      ("fraction_di_ge_half", m["di"] >= 0.5)):
        st = TU.fraction_ci(mask)
        s[key] = st["fraction"]
        s[f"{key}_ci"] = [st["ci_low"], st["ci_high"]]
    s["n_bandwidth_excluded_flat"] = int(np.isnan(bandwidth).sum())
    s["by_axis"] = by_axis(m)
    return s


def axis_groups(preferred_axis_deg) -> dict[str, np.ndarray]:
    """Masks of the units whose preferred axis (deg, 180°-periodic) lies within 45° of the horizontal
    (0°/180°) and of the vertical (90°); a unit at exactly 45° counts as horizontal."""
    a = np.deg2rad(np.asarray(preferred_axis_deg, dtype=np.float64))
    horizontal = np.abs(np.cos(a)) >= np.abs(np.sin(a))
    return {"horizontal": horizontal, "vertical": ~horizontal}


def by_axis(m: dict) -> dict[str, dict]:
    """DSI, axial ratio and CV_axial (medians with exact 95% CIs) of the horizontal- and the
    vertical-axis units. A horizontal flip reverses horizontal motion only, so flips that differ
    between the two views of a positive pair would act on the first group (docs/emergence.md §5)."""
    out = {}
    for name, mask in axis_groups(m["preferred_axis"]).items():
        g: dict[str, Any] = {"n_units": int(mask.sum())}
        for key in ("dsi", "axial_ratio", "cv_axial"):
            st = TU.median_ci(m[key][mask])
            g[f"{key}_median"] = st["median"]
            g[f"{key}_ci"] = [st["ci_low"], st["ci_high"]]
        out[name] = g
    return out


def _maps(coords, m, extent, ecfg, bias: dict) -> tuple[dict, dict]:
    """Smoothed maps (kernel against the column spacing), pinwheels on the mean-removed map,
    controls and smoothness; (summary, details)."""
    rng = np.random.default_rng(ecfg.seed)
    pref, w_dir = m["preferred_direction"], 1.0 - m["cv_direction"]
    if ecfg.map_window_mm > 0:
        kernel = {"kernel_fwhm_mm": float(ecfg.map_window_mm), "kernel_rule": "fixed by ephys.map_window_mm"}
    else:
        kernel = M.choose_kernel(coords, w_dir * np.exp(1j * np.deg2rad(pref)), extent, ecfg.map_pixels_per_window)
        kernel["kernel_rule"] = (f"max({M.FINE_KERNEL_UNIT_SPACINGS:g} unit spacings, {M.KERNEL_FRACTION_OF_SPACING:g} "
                                 "x column spacing of the map smoothed over 2 unit spacings)")
    window = kernel["kernel_fwhm_mm"]
    pixel = window / ecfg.map_pixels_per_window
    dmap = M.direction_map(coords, pref, w_dir, pixel, window, extent)
    z = M.remove_mean(dmap)
    st = P.pinwheel_stats(z, pixel, dmap.valid)
    s: dict[str, Any] = {"maps": {**kernel, "pixel_mm": float(pixel),
                                  "analysed_map": "smoothed map with its mean vector removed",
                                  "mean_removed_map_shown": bool(bias["above_chance"])}}
    s["column_spacing_mm"], s["pinwheel_density"] = st["column_spacing_mm"], st["density"]
    s["pinwheels"] = {k: st[k] for k in ("n_pinwheels", "n_plus", "n_minus", "area_mm2", "n_plaquettes_excluded")}
    s["pinwheel_density_ci"] = list(P.pinwheel_density_ci(st["n_pinwheels"], st["area_mm2"], st["column_spacing_mm"]))
    s["map_span_spacings"] = P.map_span(st["area_mm2"], st["column_spacing_mm"])
    s["pinwheel_fracture"] = P.pinwheel_fracture_summary(z, pixel, st["column_spacing_mm"], dmap.valid)
    with_mean = P.pinwheel_stats(dmap.z, pixel, dmap.valid)
    zv = dmap.z[dmap.valid]
    s["map_with_mean"] = {"pinwheel_density": with_mean["density"], "n_pinwheels": with_mean["n_pinwheels"],
                          "mean_vector_length": float(np.abs(zv.mean())), "rms_length": float(np.sqrt(np.mean(np.abs(zv) ** 2)))}
    out: dict[str, Any] = {"direction_map": dmap, "direction_map_mean_removed": z,
                           "pinwheels": P.pinwheels_on_sheet(P.find_pinwheels(z, pixel, dmap.valid), dmap)}
    amap = M.axial_map(coords, m["preferred_axis"], 1.0 - m["cv_axial"], pixel, window, extent)
    za = M.remove_mean(amap)
    ast = P.pinwheel_stats(za, pixel, amap.valid)
    s["axial_map"] = {"column_spacing_mm": ast["column_spacing_mm"], "pinwheel_density": ast["density"],
                      "n_pinwheels": ast["n_pinwheels"]}
    out.update(axial_map=amap, axial_map_mean_removed=za,
               axial_pinwheels=P.pinwheels_on_sheet(P.find_pinwheels(za, pixel, amap.valid), amap))
    # controls: positions shuffled among the responsive units (same kernel); a random map with the same spectrum
    shuf = M.direction_map(coords[rng.permutation(len(coords))], pref, w_dir, pixel, window, extent)
    sst = P.pinwheel_stats(M.remove_mean(shuf), pixel, shuf.valid)
    rz = M.random_map_same_spectrum(z, seed=ecfg.seed)
    rst = P.pinwheel_stats(rz, pixel, dmap.valid)
    s["controls"] = {
        "shuffled_positions": {"pinwheel_density": sst["density"], "column_spacing_mm": sst["column_spacing_mm"]},
        "random_map_same_spectrum": {"pinwheel_density": rst["density"], "column_spacing_mm": rst["column_spacing_mm"],
                                     "pinwheel_fracture": P.pinwheel_fracture_summary(rz, pixel, rst["column_spacing_mm"],
                                                                                      dmap.valid),
                                     "note": "phases randomised, spectrum of the analysed (mean-removed) map"},
    }
    sm = S.smoothness_index(coords, pref, window, seed=ecfg.seed, max_units=ecfg.smoothness_units)
    s["smoothness"] = sm["index"]
    s["smoothness_detail"] = sm
    s["map_order"] = map_order(sm["p_value"])
    side = max(extent[1] - extent[0], extent[3] - extent[2])
    out["smoothness_curve"] = S.smoothness_curve(coords, pref, np.linspace(0, side / 2, 16), True, ecfg.seed,
                                                 ecfg.smoothness_units)
    return s, out


def _plaids(plaid_resp, best, curves, resp, dirs, ecfg) -> tuple[dict, dict]:
    """Pattern / component motion at each unit's best (sf, tf)."""
    n_units = plaid_resp.shape[-1]
    flat = plaid_resp.reshape(plaid_resp.shape[0], -1, n_units)
    pc = np.take_along_axis(flat, best[None, None, :], axis=1)[:, 0, :].T
    pci = TU.pattern_component_index(pc[resp], curves[resp], dirs, ecfg.plaid_angle)
    ok = pci["valid"]
    return ({"pattern_index_median": float(np.median(pci["pattern_index"][ok])) if ok.any() else None,
             "fraction_pattern": float(np.mean(pci["cls"][ok] == 1)) if ok.any() else None,
             "fraction_component": float(np.mean(pci["cls"][ok] == -1)) if ok.any() else None,
             "n_classified_of": int(ok.sum()), "n_excluded_constant": int((~ok).sum()),
             "criterion": "Z difference >= 1.28 (Movshon et al. 1985; Fisher Z, df = n_directions - 3)"}, pci)


def _rdk(rdk_resp, dirs, ecfg, n_offsets: int = 1, blank=None) -> dict:
    """Tuning at full coherence and the coherence series of random-dot kinematograms.
    ``rdk_resp``: (directions, coherences, offsets, units), averaged here over the block's first
    ``n_offsets`` offsets (``ephys.sampling``)."""
    r = np.asarray(rdk_resp)
    r = r[:, :, None] if r.ndim == 3 else r
    n_offsets = min(int(n_offsets), r.shape[2])  # as many as were recorded
    r = r[:, :, :n_offsets].mean(axis=2)
    coh = np.asarray(ecfg.rdk_coherences, dtype=float)
    ic = int(np.argmax(coh))
    rc = r[:, ic, :].T
    rr = TU.responsive_mask(rc.max(axis=1), ecfg.responsive_threshold)
    if blank is not None:
        rr &= TU.driven_mask(rc.max(axis=1), blank, ecfg.driven_ratio)
    out: dict[str, Any] = {"coherence": float(coh[ic]), "n_responsive": int(rr.sum()),
                           "density_dots_per_px2": float(ecfg.rdk_density), "speed_px_per_frame": float(ecfg.rdk_speed),
                           "repeats": int(ecfg.rdk_repeats), "offsets": int(n_offsets)}
    if not rr.any():
        return out
    mr = TU.tuning_metrics(rc[rr], dirs)
    st = TU.median_ci(mr["dsi"])
    vs = TU.median_ci(1.0 - mr["cv_direction"])
    out.update(dsi_median=st["median"], dsi_ci=[st["ci_low"], st["ci_high"]],
               vector_strength_median=vs["median"], vector_strength_ci=[vs["ci_low"], vs["ci_high"]],
               fraction_direction_selective=float(np.mean(mr["dsi"] > ecfg.dsi_criterion)))
    if blank is not None:
        mb = TU.tuning_metrics(rc[rr], dirs, baseline=np.asarray(blank, dtype=np.float64)[rr])
        sb = TU.median_ci(mb["dsi"])
        out.update(dsi_blank_median=sb["median"], dsi_blank_ci=[sb["ci_low"], sb["ci_high"]])
    ipk = np.argmax(rc[rr], axis=1)
    inull = (ipk + dirs.size // 2) % dirs.size
    series = []
    for j, c in enumerate(coh):  # a handful of coherence levels
        rj = r[:, j, :].T[rr]
        rp, rn = rj[np.arange(rj.shape[0]), ipk], rj[np.arange(rj.shape[0]), inull]
        with np.errstate(invalid="ignore", divide="ignore"):
            d = (rp - rn) / (rp + rn)
        series.append({"coherence": float(c), "median_direction_index": float(np.nanmedian(d))
                       if np.isfinite(d).any() else None, "n_excluded_zero": int((~np.isfinite(d)).sum())})
    out["coherence_series"] = series
    out["coherence_series_rule"] = ("(R(pref) - R(null)) / (R(pref) + R(null)) at each unit's preferred "
                                    "direction for 100% coherence")
    return out


# -- a whole network ---------------------------------------------------------------------------------------------
def check_stimuli(stimuli) -> tuple[str, ...]:
    """The stimulus sets to record, gratings first (tuning curves, maps and plaid predictions need
    them); unknown names are refused."""
    stimuli = tuple(stimuli)
    unknown = [s for s in stimuli if s not in STIMULUS_SETS]
    if unknown:
        raise AnalysisError(f"unknown stimulus set(s) {unknown}; choose from {list(STIMULUS_SETS)}")
    return stimuli if "gratings" in stimuli else ("gratings",) + stimuli


def measurement_sets(model, blocks, stimuli, ecfg, frames: int, size: int) -> dict:
    """The stimulus sets one network is recorded with: the blank screen and those named in
    ``stimuli`` (gratings first), the dot fields with as many offsets as the blocks' largest
    temporal stride needs (``ephys.sampling``)."""
    sampling = block_sampling(model)
    sets = {"blank": blank_set(ecfg, frames, size)}
    for kind in check_stimuli(stimuli):
        if kind == "rdk":
            n_off = max(dot_offsets(sampling[b], frames) for b in blocks)
            sets[kind] = rdk_set(ecfg, frames, size, n_offsets=n_off)
        else:
            sets[kind] = STIMULUS_SETS[kind](ecfg, frames, size)
    return sets


def analyze_network(model, positions: dict, blocks, stimuli, ecfg, frames: int, size: int, device, progress=None,
                    maps: bool = True):
    """{block: (summary, details)} for one network (BatchNorm as it is: calibrate it first) and the
    stimulus sets named in ``stimuli`` (the blank screen always); ``maps`` False skips the maps."""
    blocks = list(blocks)
    sampling = block_sampling(model)
    resp = {kind: record_set(model, sset, blocks, ecfg.batch_size, device, progress)
            for kind, sset in measurement_sets(model, blocks, stimuli, ecfg, frames, size).items()}
    return {b: analyze_block(resp["gratings"][b], positions[b], ecfg,
                             resp["plaids"][b] if "plaids" in resp else None,
                             resp["rdk"][b] if "rdk" in resp else None,
                             blank=resp["blank"][b][0], sampling=sampling[b], frames=frames, maps=maps)
            for b in blocks}

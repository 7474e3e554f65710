"""The electrophysiology of one network's blocks, and the metrics.json record of a run.

This module computes; it loads no checkpoint and draws no figure (``stdann.orchestration.analysis``
loads the networks and calls it, ``stdann.reports.figures`` draws from its ``details``).

Rules (written into metrics.json under ``rules``):

* response = block output after its final ReLU, averaged over frames and phases (BatchNorm in
  eval mode); tuning curve at each unit's best (sf, tf) (largest peak);
* responsive = peak > ``responsive_threshold`` × 99th percentile of the block's peaks (and > 0);
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

import dataclasses
from typing import Any

import numpy as np

from stdann import DIRECTION_CONVENTION
from stdann.ephys import maps as M
from stdann.ephys import tuning as TU
from stdann.ephys.errors import EphysError
from stdann.ephys.macaque import comparison_rows, load_reference
from stdann.ephys.population import CHANCE_LEVEL, direction_bias
from stdann.ephys.recording import bn_mode, record_set
from stdann.ephys.registry import NETWORKS
from stdann.ephys.stimuli import STIMULUS_SETS, directions
from stdann.ephys.verdicts import MAP_ORDER_ALPHA, map_order, trained_vs_untrained

MIN_UNITS_FOR_MAP = 10


class AnalysisError(EphysError):
    """A run folder or request that cannot be analysed; the message says why and what to do."""


def unit_channels(dims) -> np.ndarray:
    """Channel of every unit of a block with dims (C, H, W), units in row-major (C, H, W) order."""
    c, h, w = (int(v) for v in dims)
    return np.repeat(np.arange(c), h * w)


# -- one block of one network ------------------------------------------------------------------------------
def analyze_block(grating_resp: np.ndarray, positions, ecfg, plaid_resp=None, rdk_resp=None) -> tuple[dict, dict]:
    """Metrics of one block of one network.

    ``grating_resp``: (directions, sf, tf, units) phase-averaged responses; ``plaid_resp`` the
    same shape for plaids; ``rdk_resp``: (directions, coherences, units); ``positions`` a
    LayerPositions (``coordinates``, ``dims``, ``name``). Returns ``(summary for metrics.json,
    details for tables and figures)``.
    """
    dirs = directions(ecfg.n_directions)
    n_units = grating_resp.shape[-1]
    if positions.num_units != n_units:
        raise AnalysisError(
            f"{positions.name}: positions hold {positions.num_units} units (C,H,W = {positions.dims}) but the "
            f"block gives {n_units} at this clip size; the positions were made for another width or clip size"
        )
    if not np.isfinite(grating_resp).all():
        raise AnalysisError(f"{positions.name}: responses contain NaN/Inf (diverged weights?)")
    curves, best = TU.select_best_condition(grating_resp)
    peak = curves.max(axis=1)
    resp = TU.responsive_mask(peak, ecfg.responsive_threshold)
    n_resp = int(resp.sum())
    coords_all = np.asarray(positions.coordinates, dtype=np.float64)
    channel = unit_channels(positions.dims)
    s: dict[str, Any] = {"n_units": int(n_units), "n_responsive": n_resp, "n_excluded_unresponsive": int(n_units - n_resp),
                         "n_all_zero": int((peak <= 0).sum())}
    m = TU.tuning_metrics(curves[resp], dirs) if n_resp else None
    details: dict[str, Any] = {"curves": curves, "best": best, "responsive": resp, "metrics": m, "peak": peak,
                               "coordinates": coords_all, "channel": channel}
    if n_resp == 0:
        s["note"] = "no responsive unit: every metric is null"
        return s, details
    bw = TU.direction_bandwidth(curves[resp], dirs)
    details["bandwidth"] = bw
    s.update(_selectivity(m, bw, ecfg))
    n_sf, n_tf = grating_resp.shape[1], grating_resp.shape[2]
    isf, itf = np.unravel_index(best[resp], (n_sf, n_tf))
    s["best_sf_counts"] = np.bincount(isf, minlength=n_sf).tolist()
    s["best_tf_counts"] = np.bincount(itf, minlength=n_tf).tolist()
    s["direction_bias"] = direction_bias(m["preferred_direction"], channel[resp])

    extent = (coords_all[:, 0].min(), coords_all[:, 0].max(), coords_all[:, 1].min(), coords_all[:, 1].max())
    if n_resp >= MIN_UNITS_FOR_MAP:
        try:
            ms, md = _maps(coords_all[resp], m, extent, ecfg, s["direction_bias"])
            s.update(ms)
            details.update(md)
        except M.MapError as e:
            s["map_note"] = f"maps not analysed: {e}"
    else:
        s["map_note"] = f"maps not analysed: {n_resp} responsive units (< {MIN_UNITS_FOR_MAP})"
    if plaid_resp is not None:
        ps, pd = _plaids(plaid_resp, best, curves, resp, dirs, ecfg)
        s["plaids"], details["plaids"] = ps, pd
    if rdk_resp is not None:
        s["rdk"] = _rdk(rdk_resp, dirs, ecfg)
    return s, details


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
    between the two views of a positive pair would act on the first group (issue 11)."""
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
    st = M.pinwheel_stats(z, pixel, dmap.valid)
    s: dict[str, Any] = {"maps": {**kernel, "pixel_mm": float(pixel),
                                  "analysed_map": "smoothed map with its mean vector removed",
                                  "mean_removed_map_shown": bool(bias["above_chance"])}}
    s["column_spacing_mm"], s["pinwheel_density"] = st["column_spacing_mm"], st["density"]
    s["pinwheels"] = {k: st[k] for k in ("n_pinwheels", "n_plus", "n_minus", "area_mm2", "n_plaquettes_excluded")}
    s["pinwheel_density_ci"] = list(M.pinwheel_density_ci(st["n_pinwheels"], st["area_mm2"], st["column_spacing_mm"]))
    s["map_span_spacings"] = M.map_span(st["area_mm2"], st["column_spacing_mm"])
    s["pinwheel_fracture"] = M.pinwheel_fracture_summary(z, pixel, st["column_spacing_mm"], dmap.valid)
    with_mean = M.pinwheel_stats(dmap.z, pixel, dmap.valid)
    zv = dmap.z[dmap.valid]
    s["map_with_mean"] = {"pinwheel_density": with_mean["density"], "n_pinwheels": with_mean["n_pinwheels"],
                          "mean_vector_length": float(np.abs(zv.mean())), "rms_length": float(np.sqrt(np.mean(np.abs(zv) ** 2)))}
    out: dict[str, Any] = {"direction_map": dmap, "direction_map_mean_removed": z,
                           "pinwheels": M.pinwheels_on_sheet(M.find_pinwheels(z, pixel, dmap.valid), dmap)}
    amap = M.axial_map(coords, m["preferred_axis"], 1.0 - m["cv_axial"], pixel, window, extent)
    za = M.remove_mean(amap)
    ast = M.pinwheel_stats(za, pixel, amap.valid)
    s["axial_map"] = {"column_spacing_mm": ast["column_spacing_mm"], "pinwheel_density": ast["density"],
                      "n_pinwheels": ast["n_pinwheels"]}
    out.update(axial_map=amap, axial_map_mean_removed=za,
               axial_pinwheels=M.pinwheels_on_sheet(M.find_pinwheels(za, pixel, amap.valid), amap))
    # controls: positions shuffled among the responsive units (same kernel); a random map with the same spectrum
    shuf = M.direction_map(coords[rng.permutation(len(coords))], pref, w_dir, pixel, window, extent)
    sst = M.pinwheel_stats(M.remove_mean(shuf), pixel, shuf.valid)
    rz = M.random_map_same_spectrum(z, seed=ecfg.seed)
    rst = M.pinwheel_stats(rz, pixel, dmap.valid)
    s["controls"] = {
        "shuffled_positions": {"pinwheel_density": sst["density"], "column_spacing_mm": sst["column_spacing_mm"]},
        "random_map_same_spectrum": {"pinwheel_density": rst["density"], "column_spacing_mm": rst["column_spacing_mm"],
                                     "pinwheel_fracture": M.pinwheel_fracture_summary(rz, pixel, rst["column_spacing_mm"],
                                                                                      dmap.valid),
                                     "note": "phases randomised, spectrum of the analysed (mean-removed) map"},
    }
    sm = M.smoothness_index(coords, pref, window, seed=ecfg.seed, max_units=ecfg.smoothness_units)
    s["smoothness"] = sm["index"]
    s["smoothness_detail"] = sm
    s["map_order"] = map_order(sm["p_value"])
    side = max(extent[1] - extent[0], extent[3] - extent[2])
    out["smoothness_curve"] = M.smoothness_curve(coords, pref, np.linspace(0, side / 2, 16), True, ecfg.seed,
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


def _rdk(rdk_resp, dirs, ecfg) -> dict:
    """Tuning at full coherence and the coherence series of random-dot kinematograms."""
    coh = np.asarray(ecfg.rdk_coherences, dtype=float)
    ic = int(np.argmax(coh))
    rc = rdk_resp[:, ic, :].T
    rr = TU.responsive_mask(rc.max(axis=1), ecfg.responsive_threshold)
    out: dict[str, Any] = {"coherence": float(coh[ic]), "n_responsive": int(rr.sum())}
    if not rr.any():
        return out
    mr = TU.tuning_metrics(rc[rr], dirs)
    st = TU.median_ci(mr["dsi"])
    out.update(dsi_median=st["median"], dsi_ci=[st["ci_low"], st["ci_high"]],
               fraction_direction_selective=float(np.mean(mr["dsi"] > ecfg.dsi_criterion)))
    ipk = np.argmax(rc[rr], axis=1)
    inull = (ipk + dirs.size // 2) % dirs.size
    series = []
    for j, c in enumerate(coh):  # a handful of coherence levels
        r = rdk_resp[:, j, :].T[rr]
        rp, rn = r[np.arange(r.shape[0]), ipk], r[np.arange(r.shape[0]), inull]
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


def analyze_network(model, positions: dict, blocks, stimuli, ecfg, frames: int, size: int, device, progress=None):
    """{block: (summary, details)} for one network (BatchNorm as it is: calibrate it first) and the
    stimulus sets named in ``stimuli``."""
    resp = {}
    for kind in check_stimuli(stimuli):
        sset = STIMULUS_SETS[kind](ecfg, frames, size)
        resp[kind] = record_set(model, sset, blocks, ecfg.batch_size, device, progress)
    return {b: analyze_block(resp["gratings"][b], positions[b], ecfg,
                             resp["plaids"][b] if "plaids" in resp else None,
                             resp["rdk"][b] if "rdk" in resp else None) for b in blocks}


def block_entry(by_network: dict[str, dict]) -> dict:
    """One block's entry of metrics.json: each network's summary and, with both networks, the
    trained-vs-untrained verdicts."""
    entry = {label: by_network[label] for label in NETWORKS if label in by_network}
    if all(label in by_network for label in NETWORKS):
        entry["trained_vs_untrained"] = trained_vs_untrained(by_network["trained"], by_network["untrained"])
    return entry


def rules(ecfg) -> dict[str, str]:
    """The rules behind the numbers, in words (metrics.json ``rules``)."""
    return {
        "response": "block output after its final ReLU, averaged over frames (and over phases / dot patterns)",
        "responsive": f"peak > {ecfg.responsive_threshold} x 99th percentile of the block's peaks (and > 0)",
        "direction_selective": f"DSI > {ecfg.dsi_criterion:.4g} (equivalently DI > 0.5); DI >= 0.5 also given",
        "confidence_intervals": "95%, exact: medians by order statistics (binomial, distribution-free), fractions "
                                "by Clopper-Pearson",
        "trained_vs_untrained": "above / below when the two 95% CIs are disjoint, else not distinguishable",
        "direction_bias": f"R = |mean e^(i pref)| over responsive units; chance = {CHANCE_LEVEL:.0%} quantile of R when "
                          "each channel's units share one direction drawn uniformly at random (weight sharing: a block "
                          "has as many independent full-field tuning curves as channels), exact (Kluyver's formula)",
        "map": "z = sum K w e^(i theta) / sum K, w = 1 - CV_direction, Gaussian K of FWHM maps.kernel_fwhm_mm = "
               + ("ephys.map_window_mm" if ecfg.map_window_mm > 0 else
                  "max(2 unit spacings, Lambda_fine / 4), Lambda_fine measured on the map smoothed over 2 unit spacings"),
        "analysed_map": "column spacing, pinwheels and density on the smoothed map with its mean vector removed "
                        "(band-pass: a population bias would hide its zeros); map_with_mean: the same on z itself",
        "unit_level_map": "each responsive unit's preferred direction drawn at its cortical position (no smoothing)",
        "mean_removed_map_shown": "when R is above its chance level",
        "pinwheel_density": "n pinwheels x Lambda^2 / analysed area, Lambda = 1 / power-weighted mean spatial frequency "
                            "of the analysed map (measured)",
        "smoothness": "1 - mean|d pref|(pairs closer than the kernel FWHM) / same with positions shuffled; 0 = none",
        "map_order": f"ordered when the permutation p-value of the smoothness (positions shuffled) is < {MAP_ORDER_ALPHA}",
    }


def build_metrics(results: dict[str, dict], ecfg, *, run_dir, checkpoints: dict, stimuli, frames: int, size: int,
                  notes: list[str] | None = None) -> dict:
    """The metrics.json record: ``results`` = {network: {block: (summary, details)}}."""
    blocks = list(next(iter(results.values())))
    metrics = {
        "run_dir": str(run_dir),
        "checkpoints": checkpoints,
        "direction_convention": DIRECTION_CONVENTION,
        "batchnorm": bn_mode(ecfg.bn_calibration_clips),
        "rules": rules(ecfg),
        "clip": {"frames": frames, "size": size},
        "stimuli": list(check_stimuli(stimuli)),
        "ephys_config": dataclasses.asdict(ecfg),
        "blocks": {b: block_entry({label: res[b][0] for label, res in results.items()}) for b in blocks},
        "notes": list(notes or []),
    }
    metrics["comparison"] = comparison_rows(metrics["blocks"], load_reference())
    return metrics

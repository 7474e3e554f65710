"""`analyze_run`: the in-silico electrophysiology of a run folder, trained beside untrained.

For the trained checkpoint (``which``, default ``last``) and the run's own step-0 weights
(``checkpoints/init.pt``, the untrained control — DESIGN "A measured warning"), every chosen block
is recorded with the stimulus sets asked for, and the results are written into the run folder:

* ``metrics.json``: per block, ``trained`` and ``untrained`` side by side (medians with bootstrap
  CIs, fractions, maps, pinwheels, smoothness, controls, counts), the conventions and rules used,
  and the comparison with macaque MT;
* ``tables/*.csv``: summary, macaque comparison, per-unit metrics, pinwheels, smoothness curves;
* ``figures/*.png``: direction and axial maps with pinwheels, polar tuning curves, histograms
  against the macaque ranges, smoothness curves with their controls.

Rules stated in the outputs: response = block output after ReLU averaged over frames and phases
(BatchNorm in eval mode); tuning curve at each unit's best (sf, tf) (largest peak); responsive =
peak > ``responsive_threshold`` × 99th percentile of the block's peaks; direction selective =
DSI > 1/3 (⇔ DI > 0.5); maps weight each responsive unit by 1 − CV_direction (axial map: by
1 − CV_axial at its preferred axis) with a Gaussian kernel of FWHM ``map_window_mm`` (default one
retinotopic tile = sheet side / H); smoothness index = 1 − mean |Δ preferred direction| of unit
pairs closer than the map window / the same with positions shuffled. Pinwheels are counted on z
itself and on z minus its mean vector (``mean_removed``: a global direction bias, e.g. from a
salt-and-pepper layer averaged over many units, leaves z without zeros); the random-map control has
the spectrum of the mean-removed map with random phases.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from stdann.ephys import maps as M
from stdann.fileio import write_json
from stdann.ephys.errors import EphysError
from stdann.ephys import tuning as TU
from stdann.ephys.recording import bn_mode, calibrate_batchnorm, record_set
from stdann.ephys.stimuli import STIMULUS_SETS, directions

MIN_UNITS_FOR_MAP = 10


class AnalysisError(EphysError):
    """A run folder or request that cannot be analysed; the message says why and what to do."""


# -- inputs ---------------------------------------------------------------------------------------------
def load_reference() -> dict[str, Any]:
    """The macaque MT reference table (``stdann/ephys/reference/macaque_mt.yaml``)."""
    text = resources.files("stdann.ephys").joinpath("reference/macaque_mt.yaml").read_text()
    return yaml.safe_load(text)


def _load_model(run_dir: Path, which: str, device):
    try:
        from stdann.runs.checkpoint import load_backbone
    except ImportError:  # pragma: no cover - only before the training stage lands
        load_backbone = _load_backbone_fallback
    return load_backbone(run_dir, which=which, device=device)


def _load_backbone_fallback(run_dir, which="last", device="cpu"):  # pragma: no cover
    from stdann.config import Config
    from stdann.models.r3d import r3d_18

    path = Path(run_dir) / "checkpoints" / f"{which}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no checkpoint {which!r} ({path})")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    cfg = Config.from_dict(yaml.safe_load(ckpt["config"]) or {})
    model = r3d_18(None, width=cfg.model.width)
    model.load_state_dict(ckpt["backbone"], strict=True)
    return model.to(device).eval(), cfg


def calibration_batches(data_cfg, ecfg, device):
    """The generated naturalistic clips used to re-estimate BatchNorm statistics (fixed seed, so
    every network sees exactly the same clips)."""
    from stdann.data.generator import VideoGenerator

    gen = VideoGenerator(data_cfg, device=device)
    total, bs = int(ecfg.bn_calibration_clips), int(ecfg.batch_size)
    for start in range(0, total, bs):
        yield gen.generate(min(bs, total - start), seed=777_000 + start)


def _device(device) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# -- one block of one network ------------------------------------------------------------------------------
def _stat(x, ecfg, salt=0) -> dict[str, float]:
    return TU.bootstrap_median_ci(x, n_boot=ecfg.n_bootstrap, seed=ecfg.seed + salt)


def analyze_block(grating_resp: np.ndarray, positions, ecfg, plaid_resp=None, rdk_resp=None) -> tuple[dict, dict]:
    """Metrics of one block of one network.

    ``grating_resp``: (directions, sf, tf, units) phase-averaged responses; ``plaid_resp`` the
    same shape for plaids; ``rdk_resp``: (directions, coherences, units). Returns
    ``(summary for metrics.json, details for tables and figures)``.
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
    s: dict[str, Any] = {"n_units": int(n_units), "n_responsive": n_resp, "n_excluded_unresponsive": int(n_units - n_resp),
                         "n_all_zero": int((peak <= 0).sum())}
    m = TU.tuning_metrics(curves[resp], dirs) if n_resp else None
    details: dict[str, Any] = {"curves": curves, "best": best, "responsive": resp, "metrics": m, "peak": peak}
    if n_resp == 0:
        s["note"] = "no responsive unit: every metric is null"
        return s, details
    bw = TU.direction_bandwidth(curves[resp], dirs)
    details["bandwidth"] = bw
    for key, vals in (("dsi", m["dsi"]), ("di", m["di"]), ("cv_direction", m["cv_direction"]),
                      ("cv_axial", m["cv_axial"]), ("axial_ratio", m["axial_ratio"]), ("bandwidth", bw)):
        st = _stat(vals, ecfg, salt=len(key))
        s[f"{key}_median"] = st["median"]
        s[f"{key}_ci"] = [st["ci_low"], st["ci_high"]]
    s["fraction_direction_selective"] = float(np.mean(m["dsi"] > ecfg.dsi_criterion))
    fci = TU.bootstrap_fraction_ci(m["dsi"] > ecfg.dsi_criterion, ecfg.n_bootstrap, ecfg.seed)
    s["fraction_direction_selective_ci"] = [fci["ci_low"], fci["ci_high"]]
    s["fraction_di_ge_half"] = float(np.mean(m["di"] >= 0.5))
    s["n_bandwidth_excluded_flat"] = int(np.isnan(bw).sum())
    n_sf, n_tf = grating_resp.shape[1], grating_resp.shape[2]
    isf, itf = np.unravel_index(best[resp], (n_sf, n_tf))
    s["best_sf_counts"] = np.bincount(isf, minlength=n_sf).tolist()
    s["best_tf_counts"] = np.bincount(itf, minlength=n_tf).tolist()

    # -- maps, pinwheels, controls, smoothness
    coords_all = positions.coordinates.astype(np.float64)
    coords = coords_all[resp]
    h = positions.dims[1]
    window = ecfg.map_window_mm if ecfg.map_window_mm > 0 else positions.sheet_side / h
    pixel = window / ecfg.map_pixels_per_window
    extent = (coords_all[:, 0].min(), coords_all[:, 0].max(), coords_all[:, 1].min(), coords_all[:, 1].max())
    s["map_window_mm"], s["map_pixel_mm"] = float(window), float(pixel)
    if n_resp >= MIN_UNITS_FOR_MAP:
        try:
            details.update(_maps(coords, m, window, pixel, extent, ecfg, s))
        except M.MapError as e:
            s["map_note"] = f"maps not analysed: {e}"
    else:
        s["map_note"] = f"maps not analysed: {n_resp} responsive units (< {MIN_UNITS_FOR_MAP})"

    # -- plaids: pattern / component motion at each unit's best (sf, tf)
    if plaid_resp is not None:
        flat = plaid_resp.reshape(plaid_resp.shape[0], -1, n_units)
        pc = np.take_along_axis(flat, best[None, None, :], axis=1)[:, 0, :].T
        pci = TU.pattern_component_index(pc[resp], curves[resp], dirs, ecfg.plaid_angle)
        ok = pci["valid"]
        s["plaids"] = {"pattern_index_median": float(np.median(pci["pattern_index"][ok])) if ok.any() else None,
                       "fraction_pattern": float(np.mean(pci["cls"][ok] == 1)) if ok.any() else None,
                       "fraction_component": float(np.mean(pci["cls"][ok] == -1)) if ok.any() else None,
                       "n_classified_of": int(ok.sum()), "n_excluded_constant": int((~ok).sum()),
                       "criterion": "Z difference >= 1.28 (Movshon et al. 1985; Fisher Z, df = n_directions - 3)"}
        details["plaids"] = pci

    # -- random-dot kinematograms: tuning at full coherence and the coherence series
    if rdk_resp is not None:
        coh = np.asarray(ecfg.rdk_coherences, dtype=float)
        ic = int(np.argmax(coh))
        rc = rdk_resp[:, ic, :].T
        rr = TU.responsive_mask(rc.max(axis=1), ecfg.responsive_threshold)
        out: dict[str, Any] = {"coherence": float(coh[ic]), "n_responsive": int(rr.sum())}
        if rr.any():
            mr = TU.tuning_metrics(rc[rr], dirs)
            st = _stat(mr["dsi"], ecfg, 99)
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
        s["rdk"] = out
    return s, details


def _maps(coords, m, window, pixel, extent, ecfg, s) -> dict:
    rng = np.random.default_rng(ecfg.seed)
    pref = m["preferred_direction"]
    dmap = M.direction_map(coords, pref, 1.0 - m["cv_direction"], pixel, window, extent)
    amap = M.axial_map(coords, m["preferred_axis"], 1.0 - m["cv_axial"], pixel, window, extent)
    out: dict[str, Any] = {"direction_map": dmap, "axial_map": amap}
    st = M.pinwheel_stats(dmap.z, pixel, dmap.valid)
    s["column_spacing_mm"] = st["column_spacing_mm"]
    s["pinwheel_density"] = st["density"]
    s["pinwheels"] = {k: st[k] for k in ("n_pinwheels", "n_plus", "n_minus", "area_mm2", "n_plaquettes_excluded")}
    out["pinwheels"] = M.pinwheels_on_sheet(M.find_pinwheels(dmap.z, pixel, dmap.valid), dmap)
    ast = M.pinwheel_stats(amap.z, pixel, amap.valid)
    s["axial_map"] = {"column_spacing_mm": ast["column_spacing_mm"], "pinwheel_density": ast["density"],
                      "n_pinwheels": ast["n_pinwheels"]}
    out["axial_pinwheels"] = M.pinwheels_on_sheet(M.find_pinwheels(amap.z, pixel, amap.valid), amap)
    # controls: positions shuffled among the responsive units; a random map with the same spectrum
    shuf = M.direction_map(coords[rng.permutation(len(coords))], pref, 1.0 - m["cv_direction"], pixel, window, extent)
    sst = M.pinwheel_stats(shuf.z, pixel, shuf.valid)
    # the same with the map's mean vector removed (a global direction bias hides zeros of z)
    zc = np.where(dmap.valid, dmap.z - dmap.z[dmap.valid].mean(), 0)
    cst = M.pinwheel_stats(zc, pixel, dmap.valid)
    s["mean_removed"] = {"pinwheel_density": cst["density"], "n_pinwheels": cst["n_pinwheels"],
                         "mean_vector_length": float(np.abs(dmap.z[dmap.valid].mean())),
                         "rms_length": float(np.sqrt(np.mean(np.abs(dmap.z[dmap.valid]) ** 2)))}
    szc = np.where(shuf.valid, shuf.z - shuf.z[shuf.valid].mean(), 0)
    rnd = M.random_map_same_spectrum(zc, seed=ecfg.seed)
    rst = M.pinwheel_stats(rnd, pixel, dmap.valid)
    s["controls"] = {
        "shuffled_positions": {"pinwheel_density": sst["density"], "column_spacing_mm": sst["column_spacing_mm"],
                               "pinwheel_density_mean_removed": M.pinwheel_stats(szc, pixel, shuf.valid)["density"]},
        "random_map_same_spectrum": {"pinwheel_density": rst["density"], "column_spacing_mm": rst["column_spacing_mm"],
                                     "note": "phases randomised, spectrum of the mean-removed map"},
    }
    sm = M.smoothness_index(coords, pref, window, seed=ecfg.seed, max_units=ecfg.smoothness_units)
    s["smoothness"] = sm["index"]
    s["smoothness_detail"] = sm
    side = max(extent[1] - extent[0], extent[3] - extent[2])
    out["smoothness_curve"] = M.smoothness_curve(coords, pref, np.linspace(0, side / 2, 16), True, ecfg.seed,
                                                 ecfg.smoothness_units)
    return out


# -- a whole network ---------------------------------------------------------------------------------------------
def analyze_network(model, positions: dict, blocks, stimuli, ecfg, frames: int, size: int, device, progress=None):
    """{block: (summary, details)} for one network and the stimulus sets named in ``stimuli``."""
    resp = {}
    for kind in stimuli:
        sset = STIMULUS_SETS[kind](ecfg, frames, size)
        resp[kind] = record_set(model, sset, blocks, ecfg.batch_size, device, progress)
    out = {}
    for b in blocks:
        out[b] = analyze_block(resp["gratings"][b], positions[b], ecfg,
                               resp["plaids"][b] if "plaids" in resp else None,
                               resp["rdk"][b] if "rdk" in resp else None)
    return out


def analyze_run(run_dir, blocks=None, stimuli=("gratings",), which: str = "last", out_dir=None, progress: bool = True,
                device="auto", control: bool = True, figures: bool = True, ephys_overrides: dict | None = None) -> dict:
    """Analyse ``RUN/checkpoints/<which>.pt`` and (with ``control``) ``RUN/checkpoints/init.pt``;
    write metrics.json, tables/ and figures/ into ``out_dir`` (default the run folder) and
    return the metrics dict."""
    from stdann.topography.positions import load_run_positions

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise AnalysisError(f"run folder {run_dir} does not exist")
    stimuli = tuple(stimuli)
    unknown = [s for s in stimuli if s not in STIMULUS_SETS]
    if unknown:
        raise AnalysisError(f"unknown stimulus set(s) {unknown}; choose from {list(STIMULUS_SETS)}")
    if "gratings" not in stimuli:
        stimuli = ("gratings",) + stimuli  # tuning curves, maps and plaid predictions need them
    dev = _device(device)
    model, cfg = _load_model(run_dir, which, dev)
    ecfg = cfg.ephys
    if ephys_overrides:
        ecfg = dataclasses.replace(ecfg, **ephys_overrides)
    directions(ecfg.n_directions)  # validates
    blocks = list(blocks) if blocks else list(ecfg.blocks)
    positions = load_run_positions(run_dir, blocks)
    frames, size = cfg.data.frames, cfg.data.size
    notes = []

    nets = {"trained": model}
    if control:
        try:
            nets["untrained"], _ = _load_model(run_dir, "init", dev)
        except FileNotFoundError as e:
            msg = f"untrained control missing ({e}); selectivity below is NOT compared with the untrained network"
            warnings.warn(msg)
            notes.append(msg)
    if ecfg.bn_calibration_clips > 0:
        for net in nets.values():
            calibrate_batchnorm(net, calibration_batches(cfg.data, ecfg, dev), device=dev)
    n_stim = sum(len(STIMULUS_SETS[k](ecfg, frames, size)) for k in stimuli) * len(nets)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_stim, desc=f"analyze {run_dir.name}", unit="clip")
    results = {}
    try:
        for label, net in nets.items():
            if bar is not None:
                bar.set_postfix_str(label)
            results[label] = analyze_network(net, positions, blocks, stimuli, ecfg, frames, size, dev, bar)
    finally:
        if bar is not None:
            bar.close()

    metrics = {
        "run_dir": str(run_dir),
        "checkpoints": {"trained": which, **({"untrained": "init"} if "untrained" in nets else {})},
        "direction_convention": TU.DIRECTION_CONVENTION,
        "batchnorm": bn_mode(ecfg.bn_calibration_clips),
        "response": "block output after its final ReLU, averaged over frames (and over phases / dot patterns)",
        "responsive_rule": f"peak > {ecfg.responsive_threshold} x 99th percentile of the block's peaks (and > 0)",
        "direction_selective_rule": f"DSI > {ecfg.dsi_criterion:.4g} (equivalently DI > 0.5); DI >= 0.5 also given",
        "map_rule": "z = sum K w e^{i theta} / sum K, Gaussian K of FWHM map_window_mm, w = 1 - CV_direction",
        "smoothness_rule": "1 - mean|d pref|(pairs closer than map_window_mm) / same with positions shuffled; 0 = none",
        "pinwheel_density_rule": "n pinwheels x Lambda^2 / analysed area, Lambda = 1 / power-weighted mean spatial "
                                 "frequency of the map (measured)",
        "clip": {"frames": frames, "size": size},
        "stimuli": list(stimuli),
        "ephys_config": dataclasses.asdict(ecfg),
        "blocks": {b: {label: results[label][b][0] for label in results} for b in blocks},
        "notes": notes,
    }
    ref = load_reference()
    metrics["comparison"] = comparison_rows(metrics["blocks"], ref)
    out = Path(out_dir) if out_dir is not None else run_dir
    out.mkdir(parents=True, exist_ok=True)
    _write_tables(out / "tables", metrics, results, positions)
    if figures:
        metrics["figures"] = _write_figures(out / "figures", results, ecfg, ref)
    write_json(out / "metrics.json", _jsonable(metrics), allow_nan=False)
    return _jsonable(metrics)


# -- outputs --------------------------------------------------------------------------------------------------
def comparison_rows(blocks_metrics: dict, ref: dict) -> list[dict]:
    rows = []
    for qname, q in ref["quantities"].items():
        key = q.get("metric")
        if not key:
            continue
        for b, by_net in blocks_metrics.items():
            row = {"quantity": qname, "block": b, "metric": key, "macaque_low": q.get("low"),
                   "macaque_high": q.get("high"), "unit": q.get("unit"), "sources": "; ".join(map(str, q.get("sources", []))),
                   "note": q.get("note", "")}
            for label in ("trained", "untrained"):
                s = by_net.get(label, {})
                row[f"{label}_median"] = s.get(key)
                ci = s.get(key.replace("_median", "_ci")) if key.endswith("_median") else None
                row[f"{label}_ci_low"], row[f"{label}_ci_high"] = (ci if ci else (None, None))
            v = row["trained_median"]
            lo, hi = row["macaque_low"], row["macaque_high"]
            row["trained_in_macaque_range"] = (None if v is None or lo is None or not np.isfinite(v)
                                               else bool(lo <= v <= hi))
            rows.append(row)
    return rows


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if math.isnan(x):
            return None
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return x
    return x


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not rows:
        path.write_text("")
        return
    keys = list(rows[0].keys())
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in _jsonable(r).items()})


def _write_tables(folder: Path, metrics: dict, results: dict, positions: dict) -> None:
    summary = []
    for b, by_net in metrics["blocks"].items():
        for label, s in by_net.items():
            for k, v in s.items():
                if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool):
                    ci = s.get(k.replace("_median", "_ci")) if k.endswith("_median") else None
                    summary.append({"block": b, "network": label, "metric": k, "value": v,
                                    "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None})
    _write_csv(folder / "ephys_summary.csv", summary)
    _write_csv(folder / "macaque_comparison.csv", metrics["comparison"])
    for label, res in results.items():
        for b, (s, d) in res.items():
            resp = d["responsive"]
            n = resp.size
            cols = {"unit": np.arange(n), "x_mm": positions[b].coordinates[:, 0], "y_mm": positions[b].coordinates[:, 1],
                    "responsive": resp.astype(int), "peak": d["peak"], "best_condition": d["best"]}
            if d["metrics"] is not None:
                for k in ("preferred_direction", "preferred_axis", "dsi", "di", "cv_direction", "cv_axial", "axial_ratio"):
                    col = np.full(n, np.nan)
                    col[resp] = d["metrics"][k]
                    cols[k] = col
                col = np.full(n, np.nan)
                col[resp] = d["bandwidth"]
                cols["bandwidth"] = col
            _write_columns(folder / f"units_{b}_{label}.csv", cols)
            if "pinwheels" in d:
                pw = d["pinwheels"]
                _write_columns(folder / f"pinwheels_{b}_{label}.csv", {"x_mm": pw[:, 0], "y_mm": pw[:, 1], "charge": pw[:, 2]})
    for b in metrics["blocks"]:
        cols = {}
        for label, res in results.items():
            c = res[b][1].get("smoothness_curve")
            if c is None:
                continue
            cols.setdefault("distance_mm", c["bin_centres"])
            cols[f"{label}_mean_delta_deg"] = c["mean_delta"]
            cols[f"{label}_shuffled_delta_deg"] = c["shuffled_delta"]
            cols[f"{label}_n_pairs"] = c["n_pairs"]
        if cols:
            _write_columns(folder / f"smoothness_{b}.csv", cols)


def _write_columns(path: Path, cols: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrs = [np.asarray(v) for v in cols.values()]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(list(cols))
        for row in zip(*arrs):
            w.writerow(["" if (isinstance(v, float) and math.isnan(v)) else (f"{v:.6g}" if isinstance(v, float) else v)
                        for v in (x.item() if hasattr(x, "item") else x for x in row)])


def _write_figures(folder: Path, results: dict, ecfg, ref: dict) -> list[str]:
    from stdann.reports import ephys_figures as EF

    dirs = directions(ecfg.n_directions)
    refmap = {q["metric"].replace("_median", ""): (q.get("low"), q.get("high"))
              for q in ref["quantities"].values() if q.get("metric")}
    paths = []
    blocks = list(next(iter(results.values())).keys())
    for b in blocks:
        per = {label: res[b] for label, res in results.items()}
        dpanels, apanels = {}, {}
        for label, (s, d) in per.items():
            if "direction_map" in d:
                dpanels[label] = {"map": d["direction_map"], "pinwheels": d["pinwheels"],
                                  "text": f"Λ = {s['column_spacing_mm']:.3g} mm, {s['pinwheels']['n_pinwheels']} pinwheels, "
                                          f"density {s['pinwheel_density']:.2f}/Λ²"}
                apanels[label] = {"map": d["axial_map"], "pinwheels": d["axial_pinwheels"],
                                  "text": f"Λ = {s['axial_map']['column_spacing_mm']:.3g} mm"}
        if dpanels:
            paths.append(EF.fig_sheet_maps(dpanels, folder / f"direction_map_{b}.png",
                                           f"{b}: direction map (hue = preferred direction, brightness = 1 − CV)"))
            paths.append(EF.fig_sheet_maps(apanels, folder / f"axial_map_{b}.png",
                                           f"{b}: axial map (hue = preferred axis, brightness = 1 − CV_axial)", period=180))
        ex = {}
        for label, (s, d) in per.items():
            if d["metrics"] is None:
                continue
            c = d["curves"][d["responsive"]]
            order = np.argsort(d["metrics"]["dsi"])
            pick = order[np.unique(np.linspace(0, len(order) - 1, min(6, len(order))).astype(int))]
            ex[label] = c[pick[::-1]]
        if ex:
            paths.append(EF.fig_polar_tuning(ex, dirs, folder / f"tuning_examples_{b}.png",
                                             f"{b}: example tuning curves (DSI high → low, best sf/tf)"))
        vals = {}
        for key in ("dsi", "di", "cv_direction", "bandwidth"):
            vals[key] = {}
            for label, (s, d) in per.items():
                if d["metrics"] is not None:
                    vals[key][label] = d["bandwidth"] if key == "bandwidth" else d["metrics"][key]
        if any(vals[k] for k in vals):
            paths.append(EF.fig_histograms(vals, refmap, folder / f"histograms_{b}.png",
                                           f"{b}: responsive units vs macaque MT range"))
        sm = {label: d["smoothness_curve"] for label, (s, d) in per.items() if "smoothness_curve" in d}
        if sm:
            paths.append(EF.fig_smoothness(sm, folder / f"smoothness_{b}.png", f"{b}: smoothness of the direction map"))
    return [str(p) for p in paths]

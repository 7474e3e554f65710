"""All figures of an analysed run, drawn from ``ephys.analyze`` results (nothing is recomputed).

Per block: ``unit_map_<block>.png`` (the unit-level map, the primary map figure),
``direction_map_<block>.png`` (smoothed map; beside it the same map with its mean vector removed
when the population bias R is above chance), ``axial_map_<block>.png``,
``tuning_examples_<block>.png``, ``histograms_<block>.png`` and ``smoothness_<block>.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stdann.ephys.registry import format_number, format_value
from stdann.reports.figures.common import footer_text
from stdann.reports.figures.maps import bias_text, fig_sheet_maps, fig_smoothness, fig_unit_map
from stdann.reports.figures.tuning import fig_histograms, fig_polar_tuning


def _map_text(s: dict) -> str:
    return (f"Λ = {format_value('column_spacing_mm', s.get('column_spacing_mm'))} mm, "
            f"{format_value('pinwheels.n_pinwheels', (s.get('pinwheels') or {}).get('n_pinwheels'))} pinwheels, "
            f"{format_value('pinwheel_density', s.get('pinwheel_density'))}/Λ²")


def direction_map_rows(per: dict) -> dict[str, list]:
    """Panels of the smoothed direction-map figure: per network, the smoothed map and (R above
    chance) the mean-removed map; pinwheels (zeros of the mean-removed map) on the latter, or on
    the smoothed map when its mean is not removed for display."""
    rows = {}
    show_mr = any(s.get("maps", {}).get("mean_removed_map_shown") for s, d in per.values() if "direction_map" in d)
    for label, (s, d) in per.items():
        if "direction_map" not in d:
            continue
        m, maps = d["direction_map"], s["maps"]
        shown = bool(maps.get("mean_removed_map_shown"))
        kernel = f"smoothed, kernel FWHM {format_value('maps.kernel_fwhm_mm', maps['kernel_fwhm_mm'])} mm"
        first = {"z": m.z, "valid": m.valid, "extent": m.extent, "pinwheels": None if shown else d["pinwheels"],
                 "title": f"{kernel}\n{bias_text(s.get('direction_bias'))}" + ("" if shown else f"\n{_map_text(s)}")}
        row = [first]
        if shown:
            mean = format_number(s["map_with_mean"]["mean_vector_length"])
            row.append({"z": d["direction_map_mean_removed"], "valid": m.valid, "extent": m.extent,
                        "pinwheels": d["pinwheels"],
                        "title": f"mean removed (|mean vector| {mean} subtracted)\n{_map_text(s)}"})
        elif show_mr:
            row.append({"note": "R not above chance:\nthe map is shown with its mean"})
        rows[label] = row
    return rows


def write_run_figures(folder: Path, results: dict, directions_deg, reference: dict, batchnorm: str | None) -> list[str]:
    """Draw every figure of ``results`` = {network: {block: (summary, details)}} into ``folder``;
    ``reference`` = the macaque table, ``batchnorm`` = how BatchNorm was set (figure footers)."""
    folder = Path(folder)
    footer = footer_text(batchnorm)
    refmap = {q["metric"].replace("_median", ""): (q.get("low"), q.get("high"))
              for q in reference["quantities"].values() if q.get("metric")}
    paths = []
    for b in next(iter(results.values())):
        per = {label: res[b] for label, res in results.items()}
        units = {label: {"coordinates": d["coordinates"], "responsive": d["responsive"],
                         "preferred_direction": d["metrics"]["preferred_direction"], "bias": s.get("direction_bias")}
                 for label, (s, d) in per.items() if d["metrics"] is not None}
        if units:
            paths.append(fig_unit_map(units, folder / f"unit_map_{b}.png",
                                      f"{b}: unit-level map (each responsive unit at its cortical position, hue = its "
                                      "preferred direction)", footer))
        rows = direction_map_rows(per)
        if rows:
            paths.append(fig_sheet_maps(rows, folder / f"direction_map_{b}.png",
                                        f"{b}: smoothed direction map (hue = preferred direction, brightness = |z|); "
                                        "dots = pinwheels of the mean-removed map", footer))
            arows = {label: [{"z": d["axial_map_mean_removed"], "valid": d["axial_map"].valid,
                              "extent": d["axial_map"].extent, "pinwheels": d["axial_pinwheels"],
                              "title": f"mean removed\nΛ = {format_value('column_spacing_mm', s['axial_map']['column_spacing_mm'])}"
                                       f" mm, {s['axial_map']['n_pinwheels']} pinwheels"}]
                     for label, (s, d) in per.items() if "axial_map" in d}
            paths.append(fig_sheet_maps(arows, folder / f"axial_map_{b}.png",
                                        f"{b}: axial map with its mean vector removed\n(hue = preferred axis, brightness = "
                                        "|z|, same kernel); dots = its pinwheels", footer, period=180))
        ex = {}
        for label, (s, d) in per.items():
            if d["metrics"] is None:
                continue
            c = d["curves"][d["responsive"]]
            order = np.argsort(d["metrics"]["dsi"])
            pick = order[np.unique(np.linspace(0, len(order) - 1, min(6, len(order))).astype(int))]
            ex[label] = c[pick[::-1]]
        if ex:
            paths.append(fig_polar_tuning(ex, directions_deg, folder / f"tuning_examples_{b}.png",
                                          f"{b}: example tuning curves (DSI high → low, best sf/tf)", footer))
        vals = {key: {label: (d["bandwidth"] if key == "bandwidth" else d["metrics"][key])
                      for label, (s, d) in per.items() if d["metrics"] is not None}
                for key in ("dsi", "di", "cv_direction", "bandwidth")}
        if any(vals.values()):
            paths.append(fig_histograms(vals, refmap, folder / f"histograms_{b}.png",
                                        f"{b}: responsive units vs macaque MT range", footer))
        sm = {label: d["smoothness_curve"] for label, (s, d) in per.items() if "smoothness_curve" in d}
        if sm:
            paths.append(fig_smoothness(sm, folder / f"smoothness_{b}.png", f"{b}: smoothness of the direction map",
                                        footer))
    return [str(p) for p in paths]

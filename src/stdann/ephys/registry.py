"""The one list of the metrics stdann reports: key, label, unit, sense, format, CI key.

Every table and figure that shows a metric (the HTML report, the Markdown tables, the study
figures and tables, the command-line summaries, the slim summaries stored in study.json) takes
its metrics, labels and formats from here, so a metric is named and formatted the same way
everywhere and a new one is added in one place.

``key`` is a dotted path into one network's summary in ``metrics.json``
(``blocks → <block> → <network> → …``) and into each network's entry of ``study.json``.
``sense`` says which direction reads as "more like the hypothesis": +1 higher = more direction
selective / more ordered, −1 lower = more so, 0 no such reading (colour only, never a verdict).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

NETWORKS = ("trained", "untrained")


@dataclass(frozen=True)
class Metric:
    key: str  # dotted path in a network's summary
    label: str  # short label for tables and figure titles
    unit: str = ""  # "" for dimensionless
    sense: int = 0  # +1 higher = more selective/ordered, -1 lower = more so, 0 neither
    reading: str = ""  # what a higher value means, in words
    digits: int = 3  # significant digits (decimals for values below 1)
    ci_key: str | None = None  # dotted path of the [low, high] 95% CI, if any
    kind: str = "number"  # number | count | angle | p

    @property
    def column(self) -> str:
        """Label with its unit, for table headers."""
        return f"{self.label} ({self.unit})" if self.unit else self.label


_M = [
    # -- single-unit selectivity (responsive units; medians and fractions with exact 95% CIs)
    Metric("dsi_median", "median DSI", sense=1, reading="more direction selective", ci_key="dsi_ci"),
    Metric("di_median", "median DI", sense=1, reading="more direction selective", ci_key="di_ci"),
    Metric("vector_strength_blank_median", "median vector strength 1 − CV_direction, blank subtracted", sense=1,
           reading="more direction selective (0 for any curve with R(θ) = R(θ + 180°))",
           ci_key="vector_strength_blank_ci"),
    Metric("dsi_blank_median", "median DSI, blank subtracted", sense=1, reading="more direction selective",
           ci_key="dsi_blank_ci"),
    Metric("direction_consistency", "DS units with one preferred direction across SF/TF (±45°; chance 0.25)", sense=1,
           reading="direction preference that does not move with spatial / temporal frequency",
           ci_key="direction_consistency_ci"),
    Metric("blank_ratio_median", "median blank / peak response", reading="larger untuned pedestal",
           ci_key="blank_ratio_ci"),
    Metric("fraction_direction_selective", "fraction direction selective (DSI > 1/3)", sense=1,
           reading="more direction-selective units", ci_key="fraction_direction_selective_ci"),
    Metric("fraction_di_ge_half", "fraction DI ≥ 0.5", sense=1, reading="more direction-selective units",
           ci_key="fraction_di_ge_half_ci"),
    Metric("cv_direction_median", "median CV_direction", sense=-1,
           reading="broader direction tuning (lower = sharper)", ci_key="cv_direction_ci"),
    Metric("cv_axial_median", "median CV_axial", reading="weaker axial tuning (lower = stronger)",
           ci_key="cv_axial_ci"),
    Metric("axial_ratio_median", "median axial ratio |F2|/|F1|", reading="stronger axial (bidirectional) component",
           ci_key="axial_ratio_ci"),
    Metric("bandwidth_median", "median bandwidth (FWHH)", unit="°", reading="broader tuning", ci_key="bandwidth_ci"),
    # -- population bias of preferred directions (ephys.population)
    Metric("direction_bias.resultant_length", "population bias R", reading="units share a direction more"),
    Metric("direction_bias.chance_resultant_length", "R by chance (95th pct.)",
           reading="fewer independent channels"),
    Metric("direction_bias.mean_direction_deg", "mean preferred direction", unit="°", digits=3, kind="angle"),
    Metric("direction_bias.n_channels", "channels with responsive units", kind="count"),
    # -- maps (smoothed, mean vector removed) and their controls
    Metric("maps.kernel_fwhm_mm", "map kernel FWHM", unit="mm"),
    Metric("column_spacing_mm", "column spacing Λ", unit="mm"),
    Metric("pinwheels.n_pinwheels", "pinwheels", kind="count"),
    Metric("pinwheel_density", "pinwheel density", unit="per Λ²", digits=3, ci_key="pinwheel_density_ci"),
    Metric("map_span_spacings", "map span", unit="Λ"),
    Metric("map_with_mean.pinwheel_density", "pinwheel density, map with its mean", unit="per Λ²"),
    Metric("controls.shuffled_positions.pinwheel_density", "control: shuffled positions, density", unit="per Λ²"),
    Metric("controls.random_map_same_spectrum.pinwheel_density", "control: random map same spectrum, density",
           unit="per Λ²"),
    Metric("axial_map.pinwheel_density", "axial map: pinwheel density", unit="per Λ²"),
    Metric("pinwheel_fracture.median", "pinwheel fracture index (median; 0 = all directions round it, 1 = two opposite ones)"),
    Metric("pinwheel_fracture.fraction_above_half", "fraction of pinwheels with fracture index > ½"),
    Metric("controls.random_map_same_spectrum.pinwheel_fracture.median",
           "control: random map same spectrum, pinwheel fracture index"),
    Metric("smoothness", "smoothness index (0 = as shuffled)", sense=1, reading="neighbours share preferences more"),
    Metric("smoothness_detail.p_value", "map order p (permutation)", sense=-1, kind="p"),
    Metric("smoothness_detail.mean_delta_short", "mean |Δ pref| of close pairs", unit="°"),
    Metric("smoothness_detail.shuffled_delta_short", "same, positions shuffled", unit="°"),
    # -- split by preferred axis (flips act on horizontal motion only: docs/emergence.md §5)
    *(Metric(f"by_axis.{ax}.{k}", f"{label}, {ax}-axis units", sense=sense, reading=reading,
             ci_key=f"by_axis.{ax}.{k[:-len('_median')]}_ci")
      for ax in ("horizontal", "vertical")
      for k, label, sense, reading in (
          ("dsi_median", "median DSI", 1, "more direction selective"),
          ("axial_ratio_median", "median axial ratio", 0, "stronger axial (bidirectional) component"),
          ("cv_axial_median", "median CV_axial", 0, "weaker axial tuning (lower = stronger)"))),
    Metric("by_axis.horizontal.n_units", "horizontal-axis units", kind="count"),
    Metric("by_axis.vertical.n_units", "vertical-axis units", kind="count"),
    # -- random-dot kinematograms (100% coherence; shared dot fields)
    Metric("rdk.dsi_median", "RDK median DSI", sense=1, reading="more direction selective", ci_key="rdk.dsi_ci"),
    Metric("rdk.vector_strength_median", "RDK median vector strength 1 − CV_direction", sense=1,
           reading="more direction selective", ci_key="rdk.vector_strength_ci"),
    # -- counts
    Metric("n_blank_excluded", "units never above their blank response", kind="count"),
    Metric("n_excluded_undriven", "units excluded as undriven (peak < ephys.driven_ratio × grey-screen response)", kind="count"),
    Metric("n_responsive", "responsive units", kind="count"),
    Metric("n_units", "units", kind="count"),
]
METRICS: dict[str, Metric] = {m.key: m for m in _M}

# The headline "direction selective" verdict: trained vs untrained on this metric. Any network whose responses
# satisfy R(θ) = R(θ + 180°) (direction blind, e.g. axial or space-time-separable and time-symmetric) has a zero
# first Fourier harmonic and so a vector strength of 0 exactly, whatever its untuned pedestal (subtracted) and
# without the upward bias a single peak sample gives the classic DSI.
DIRECTION_HEADLINE = "vector_strength_blank_median"
HEADLINE_RULE = ("the headline 'direction selective' verdict is the trained-vs-untrained verdict of the median "
                 "blank-subtracted vector strength 1 - CV_direction (exact 95% CIs disjoint): a measure a "
                 "direction-blind network cannot pass (R(theta) = R(theta + 180 deg) gives 0 exactly); read it with "
                 "the consistency of the preferred direction across SF/TF against its chance level 0.25")

# Named selections (keys into METRICS), one per use.
SELECTIVITY = ("vector_strength_blank_median", "dsi_blank_median", "direction_consistency", "dsi_median", "di_median",
               "fraction_direction_selective", "fraction_di_ge_half", "cv_direction_median", "cv_axial_median",
               "axial_ratio_median", "bandwidth_median", "blank_ratio_median", "rdk.dsi_median",
               "rdk.vector_strength_median")
MAP = ("direction_bias.resultant_length", "direction_bias.chance_resultant_length",
       "direction_bias.mean_direction_deg", "direction_bias.n_channels", "maps.kernel_fwhm_mm", "column_spacing_mm",
       "pinwheels.n_pinwheels", "pinwheel_density", "map_span_spacings", "map_with_mean.pinwheel_density",
       "controls.shuffled_positions.pinwheel_density", "controls.random_map_same_spectrum.pinwheel_density",
       "axial_map.pinwheel_density", "pinwheel_fracture.median", "pinwheel_fracture.fraction_above_half",
       "controls.random_map_same_spectrum.pinwheel_fracture.median", "smoothness", "smoothness_detail.p_value",
       "smoothness_detail.mean_delta_short", "smoothness_detail.shuffled_delta_short", "n_responsive", "n_units")
# what a one-screen summary shows (command line, demo metrics, study and Markdown tables)
HEADLINE = ("vector_strength_blank_median", "dsi_blank_median", "direction_consistency", "dsi_median",
            "fraction_direction_selective", "cv_direction_median", "cv_axial_median",
            "axial_ratio_median", "direction_bias.resultant_length", "direction_bias.chance_resultant_length",
            "pinwheel_density", "column_spacing_mm", "smoothness", "smoothness_detail.p_value")
# selectivity of the units preferring the horizontal and the vertical axis
BY_AXIS = tuple(f"by_axis.{ax}.{k}" for ax in ("horizontal", "vertical")
                for k in ("n_units", "dsi_median", "axial_ratio_median", "cv_axial_median"))
# panels of the study figures (metric against α or step)
STUDY_PANELS = ("vector_strength_blank_median", "dsi_blank_median", "direction_consistency", "dsi_median",
                "fraction_direction_selective", "cv_direction_median", "cv_axial_median",
                "axial_ratio_median", "direction_bias.resultant_length", "pinwheel_density", "smoothness")


def metric(key: str) -> Metric:
    try:
        return METRICS[key]
    except KeyError:
        raise KeyError(f"{key!r} is not in the metric registry (stdann.ephys.registry)") from None


def get(summary: Any, key: str | None, default=None):
    """The value at dotted ``key`` in a (nested) summary dict, or ``default``."""
    if key is None:
        return default
    d = summary
    for part in key.split("."):
        if not isinstance(d, dict) or part not in d:
            return default
        d = d[part]
    return d


def ci(summary: Any, key: str) -> list | None:
    """The [low, high] CI of metric ``key`` in ``summary``, or None."""
    c = get(summary, metric(key).ci_key)
    return c if isinstance(c, (list, tuple)) and len(c) == 2 else None


def as_number(v) -> float | None:
    """A finite float, or None (metrics.json writes NaN as null and infinities as strings)."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


def format_number(v, digits: int = 3, kind: str = "number") -> str:
    """A number as the reports print it ("n/a" when missing, "inf" kept)."""
    if isinstance(v, str) and as_number(v) is None:
        return v
    f = as_number(v)
    if f is None:
        return "n/a"
    if kind == "count" or (float(f).is_integer() and abs(f) < 1e6 and kind != "p"):
        return str(int(round(f)))
    if kind == "angle":
        return f"{f:.0f}"
    if kind == "p":
        return f"{f:.2g}"
    if f == 0:
        return "0"
    if abs(f) >= 1000 or abs(f) < 1e-3:
        return f"{f:.{digits}g}"
    if abs(f) >= 1:
        return f"{f:.{digits}g}"
    return f"{f:.{digits - 1}f}" if abs(f) >= 0.1 else f"{f:.{digits}f}"


def format_value(key: str, v) -> str:
    m = metric(key)
    return format_number(v, m.digits, m.kind)


def format_with_ci(summary: Any, key: str) -> str:
    """``value [low, high]`` (the CI only when the summary holds a finite one)."""
    m = metric(key)
    s = format_number(get(summary, key), m.digits, m.kind)
    c = ci(summary, key)
    if c and as_number(c[0]) is not None and as_number(c[1]) is not None:
        s += f" [{format_number(c[0], m.digits)}, {format_number(c[1], m.digits)}]"
    return s


# verdicts stored beside the metrics (ephys.verdicts, ephys.population) that a slim summary keeps
VERDICT_PATHS = ("direction_bias.above_chance", "direction_bias.p_value", "maps.mean_removed_map_shown", "map_order",
                 "direction_consistency_detail.above_chance", "direction_consistency_detail.chance")


def slim(summary: dict, keys: Iterable[str] | None = None) -> dict:
    """The registry metrics (and their CIs) and the stored verdicts of one network's summary, as a
    nested dict with the same paths (what study.json keeps per network); absent ones are left out."""
    out: dict = {}
    paths = [p for key in (keys or METRICS) for p in (key, metric(key).ci_key)] + list(VERDICT_PATHS)
    for path in paths:
        v = get(summary, path)
        if v is None:
            continue
        d = out
        *parents, leaf = path.split(".")
        for p in parents:
            d = d.setdefault(p, {})
        d[leaf] = v
    return out

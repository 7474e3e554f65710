"""Pinwheels of a map of a cortical sheet (maps: :mod:`stdann.ephys.maps`).

* Pinwheels are the zeros of z: the winding number of arg z round each grid plaquette (four
  wrapped increments, counter-clockwise in (x, y)) is ±1 there (Wolf & Geisel 1998). For an axial
  map a charge ±1 of z is a ±½ turn of the axis.
* Pinwheel fracture index: |⟨e^{2iθ}⟩| of the directions on a small circle (Λ/6) round a
  pinwheel: 0 when every direction takes an equal share of it, near 1 when the pinwheel sits on a
  180° fracture between two opposite-direction domains (a winding the map must make there, not a
  centre where all directions meet). Read it against the random map with the same spectrum.
* Pinwheel density = n · Λ² / analysed area. A narrow-band isotropic Gaussian random field has
  density π (Wolf & Geisel 1998; Kaschube et al. 2010); in general π·⟨k²⟩/⟨k⟩² (Berry & Dennis
  2000), so broad-band maps give more than π. Always read it beside the controls.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, stats

from stdann.ephys.maps import MapError, SheetMap, check_map, column_spacing

PINWHEEL_RING_FRACTION = 1 / 6  # radius of the circle round a pinwheel, in column spacings (pinwheels ~0.56 Λ apart at π/Λ²)


def _wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


def find_pinwheels(z, pixel_size_mm: float, mask=None) -> np.ndarray:
    """Pinwheels of a 360°-periodic map: array (n, 3) of x (along columns) and y (along rows) in mm
    from element [0, 0], and charge ±1 (counter-clockwise winding of arg z in (x, y)).

    A plaquette is skipped if any corner is masked out (``mask`` False) or has |z| ≤ 1e-12·max|z|
    (phase undefined). The position is the zero of the plaquette's bilinear-averaged linear fit,
    kept inside the plaquette.
    """
    z = check_map(z)
    z00, z01, z10, z11 = z[:-1, :-1], z[:-1, 1:], z[1:, :-1], z[1:, 1:]
    ph = np.angle(z)
    a00, a01, a10, a11 = ph[:-1, :-1], ph[:-1, 1:], ph[1:, :-1], ph[1:, 1:]
    # counter-clockwise in (x = column, y = row): (i,j) → (i,j+1) → (i+1,j+1) → (i+1,j) → (i,j)
    wind = _wrap(a01 - a00) + _wrap(a11 - a01) + _wrap(a10 - a11) + _wrap(a00 - a10)
    charge = np.rint(wind / (2 * np.pi)).astype(np.int64)
    ok = _plaquette_ok(z, mask)
    charge = np.where(ok, charge, 0)
    ii, jj = np.nonzero(charge)
    if ii.size == 0:
        return np.zeros((0, 3))
    c00, c01, c10, c11 = z00[ii, jj], z01[ii, jj], z10[ii, jj], z11[ii, jj]
    a = (c00 + c01 + c10 + c11) / 4
    bx = ((c01 - c00) + (c11 - c10)) / 2
    by = ((c10 - c00) + (c11 - c01)) / 2
    det = bx.real * by.imag - by.real * bx.imag
    with np.errstate(divide="ignore", invalid="ignore"):
        dx = (-a.real * by.imag + by.real * a.imag) / det
        dy = (-bx.real * a.imag + bx.imag * a.real) / det
    dx = np.where(np.isfinite(dx), np.clip(dx, -0.5, 0.5), 0.0)
    dy = np.where(np.isfinite(dy), np.clip(dy, -0.5, 0.5), 0.0)
    x = (jj + 0.5 + dx) * pixel_size_mm
    y = (ii + 0.5 + dy) * pixel_size_mm
    return np.stack([x, y, charge[ii, jj].astype(np.float64)], axis=1)


def pinwheels_on_sheet(pinwheels: np.ndarray, sheet: SheetMap) -> np.ndarray:
    """Pinwheels from :func:`find_pinwheels` (mm from element [0, 0]) in sheet coordinates (mm)."""
    out = np.array(pinwheels, dtype=np.float64, copy=True).reshape(-1, 3)
    out[:, 0] += sheet.origin_mm[0] + sheet.pixel_size_mm / 2
    out[:, 1] += sheet.origin_mm[1] + sheet.pixel_size_mm / 2
    return out


def pinwheel_axial_concentration(z, pixel_size_mm: float, pinwheels, radius_mm: float, mask=None,
                                 n_samples: int = 36) -> np.ndarray:
    """For each pinwheel (rows of :func:`find_pinwheels`: x, y in mm from element [0, 0], charge),
    |⟨e^{2iθ}⟩| of the map's direction θ = arg z at ``n_samples`` points evenly spaced on a circle
    of ``radius_mm`` round it (z bilinearly interpolated).

    A pinwheel where every direction takes an equal share of the circle gives 0; one that sits on
    a 180° fracture, the circle spending its length in two opposite directions and turning through
    the others quickly, gives nearly 1. For the linear pinwheel z = a·x + i·b·y it is exactly
    |a − b| / (a + b) (a continuous circle; the samples' mean converges to it). NaN where the circle
    leaves the map, touches a masked-out pixel (``mask`` False) or a zero of z.
    """
    z = check_map(z)
    pw = np.asarray(pinwheels, dtype=np.float64).reshape(-1, 3)
    if not radius_mm > 0 or not pixel_size_mm > 0 or n_samples < 4:
        raise MapError(f"need radius > 0, pixel size > 0 and at least 4 samples; got {radius_mm}, {pixel_size_mm}, "
                       f"{n_samples}")
    phi = 2 * np.pi * np.arange(n_samples) / n_samples
    cols = (pw[:, :1] + radius_mm * np.cos(phi)) / pixel_size_mm  # element [i, j] sits at index (row i, column j)
    rows = (pw[:, 1:2] + radius_mm * np.sin(phi)) / pixel_size_mm
    h, w = z.shape
    ok = (rows >= 0) & (rows <= h - 1) & (cols >= 0) & (cols <= w - 1)
    at = [np.clip(rows, 0, h - 1).ravel(), np.clip(cols, 0, w - 1).ravel()]
    vals = (ndimage.map_coordinates(z.real, at, order=1) + 1j * ndimage.map_coordinates(z.imag, at, order=1))
    vals = vals.reshape(rows.shape)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != z.shape:
            raise MapError(f"mask shape {m.shape} differs from map shape {z.shape}")
        ok &= ndimage.map_coordinates(m.astype(np.float64), at, order=1).reshape(rows.shape) > 1 - 1e-9
    mag = np.abs(vals)
    ok &= mag > 1e-12 * np.abs(z).max()
    u = np.where(ok, vals / np.where(mag > 0, mag, 1.0), 0)
    conc = np.abs(np.mean(u**2, axis=1))
    return np.where(ok.all(axis=1), conc, np.nan)


def pinwheel_fracture_summary(z, pixel_size_mm: float, spacing_mm: float, mask=None) -> dict[str, float | int]:
    """Median :func:`pinwheel_axial_concentration` of a map's pinwheels on circles of
    ``PINWHEEL_RING_FRACTION`` · Λ (the pinwheel fracture index), the fraction above ½ (at least as
    two-sided as the circle round z = 3x + iy), and how many pinwheels were measured (circles inside the map)."""
    radius = PINWHEEL_RING_FRACTION * spacing_mm
    conc = pinwheel_axial_concentration(z, pixel_size_mm, find_pinwheels(z, pixel_size_mm, mask), radius, mask)
    conc = conc[np.isfinite(conc)]
    return {"median": float(np.median(conc)) if conc.size else float("nan"),
            "fraction_above_half": float(np.mean(conc > 0.5)) if conc.size else float("nan"),
            "n_measured": int(conc.size), "radius_mm": float(radius)}


def _plaquette_ok(z, mask):
    mag = np.abs(z)
    good = mag > 1e-12 * mag.max()
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if m.shape != z.shape:
            raise MapError(f"mask shape {m.shape} differs from map shape {z.shape}")
        good &= m
    return good[:-1, :-1] & good[:-1, 1:] & good[1:, :-1] & good[1:, 1:]


def pinwheel_stats(z, pixel_size_mm: float, mask=None, taper: bool = True) -> dict[str, float]:
    """Pinwheels of a map and their density per Λ².

    Parameters
    ----------
    z : complex array (rows, cols)
        The map (360°-periodic), rows along y.
    pixel_size_mm : float
        Side of one map pixel in mm.
    mask : bool array like ``z``, optional
        Pixels that may be analysed (a plaquette with a masked corner is skipped).
    taper : bool
        Hann taper when measuring Λ (:func:`stdann.ephys.maps.column_spacing`).

    Returns
    -------
    dict
        ``n_pinwheels``, ``n_plus``, ``n_minus`` (by charge), ``n_plaquettes_excluded`` (masked or
        phase undefined), ``column_spacing_mm`` (Λ, measured on the same map), ``area_mm2`` (the
        analysed plaquettes), ``density`` (n · Λ² / area; π for a narrow-band Gaussian random field).
    """
    z = check_map(z)
    pw = find_pinwheels(z, pixel_size_mm, mask)
    lam = column_spacing(z if mask is None else np.where(mask, z, 0), pixel_size_mm, taper)
    n_ok = int(_plaquette_ok(z, mask).sum())
    if n_ok == 0:
        raise MapError("no plaquette of the map can be analysed (all masked or zero)")
    area = n_ok * pixel_size_mm**2
    n = pw.shape[0]
    return {"n_pinwheels": int(n), "n_plus": int((pw[:, 2] > 0).sum()), "n_minus": int((pw[:, 2] < 0).sum()),
            "column_spacing_mm": lam, "area_mm2": float(area), "density": float(n * lam**2 / area),
            "n_plaquettes_excluded": int((z.shape[0] - 1) * (z.shape[1] - 1) - n_ok)}


def pinwheel_density_ci(n_pinwheels: int, area_mm2: float, spacing_mm: float, level: float = 0.95) -> tuple[float, float]:
    """Exact (Garwood) confidence interval of a pinwheel density n·Λ²/A.

    The count n is treated as Poisson and Λ, A as known: [χ²(α/2; 2n)/2, χ²(1−α/2; 2n+2)/2] ·
    Λ²/A, α = 1 − ``level`` (lower bound 0 when n = 0). It says how well the count pins the density
    down; Λ's own uncertainty is not in it.

    Parameters
    ----------
    n_pinwheels : int
        Pinwheels counted (>= 0).
    area_mm2 : float
        Analysed area (> 0).
    spacing_mm : float
        Column spacing Λ (> 0).
    level : float
        Confidence level, in (0, 1).

    Returns
    -------
    (low, high) : tuple of float
        Bounds of the density in pinwheels per Λ².
    """
    if n_pinwheels < 0 or area_mm2 <= 0 or spacing_mm <= 0 or not 0 < level < 1:
        raise MapError(f"need n >= 0, area > 0, spacing > 0 and 0 < level < 1; got {n_pinwheels}, {area_mm2}, "
                       f"{spacing_mm}, {level}")
    a = 1.0 - level
    lo = 0.0 if n_pinwheels == 0 else stats.chi2.ppf(a / 2, 2 * n_pinwheels) / 2
    hi = stats.chi2.ppf(1 - a / 2, 2 * n_pinwheels + 2) / 2
    scale = spacing_mm**2 / area_mm2
    return float(lo * scale), float(hi * scale)


def map_span(area_mm2: float, spacing_mm: float) -> float:
    """How many column spacings the analysed map spans: √A / Λ (a square map of side L spans L/Λ)."""
    return float(np.sqrt(area_mm2) / spacing_mm)


def pinwheel_density(z, pixel_size_mm: float, mask=None, taper: bool = True) -> float:
    """Pinwheels per Λ², with Λ measured by :func:`column_spacing` on the same map."""
    return pinwheel_stats(z, pixel_size_mm, mask, taper)["density"]

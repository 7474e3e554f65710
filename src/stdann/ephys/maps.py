"""Maps of a cortical sheet: direction/axial maps, column spacing, pinwheels, smoothness.

A map is a complex field z on a regular grid: element [i, j] sits at x = x0 + (j + ½)·pixel,
y = y0 + (i + ½)·pixel (rows along y, columns along x, mm), where (x0, y0) is the lower corner of
the map's extent. Direction maps use z = Σ w e^{iθ} (360°-periodic); axial (orientation-style)
maps use e^{2iθ}.

* Column spacing Λ (mm) is measured from the power spectrum of z minus its mean: Λ = 1 / ⟨|f|⟩,
  f the spatial frequency (cycles/mm) weighted by power (DC excluded; a Hann taper suppresses the
  edges of non-periodic maps unless ``taper=False``).
* Pinwheels are the zeros of z: the winding number of arg z round each grid plaquette (four
  wrapped increments, counter-clockwise in (x, y)) is ±1 there (Wolf & Geisel 1998). For an axial
  map a charge ±1 of z is a ±½ turn of the axis.
* Which map: unit-level preferences are the data (a unit-level map draws them as they are). A
  smoothed map needs a kernel; :func:`choose_kernel` picks it against the measured column spacing
  (FWHM = max(2 unit spacings, Λ_fine / 4), Λ_fine measured on a map smoothed over 2 unit
  spacings), never the retinotopic tile, which averages every channel at a place into one hue.
  Column spacing and pinwheels are measured on the smoothed map with its mean vector removed
  (:func:`remove_mean`; high-pass = mean removal, low-pass = the kernel, as the band-pass maps of
  Kaschube et al. 2010): a population-wide direction bias adds a constant to z that can hide
  every zero, while removing it keeps the winding of true pinwheels (outside a pinwheel's core
  |z| exceeds the removed mean).
* Pinwheel fracture index: |⟨e^{2iθ}⟩| of the directions on a small circle (Λ/6) round a
  pinwheel: 0 when every direction takes an equal share of it, near 1 when the pinwheel sits on a
  180° fracture between two opposite-direction domains (a winding the map must make there, not a
  centre where all directions meet). Read it against the random map with the same spectrum.
* Pinwheel density = n · Λ² / analysed area. A narrow-band isotropic Gaussian random field has
  density π (Wolf & Geisel 1998; Kaschube et al. 2010); in general π·⟨k²⟩/⟨k⟩² (Berry & Dennis
  2000), so broad-band maps give more than π. Always read it beside the controls.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, stats

from stdann.ephys.errors import EphysError


class MapError(EphysError):
    """A map that would give a wrong number; the message says what is wrong."""


@dataclass
class SheetMap:
    z: np.ndarray  # complex128 (rows = y, columns = x)
    pixel_size_mm: float
    origin_mm: tuple[float, float]  # (x0, y0): lower corner of element [0, 0]
    valid: np.ndarray  # bool, pixels with units nearby (elsewhere z = 0)
    window_mm: float

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(x0, x1, y0, y1) for matplotlib imshow(origin="lower")."""
        h, w = self.z.shape
        x0, y0 = self.origin_mm
        return (x0, x0 + w * self.pixel_size_mm, y0, y0 + h * self.pixel_size_mm)


def _check_map(z) -> np.ndarray:
    z = np.asarray(z)
    if z.ndim != 2 or min(z.shape) < 2:
        raise MapError(f"a map must be a 2-D array of at least 2x2 pixels, got shape {z.shape}")
    if not np.iscomplexobj(z):
        raise MapError("a map must be complex (z = Σ w e^{iθ}); build it with direction_map")
    if not np.isfinite(z).all():
        raise MapError(f"map holds {int((~np.isfinite(z)).sum())} NaN/Inf pixels; mask or fill them first")
    if not (np.abs(z) > 0).any():
        raise MapError("map has zero magnitude everywhere (no selective units?)")
    return z.astype(np.complex128)


# -- building maps ------------------------------------------------------------------------------------
MAX_MAP_SIDE = 4096  # pixels along a side of a map (a 4096² complex map is 256 MB)


def sheet_map(coords, values, pixel_size_mm: float, window_mm: float, extent=None) -> SheetMap:
    """Gaussian-kernel average of complex unit values on a grid.

    z(x) = Σ_j K(x − x_j) v_j / Σ_j K(x − x_j), K a Gaussian with FWHM ``window_mm``; pixels where
    the kernel-weighted unit count is below 1e-3 of its maximum are invalid and set to 0.
    ``extent`` = (x0, x1, y0, y1) in mm (default: the bounding box of the units).
    """
    xy = np.asarray(coords, dtype=np.float64)
    v = np.asarray(values, dtype=np.complex128).ravel()
    if xy.ndim != 2 or xy.shape[1] != 2 or xy.shape[0] != v.size:
        raise MapError(f"coords must be (N, 2) matching {v.size} values, got {xy.shape}")
    if not (np.isfinite(xy).all() and np.isfinite(v).all()):
        raise MapError("coordinates or values contain NaN/Inf; drop those units before mapping")
    if pixel_size_mm <= 0 or window_mm <= 0:
        raise MapError(f"pixel size and window must be > 0 mm, got {pixel_size_mm}, {window_mm}")
    if extent is None:
        extent = (xy[:, 0].min(), xy[:, 0].max(), xy[:, 1].min(), xy[:, 1].max())
    x0, x1, y0, y1 = (float(e) for e in extent)
    across = max(x1 - x0, y1 - y0) / pixel_size_mm
    if not across <= MAX_MAP_SIDE:
        raise MapError(f"a map of {across:,.0f} pixels across ({pixel_size_mm:g} mm pixels on {max(x1 - x0, y1 - y0):g} mm): "
                       f"at most {MAX_MAP_SIDE} (raise ephys.map_window_mm or lower ephys.map_pixels_per_window)")
    nx = max(2, int(np.ceil((x1 - x0) / pixel_size_mm - 1e-9)))
    ny = max(2, int(np.ceil((y1 - y0) / pixel_size_mm - 1e-9)))
    j = np.clip(np.floor((xy[:, 0] - x0) / pixel_size_mm).astype(np.int64), 0, nx - 1)
    i = np.clip(np.floor((xy[:, 1] - y0) / pixel_size_mm).astype(np.int64), 0, ny - 1)
    flat = i * nx + j
    num = np.bincount(flat, weights=v.real, minlength=nx * ny) + 1j * np.bincount(flat, weights=v.imag, minlength=nx * ny)
    cnt = np.bincount(flat, minlength=nx * ny).astype(np.float64)
    sigma = window_mm / (2.0 * np.sqrt(2.0 * np.log(2.0))) / pixel_size_mm
    num = num.reshape(ny, nx)
    cnt = ndimage.gaussian_filter(cnt.reshape(ny, nx), sigma, mode="constant")
    num = ndimage.gaussian_filter(num.real, sigma, mode="constant") + 1j * ndimage.gaussian_filter(num.imag, sigma, mode="constant")
    valid = cnt > 1e-3 * cnt.max() if cnt.max() > 0 else np.zeros_like(cnt, dtype=bool)
    z = np.where(valid, num / np.where(valid, cnt, 1.0), 0.0)
    return SheetMap(z=z, pixel_size_mm=float(pixel_size_mm), origin_mm=(x0, y0), valid=valid, window_mm=float(window_mm))


def direction_map(coords, pref_deg, weight, pixel_size_mm: float, window_mm: float, extent=None) -> SheetMap:
    """Direction map z = Σ K·w·e^{iθ} / Σ K (θ = preferred direction, w = selectivity, e.g. 1 − CV)."""
    th = np.deg2rad(np.asarray(pref_deg, dtype=np.float64))
    return sheet_map(coords, np.asarray(weight, dtype=np.float64) * np.exp(1j * th), pixel_size_mm, window_mm, extent)


def axial_map(coords, pref_deg, weight, pixel_size_mm: float, window_mm: float, extent=None) -> SheetMap:
    """Axial (orientation-style, 180°-periodic) map z = Σ K·w·e^{2iθ} / Σ K (θ = preferred axis
    or direction, w = axial selectivity, e.g. 1 − CV_axial)."""
    th = np.deg2rad(np.asarray(pref_deg, dtype=np.float64))
    return sheet_map(coords, np.asarray(weight, dtype=np.float64) * np.exp(2j * th), pixel_size_mm, window_mm, extent)


FINE_KERNEL_UNIT_SPACINGS = 2.0  # FWHM of the fine map, in unit spacings sqrt(area / n)
KERNEL_FRACTION_OF_SPACING = 0.25  # smoothed-map FWHM as a fraction of the fine map's column spacing
PINWHEEL_RING_FRACTION = 1 / 6  # radius of the circle round a pinwheel, in column spacings (pinwheels ~0.56 Λ apart at π/Λ²)


def unit_spacing(n_units: int, extent) -> float:
    """Mean spacing of ``n_units`` spread over ``extent`` = (x0, x1, y0, y1): sqrt(area / n), mm."""
    x0, x1, y0, y1 = (float(e) for e in extent)
    area = (x1 - x0) * (y1 - y0)
    if n_units < 1 or not area > 0:
        raise MapError(f"need units on a sheet of positive area, got {n_units} units on {area} mm²")
    return float(np.sqrt(area / n_units))


def remove_mean(sheet: SheetMap) -> np.ndarray:
    """z minus its mean vector over the valid pixels (0 elsewhere): the map without a population
    bias."""
    if not sheet.valid.any():
        raise MapError("map has no valid pixel")
    return np.where(sheet.valid, sheet.z - sheet.z[sheet.valid].mean(), 0.0)


def choose_kernel(coords, values, extent, pixels_per_kernel: float = 4.0) -> dict[str, float]:
    """FWHM (mm) of the smoothed map's Gaussian kernel, chosen against the measured column spacing.

    d = :func:`unit_spacing`; a fine map of the complex unit ``values`` (e.g. w·e^{iθ}) is made
    with FWHM ``FINE_KERNEL_UNIT_SPACINGS`` · d; Λ_fine = :func:`column_spacing` of that map minus
    its mean; kernel FWHM = max(fine FWHM, ``KERNEL_FRACTION_OF_SPACING`` · Λ_fine). A Gaussian of
    FWHM Λ/4 keeps 80% of the amplitude at the column frequency 1/Λ and removes most unit-level
    noise; a map without columns (salt and pepper) gives Λ_fine ≈ 3 × the fine FWHM (white noise
    smoothed by a Gaussian), so its kernel stays at the fine one instead of growing.
    """
    xy = np.asarray(coords, dtype=np.float64)
    d = unit_spacing(xy.shape[0], extent)
    fine = FINE_KERNEL_UNIT_SPACINGS * d
    m = sheet_map(xy, values, fine / pixels_per_kernel, fine, extent)
    lam = column_spacing(remove_mean(m), m.pixel_size_mm)
    return {"unit_spacing_mm": d, "fine_kernel_fwhm_mm": fine, "fine_column_spacing_mm": lam,
            "kernel_fwhm_mm": float(max(fine, KERNEL_FRACTION_OF_SPACING * lam))}


# -- spectrum and column spacing --------------------------------------------------------------------
def radial_spectrum(z, pixel_size_mm: float, taper: bool = True, n_bins: int | None = None):
    """(f centres in cycles/mm, mean power per annulus) of z − mean(z)."""
    z = _check_map(z)
    p, f = _power(z, pixel_size_mm, taper)
    nb = n_bins or max(4, min(z.shape) // 2)
    edges = np.linspace(0, f.max(), nb + 1)
    idx = np.clip(np.digitize(f.ravel(), edges) - 1, 0, nb - 1)
    s = np.bincount(idx, weights=p.ravel(), minlength=nb)
    c = np.bincount(idx, minlength=nb)
    return (edges[:-1] + edges[1:]) / 2, np.where(c > 0, s / np.maximum(c, 1), 0.0)


def _power(z, pixel_size_mm, taper):
    z = z - z.mean()
    if taper:
        z = z * np.outer(np.hanning(z.shape[0]), np.hanning(z.shape[1]))
    p = np.abs(np.fft.fft2(z)) ** 2
    fy = np.fft.fftfreq(z.shape[0], d=pixel_size_mm)
    fx = np.fft.fftfreq(z.shape[1], d=pixel_size_mm)
    f = np.hypot(fy[:, None], fx[None, :])
    return p, f


def column_spacing(z, pixel_size_mm: float, taper: bool = True) -> float:
    """Λ in mm = 1 / (power-weighted mean spatial frequency of z − mean), DC excluded."""
    z = _check_map(z)
    p, f = _power(z, pixel_size_mm, taper)
    p = p.copy()
    p[0, 0] = 0.0
    if p.sum() <= 0:
        raise MapError("map is constant after removing its mean: no columns to measure")
    return float(1.0 / ((p * f).sum() / p.sum()))


# -- pinwheels ----------------------------------------------------------------------------------------
def _wrap(a):
    return (a + np.pi) % (2 * np.pi) - np.pi


def find_pinwheels(z, pixel_size_mm: float, mask=None) -> np.ndarray:
    """Pinwheels of a 360°-periodic map: array (n, 3) of x (along columns) and y (along rows) in mm
    from element [0, 0], and charge ±1 (counter-clockwise winding of arg z in (x, y)).

    A plaquette is skipped if any corner is masked out (``mask`` False) or has |z| ≤ 1e-12·max|z|
    (phase undefined). The position is the zero of the plaquette's bilinear-averaged linear fit,
    kept inside the plaquette.
    """
    z = _check_map(z)
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
    z = _check_map(z)
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
    """Count, charges, Λ (measured), analysed area and density (pinwheels per Λ²)."""
    z = _check_map(z)
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
    """Exact (Garwood) confidence interval of a pinwheel density n·Λ²/A, treating the count n as
    Poisson and Λ, A as known: [χ²(α/2; 2n)/2, χ²(1−α/2; 2n+2)/2] · Λ²/A (lower bound 0 when
    n = 0). It says how well the count pins the density down; Λ's own uncertainty is not in it."""
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


# -- controls -------------------------------------------------------------------------------------------
def random_map_same_spectrum(z, seed: int = 0) -> np.ndarray:
    """A map with exactly the power spectrum of ``z`` and uniformly random Fourier phases."""
    z = _check_map(z)
    rng = np.random.default_rng(seed)
    amp = np.abs(np.fft.fft2(z))
    return np.fft.ifft2(amp * np.exp(2j * np.pi * rng.random(z.shape)))


def gaussian_random_map(shape, wavelength_px: float, bandwidth: float, seed: int = 0) -> np.ndarray:
    """Isotropic complex Gaussian random field with an annular spectrum (a reference and test
    field): Fourier amplitude ∝ exp(−(|f| − f0)² / (2σ²)) with f0 = 1 / ``wavelength_px`` and
    σ = ``bandwidth``, both in cycles per pixel; DC removed."""
    rng = np.random.default_rng(seed)
    f = np.hypot(np.fft.fftfreq(shape[0])[:, None], np.fft.fftfreq(shape[1])[None, :])
    amp = np.exp(-((f - 1.0 / wavelength_px) ** 2) / (2 * bandwidth**2))
    amp[0, 0] = 0.0
    noise = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
    return np.fft.ifft2(amp * noise)


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
    """One number: 1 − mean|Δpref|(d < short_mm) / the same with positions shuffled.
    0 = no spatial order, 1 = neighbours share their preference exactly, < 0 = anti-ordered."""
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

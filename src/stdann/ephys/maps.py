"""Maps of a cortical sheet: direction/axial maps, the smoothing kernel, column spacing, random-map controls.

A map is a complex field z on a regular grid: element [i, j] sits at x = x0 + (j + ½)·pixel,
y = y0 + (i + ½)·pixel (rows along y, columns along x, mm), where (x0, y0) is the lower corner of
the map's extent. Direction maps use z = Σ w e^{iθ} (360°-periodic); axial (orientation-style)
maps use e^{2iθ}.

* Column spacing Λ (mm) is measured from the power spectrum of z minus its mean: Λ = 1 / ⟨|f|⟩,
  f the spatial frequency (cycles/mm) weighted by power (DC excluded; a Hann taper suppresses the
  edges of non-periodic maps unless ``taper=False``).
* Which map: unit-level preferences are the data (a unit-level map draws them as they are). A
  smoothed map needs a kernel; :func:`choose_kernel` picks it against the measured column spacing
  (FWHM = max(2 unit spacings, Λ_fine / 4), Λ_fine measured on a map smoothed over 2 unit
  spacings), never the retinotopic tile, which averages every channel at a place into one hue.
  Column spacing and pinwheels are measured on the smoothed map with its mean vector removed
  (:func:`remove_mean`; high-pass = mean removal, low-pass = the kernel, as the band-pass maps of
  Kaschube et al. 2010): a population-wide direction bias adds a constant to z that can hide
  every zero, while removing it keeps the winding of true pinwheels (outside a pinwheel's core
  |z| exceeds the removed mean).

Pinwheels: :mod:`stdann.ephys.pinwheels`; smoothness: :mod:`stdann.ephys.smoothness`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

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


def check_map(z) -> np.ndarray:
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
    z = check_map(z)
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
    z = check_map(z)
    p, f = _power(z, pixel_size_mm, taper)
    p = p.copy()
    p[0, 0] = 0.0
    if p.sum() <= 0:
        raise MapError("map is constant after removing its mean: no columns to measure")
    return float(1.0 / ((p * f).sum() / p.sum()))


# -- controls -------------------------------------------------------------------------------------------
def random_map_same_spectrum(z, seed: int = 0) -> np.ndarray:
    """A map with exactly the power spectrum of ``z`` and uniformly random Fourier phases."""
    z = check_map(z)
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

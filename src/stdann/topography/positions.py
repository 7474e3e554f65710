"""Unit positions on a cortical sheet: the :class:`LayerPositions` record and its files.

One record per block: every unit (channel c, row h, column w) of the block output, flattened
row-major over (C, H, W), has a 2-D position in millimetres on the block's square sheet, plus the
integer array of precomputed neighborhoods used by the spatial loss. Field names follow TDANN's
``LayerPositions`` so that its users recognise them.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
import zlib
from pathlib import Path

import numpy as np

from stdann.errors import MissingFileError, StdannError
from stdann.fileio import atomic_write


FIELDS = ("name", "dims", "coordinates", "neighborhood_indices", "neighborhood_width", "sheet_side")
DAMAGED_FIX = ("restore it, or make the run's positions anew with `stdann positions init RUN --force` (which "
               "replaces swap-optimised positions too)")


class PositionsError(StdannError, ValueError):
    """Positions that do not fit their block; the message names the block and the numbers."""


@dataclass
class LayerPositions:
    name: str  # block name, e.g. "layer3.1"
    dims: tuple[int, int, int]  # (C, H, W) of the block output
    coordinates: np.ndarray  # (N, 2) float32, mm; column 0 = x (along W), column 1 = y (along H)
    neighborhood_indices: np.ndarray  # (P, M) int64 unit indices
    neighborhood_width: float  # mm
    sheet_side: float  # mm

    def __post_init__(self) -> None:
        self.dims = tuple(int(d) for d in self.dims)
        self.coordinates = np.asarray(self.coordinates, dtype=np.float32)
        self.neighborhood_indices = np.asarray(self.neighborhood_indices, dtype=np.int64)
        self.validate()

    @property
    def num_units(self) -> int:
        c, h, w = self.dims
        return c * h * w

    def validate(self) -> None:
        n = self.num_units
        if self.coordinates.ndim != 2 or self.coordinates.shape[1] != 2:
            raise PositionsError(f"{self.name}: coordinates must be (N, 2), got {self.coordinates.shape}")
        if self.coordinates.shape[0] != n:
            raise PositionsError(
                f"{self.name}: {self.coordinates.shape[0]} positions for {n} units (C,H,W = {self.dims}); "
                f"the file does not fit itself: it is damaged; {DAMAGED_FIX}"
            )
        if not np.all(np.isfinite(self.coordinates)):
            raise PositionsError(f"{self.name}: coordinates contain NaN or Inf")
        nb = self.neighborhood_indices
        if nb.ndim != 2:
            raise PositionsError(f"{self.name}: neighborhood_indices must be (P, M), got {nb.shape}")
        if nb.size and (nb.min() < 0 or nb.max() >= n):
            raise PositionsError(f"{self.name}: neighborhood indices outside [0, {n}) (max {nb.max()})")
        if nb.shape[0] and nb.shape[1] < 2:
            raise PositionsError(f"{self.name}: neighborhoods hold {nb.shape[1]} unit(s); at least 2 are needed")

    # -- files ---------------------------------------------------------------------------------
    def write_to(self, f) -> None:
        """Write the record (``.npz``, no pickle) to the open binary file ``f``."""
        np.savez(
            f,
            name=np.array(self.name),
            dims=np.array(self.dims, dtype=np.int64),
            coordinates=self.coordinates,
            neighborhood_indices=self.neighborhood_indices,
            neighborhood_width=np.array(self.neighborhood_width, dtype=np.float64),
            sheet_side=np.array(self.sheet_side, dtype=np.float64),
        )

    def save(self, path: str | Path) -> Path:
        """Write the record to ``path`` atomically (:func:`stdann.fileio.atomic_write`)."""
        return atomic_write(path, self.write_to)

    @classmethod
    def load(cls, path: str | Path) -> "LayerPositions":
        """The record in ``path`` (read without unpickling); a damaged or foreign file raises
        :class:`PositionsError` naming it and the fix."""
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"positions file {path} does not exist")
        try:
            _check_expansion(path)
            with np.load(path, allow_pickle=False) as f:
                missing = set(FIELDS) - set(f.files)
                if missing:
                    raise PositionsError(f"{path}: not a positions file (missing fields {sorted(missing)}); {DAMAGED_FIX}")
                fields = {k: f[k] for k in FIELDS}  # every array is read (and CRC-checked) here
            return cls(
                name=str(fields["name"]),
                dims=tuple(int(x) for x in fields["dims"]),
                coordinates=fields["coordinates"],
                neighborhood_indices=fields["neighborhood_indices"],
                neighborhood_width=float(fields["neighborhood_width"]),
                sheet_side=float(fields["sheet_side"]),
            )
        except PositionsError as e:  # made for another network, or NaN: the message says which
            raise PositionsError(str(e) if str(path) in str(e) else f"{path}: {e}") from None
        except (OSError, EOFError, ValueError, TypeError, KeyError, zipfile.BadZipFile, zlib.error) as e:
            raise PositionsError(f"{path} is damaged or not a positions file ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:120] if str(e) else 'unreadable'}); {DAMAGED_FIX}") from None


def _check_expansion(path: Path) -> None:
    """Refuse, before anything is decompressed, an archive whose members expand to far more than the
    file itself: stdann writes positions uncompressed (``np.savez``), so a large expansion is not a
    positions file (a "zip bomb" of a few MB can expand to many GB)."""
    with zipfile.ZipFile(path) as z:
        expanded = sum(i.file_size for i in z.infolist())
    limit = 2 * path.stat().st_size + (1 << 20)
    if expanded > limit:
        raise PositionsError(f"{path} would expand to {expanded:,} bytes from {path.stat().st_size:,}: it is not a "
                             f"positions file that stdann wrote; {DAMAGED_FIX}")


def positions_fingerprint(positions: dict[str, LayerPositions]) -> str:
    """A short hash of every block's geometry, coordinates and neighbourhoods: equal exactly when the
    positions are (to compare what several processes read)."""
    h = hashlib.sha256()
    for name in sorted(positions):
        p = positions[name]
        h.update(f"{name}|{p.dims}|{p.neighborhood_width!r}|{p.sheet_side!r}|".encode())
        h.update(np.ascontiguousarray(p.coordinates).tobytes())
        h.update(np.ascontiguousarray(p.neighborhood_indices).tobytes())
    return h.hexdigest()[:16]


def positions_path(run_dir: str | Path, block: str) -> Path:
    return Path(run_dir) / "positions" / f"{block}.npz"


def save_run_positions(run_dir: str | Path, positions: dict[str, LayerPositions]) -> None:
    for block, pos in positions.items():
        pos.save(positions_path(run_dir, block))


def load_run_positions(run_dir: str | Path, blocks: list[str] | tuple[str, ...] | None = None) -> dict[str, LayerPositions]:
    """The positions of a run folder (all blocks found, or those named)."""
    folder = Path(run_dir) / "positions"
    if not folder.is_dir():
        raise MissingFileError(
            f"{run_dir} has no positions/ folder; train it with `stdann train` or create positions "
            "with `stdann positions init RUN_DIR`"
        )
    names = blocks if blocks is not None else sorted(
        p.stem for p in folder.glob("*.npz") if not p.name.startswith(".") and not p.name.endswith(".tmp.npz")
    )
    out = {}
    for b in names:
        p = positions_path(run_dir, b)
        if not p.is_file():
            raise MissingFileError(f"{run_dir}: no positions for block {b} ({p}); make them with "
                                   f"`stdann positions init {run_dir}` (or train the run)")
        out[b] = LayerPositions.load(p)
    return out

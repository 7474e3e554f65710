"""A cache of retinotopic initial positions, keyed by their geometry.

:func:`stdann.topography.init.init_model_positions` is deterministic: a block's positions and
neighbourhoods depend only on the block's output shape, its sheet, the seed and the number of
windows. At paper scale they take minutes of CPU for the eight blocks, and every fresh run, every
benchmark and every analysis of a new network would make them again. :func:`cached_model_positions`
returns the same records, made once per geometry and kept as one ``.npz`` per block under
the cache folder:

* ``$STDANN_CACHE_DIR`` when set (``off`` or an empty value: no cache), else
  ``$XDG_CACHE_HOME/stdann/positions``, else ``~/.cache/stdann/positions``;
* the key hashes the block, its (C, H, W), its sheet, the seed, ``n_windows`` and the source of the
  initialisation module, so a change of the algorithm never returns old positions;
* files are written atomically and read without unpickling (:meth:`LayerPositions.load`); a
  damaged or foreign file is made again, and a folder that cannot be written only costs the time.

A run folder keeps its own copy (``RUN/positions/``): the cache is never what a run reads back.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path

import torch

from stdann.errors import StdannError
from stdann.models.r3d import BLOCK_NAMES, block_output_shapes
from stdann.topography import init as _init
from stdann.topography.positions import LayerPositions
from stdann.topography.sheets import SheetSpec, default_sheets

CACHE_ENV = "STDANN_CACHE_DIR"


def cache_folder() -> Path | None:
    """Where cached positions live, or None when the cache is off (see the module docstring)."""
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        return None if env.strip().lower() in ("", "off", "0", "none") else Path(env).expanduser() / "positions"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "stdann" / "positions"


@functools.lru_cache(maxsize=1)
def _algorithm() -> str:
    return hashlib.sha256(Path(_init.__file__).read_bytes()).hexdigest()[:12]


def position_key(block: str, dims: tuple[int, int, int], sheet: SheetSpec, seed: int, n_windows: int) -> str:
    """The cache key of one block's initial positions."""
    text = f"{block}|{tuple(int(d) for d in dims)}|{sheet!r}|{int(seed)}|{int(n_windows)}|{_algorithm()}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _path(folder: Path, block: str, dims, sheet: SheetSpec, seed: int, n_windows: int) -> Path:
    return folder / f"{block}-{position_key(block, dims, sheet, seed, n_windows)}.npz"


def cached_model_positions(width: int, frames: int, size: int, blocks=None, sheets: dict[str, SheetSpec] | None = None,
                           seed: int = 0, n_windows: int = 20000,
                           device: str | torch.device | None = None) -> dict[str, LayerPositions]:
    """:func:`~stdann.topography.init.init_model_positions` with the same arguments, each block read
    from the cache when it holds it and made (and stored) otherwise."""
    folder = cache_folder()
    blocks = list(BLOCK_NAMES if blocks is None else blocks)
    if folder is None:
        return _init.init_model_positions(width, frames, size, blocks, sheets, seed, n_windows, device)
    shapes = block_output_shapes(width, frames, size)
    all_sheets = default_sheets()
    all_sheets.update(sheets or {})
    out: dict[str, LayerPositions] = {}
    missing = []
    for b in blocks:
        if b not in shapes or b not in all_sheets:
            missing.append(b)  # init_model_positions names the problem
            continue
        c, _, h, w = shapes[b]
        try:
            out[b] = LayerPositions.load(_path(folder, b, (c, h, w), all_sheets[b], seed, n_windows))
        except (OSError, StdannError, ValueError):
            missing.append(b)
    if missing:
        made = _init.init_model_positions(width, frames, size, missing, sheets, seed, n_windows, device)
        for b, pos in made.items():
            try:
                folder.mkdir(parents=True, exist_ok=True)
                pos.save(_path(folder, b, pos.dims, all_sheets[b], seed, n_windows))
            except OSError:
                pass  # a read-only or full cache folder costs time, never the result
        out.update(made)
    return {b: out[b] for b in blocks}

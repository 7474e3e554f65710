"""A run folder's unit positions (``RUN/positions/<block>.npz``), read and written as one set: the
blocks of a run are made together, so a set is never completed by making the missing blocks anew
(that would silently replace swap-optimised positions), and a process killed while writing leaves
the previous set whole."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Iterable

from stdann.fileio import atomic_write_many
from stdann.runs.errors import RunFolderError
from stdann.runs.layout import POSITIONS
from stdann.topography.positions import LayerPositions, load_run_positions

if TYPE_CHECKING:  # the folder calls these functions; they only use its methods
    from stdann.runs.folder import RunFolder


def save_positions(run: RunFolder, positions: dict[str, LayerPositions], record: tuple[str, Any] | None = None) -> None:
    """Write every block's positions as one set, with ``record = (rel, obj)`` (e.g. ``swap.json``)
    as a JSON file last: all files are written before any replaces its old version, so a process
    killed while writing leaves the previous positions whole."""
    rels = [f"{POSITIONS}/{b}.npz" for b in positions] + ([record[0]] if record else [])
    run.check_writable(rels)
    items = [(run.claim(f"{POSITIONS}/{block}.npz"), pos.write_to) for block, pos in positions.items()]
    if record:
        data = json.dumps(record[1]).encode("utf-8")
        items.append((run.claim(record[0]), lambda f: f.write(data)))
    atomic_write_many(items)


def interrupted_positions(run: RunFolder, blocks: Iterable[str], record: str) -> bool:
    """Whether this folder holds part of a set of positions that a killed process was writing
    with ``record``: some blocks' files but not all, every one written by stdann, and no
    ``record`` (written last)."""
    present = [b for b in blocks if run.positions_file(b).is_file()]
    return (0 < len(present) < len(list(blocks)) and not run.has(record)
            and all(run.has(f"{POSITIONS}/{b}.npz") for b in present))


def load_positions(run: RunFolder, blocks: Iterable[str],
                   dims: dict[str, tuple[int, int, int]] | None = None) -> dict[str, LayerPositions] | None:
    """The positions of ``blocks``: all of them, or ``None`` when there are none at all. Some but
    not all is refused, naming the missing files: positions of one run are made together, and
    making the missing ones anew must never replace the others (e.g. swap-optimised ones)."""
    blocks = list(blocks)
    missing = [run.positions_file(b) for b in blocks if not run.positions_file(b).is_file()]
    if len(missing) == len(blocks):
        return None
    if missing:
        raise RunFolderError(
            f"{run.root / POSITIONS} lacks {', '.join(p.name for p in missing)} while it holds the other blocks' "
            f"positions; restore the missing file(s). (`stdann positions init {run.root} --force` would make all "
            "positions anew: it replaces the other blocks' positions, swap-optimised ones included, so that a "
            "run trained on them cannot be resumed)"
        )
    pos = load_run_positions(run.root, blocks)
    wrong = [f"{b}: positions for (C,H,W) = {tuple(p.dims)}, the network has {tuple(dims[b])}"
             for b, p in pos.items() if dims is not None and b in dims and tuple(p.dims) != tuple(dims[b])]
    if wrong:
        raise RunFolderError(
            f"{run.root / POSITIONS} holds positions for another network ({'; '.join(wrong)[:300]}): train with the "
            "configuration they were made for (the run's config.yaml: leave out --preset / --set), or choose a new "
            "--out"
        )
    return pos

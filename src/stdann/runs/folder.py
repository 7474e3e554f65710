"""The run folder: its layout, the proof that stdann made it, the files stdann wrote there, and
every write into it.

Rule: a command deletes or overwrites only files that stdann itself wrote, in a folder it can
prove is a stdann run; anything else is refused with a one-line error. How:

* the **marker** ``RUN/.stdann-run`` is written when stdann makes a folder a run folder;
* the **manifest** ``RUN/.stdann-files`` (:mod:`stdann.runs.manifest`) lists every file stdann
  wrote there. A path is added *before* the file is written (:meth:`RunFolder.claim`), so a crash
  never leaves a stdann file that the manifest does not know; a damaged manifest stops every write
  and delete;
* a write to a path that exists but is not in the manifest is refused (a user's file is never
  replaced); ``--overwrite`` (:meth:`RunFolder.clear`) deletes only manifest files, never a
  folder tree, so a user's own files anywhere in the run folder survive;
* no path is written or deleted through a symbolic link (:func:`stdann.runs.manifest.guarded_path`);
* every write happens while this process holds the folder's lock (:mod:`stdann.runs.lock`).

A folder without the marker is never taken for a run, whatever it holds: a ``config.yaml`` or a
checkpoint proves nothing (a user's copy of a stdann config looks the same).

The layout's names: :mod:`stdann.runs.layout`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Iterable, Iterator


from stdann import __version__
from stdann.config import Config
from stdann.fileio import (
    atomic_write_text,
    is_temp_of,
    pid_alive,
    read_json_cache,
    remove_stale_temps,
    write_json,
)
from stdann.runs.checkpoint import atomic_save, checkpoint_path
from stdann.runs.errors import FolderInUse, RunFolderError
from stdann.runs.lock import folder_lock, held_elsewhere, holds
from stdann.runs.manifest import (
    MANIFEST,
    append_manifest,
    bookkeeping_ok,
    clean_rel,
    guarded_path,
    link_in,
    read_manifest,
    write_manifest,
)
from stdann.runs.layout import (
    BOOKKEEPING, CHECKPOINTS, CONFIG, FIGURES, MARKER, STAGING_PREFIX, STATUS, TRAINING_STATE,
)
from stdann.runs.positions import interrupted_positions, load_positions, save_positions
from stdann.topography.positions import LayerPositions, positions_path


def _rel(rel: str) -> str:
    """A normalised relative path inside a run folder (``a/b``), refusing anything that leaves it."""
    return clean_rel(rel)


def _remove_tree(path: Path) -> None:
    """Remove stdann's own staging folder (never a link: a link there is left alone)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)


def _under(rel: str, tops: Iterable[str]) -> bool:
    return any(rel == t or rel.startswith(t + "/") for t in tops)


class RunFolder:
    """One run folder (see the module docstring). Cheap to create; touches the disk only when asked."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.root)!r})"

    # -- paths ------------------------------------------------------------------------------------------
    def path(self, rel: str) -> Path:
        return self.root / _rel(rel)

    def checkpoint(self, which: str = "last") -> Path:
        return checkpoint_path(self.root, which)

    def positions_file(self, block: str) -> Path:
        return positions_path(self.root, block)

    def positions_figure(self, block: str) -> str:
        return f"{FIGURES}/positions_{block}.png"

    def child(self, name: str) -> "RunFolder":
        return RunFolder(self.root / _rel(name))

    # -- what is there ----------------------------------------------------------------------------------
    def is_marked(self) -> bool:
        marker = self.root / MARKER
        return marker.is_file() and not marker.is_symlink()

    def content(self, limit: int = 5) -> list[str]:
        """Up to ``limit`` entries of the folder other than stdann's bookkeeping files."""
        if not self.root.is_dir():
            return []
        out = []
        for p in sorted(self.root.iterdir()):
            if p.name not in BOOKKEEPING:
                out.append(p.name + ("/" if p.is_dir() else ""))
                if len(out) >= limit:
                    break
        return out

    def kind(self) -> str:
        """``absent`` | ``empty`` | ``marked`` (a stdann run) | ``foreign`` (other files, no marker)."""
        if not self.root.exists():
            return "absent"
        if not self.root.is_dir():
            raise RunFolderError(f"{self.root} is a file, not a folder; choose another path")
        for name in BOOKKEEPING:
            bookkeeping_ok(self.root / name)
        if self.is_marked():
            return "marked"
        return "foreign" if self.content(1) else "empty"

    def written(self) -> set[str]:
        """The files stdann wrote here (relative paths), from the manifest (read afresh each time:
        several RunFolder objects of one folder may write it in one process). A damaged manifest
        raises :class:`~stdann.runs.manifest.ManifestError`."""
        return set(read_manifest(self.root))

    def has(self, rel: str) -> bool:
        """Whether stdann wrote ``rel`` here and it is still there (a plain file, not a link)."""
        rel = _rel(rel)
        p = self.path(rel)
        return rel in self.written() and p.exists() and not p.is_symlink() and link_in(self.root, rel, include_last=False) is None

    def started(self) -> bool:
        """Whether a training run has written its state here (config, status, checkpoints or logs)."""
        return any(_under(r, TRAINING_STATE) for r in self.written())

    def status(self) -> dict:
        """``run.json`` (empty when absent or unreadable)."""
        return read_json_cache(self.root / STATUS)

    def mark_ended(self, error: BaseException) -> None:
        """After an error stopped this process's training: ``run.json`` must not go on saying
        "running" (best effort: on a full disk even this small write may fail)."""
        info = self.status()
        if info.get("status") != "running" or info.get("pid") != os.getpid():
            return
        status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        fields = {k: v for k, v in info.items() if k not in ("status", "pid", "host", "updated")}
        with contextlib.suppress(Exception):
            self.write_status(status, **fields, error=" ".join(f"{type(error).__name__}: {error}".split())[:500])

    def is_finished(self) -> bool:
        return self.status().get("status") == "finished"

    # -- locking and creation ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def hold(self) -> Iterator["RunFolder"]:
        """Hold the folder's lock (creating the folder if needed); see :mod:`stdann.runs.lock`."""
        if self.root.exists() and not self.root.is_dir():
            raise RunFolderError(f"{self.root} is a file, not a folder; choose another path")
        with folder_lock(self.root):
            self._refuse_busy_ancestor()
            yield self

    def _refuse_busy_ancestor(self, levels: int = 4) -> None:
        """Refuse a folder inside a stdann folder that another process is using (a running study's
        condition: replacing it while the study runs would leave the study describing a run that is gone)."""
        for anc in list(self.root.resolve().parents)[:levels]:
            if (anc / MARKER).is_file():
                holder = held_elsewhere(anc)
                if holder is not None:
                    raise FolderInUse(f"{self.root} lies inside {anc}, which another stdann process is using{holder}; "
                                      "wait for it to finish or stop it, then run the command again")

    def require_lock(self) -> None:
        if not holds(self.root):
            raise RuntimeError(f"internal error: write into {self.root} without holding its lock (use RunFolder.hold())")

    def create(self) -> "RunFolder":
        """Make the folder a run folder (write the marker)."""
        self.require_lock()
        if self.kind() == "marked":
            return self
        info = {"stdann_run": 1, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "stdann": __version__,
                "host": socket.gethostname(), "pid": os.getpid()}
        atomic_write_text(self.root / MARKER, json.dumps(info, indent=1))
        return self

    def ensure_run(self) -> "RunFolder":
        """Make sure this is a run folder before writing into it (create it when it is absent, empty,
        or a folder of other files). Temporary files that a killed process left beside the files
        stdann wrote are removed."""
        self.require_lock()
        self.create()
        self.remove_stale_temps()
        return self

    def remove_stale_temps(self) -> list[Path]:
        """Remove the temporary files of atomic writes of this run's files (and of its bookkeeping),
        and the staging folders, left by processes that ended while writing them (kill -9, a full disk)."""
        by_folder: dict[Path, set[str]] = {self.root: {MARKER, MANIFEST}}
        for rel in self.written():
            p = self.root / rel
            if link_in(self.root, rel, include_last=False) is None:
                by_folder.setdefault(p.parent, set()).add(p.name)
        removed = [t for folder, names in by_folder.items() for t in remove_stale_temps(folder, names)]
        for p in self.root.glob(f"{STAGING_PREFIX}*"):
            pid = p.name[len(STAGING_PREFIX):]
            if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
                _remove_tree(p)
                removed.append(p)
        return removed

    def adopt_child(self, name: str) -> "RunFolder":
        """A run folder nested in this one (e.g. the recipe's ``pretrain/``), entered in this folder's
        manifest so that clearing this run clears it too. Refuses a nested folder stdann did not make,
        and a link (another run's folder: clearing this run must never clear that one)."""
        self.require_lock()
        guarded_path(self.root, f"{_rel(name)}/{MARKER}", what="write")
        child = self.child(name)
        kind = child.kind()
        if kind == "foreign":
            raise RunFolderError(f"{child.root} holds files stdann did not write ({', '.join(child.content())}); "
                                 "move them away or choose another folder")
        self._record(f"{_rel(name)}/{MARKER}")
        return child

    # -- writes -------------------------------------------------------------------------------------------------
    def _record(self, rel: str) -> None:
        self.require_lock()
        rel = _rel(rel)
        if rel in self.written():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        append_manifest(self.root, rel)

    def check_writable(self, rels: Iterable[str]) -> None:
        """Refuse (before any work) if one of ``rels`` exists and stdann did not write it, is a folder
        or a link, or lies behind a link (see :func:`stdann.runs.manifest.guarded_path`)."""
        written = self.written()
        for rel in map(_rel, rels):
            p = guarded_path(self.root, rel, what="write")
            if p.exists() and not p.is_file():
                raise RunFolderError(f"{p} is a folder where stdann writes a file: move it away or choose another folder")
            if rel not in written and p.exists():
                raise RunFolderError(
                    f"{p} exists and was not written by stdann, which will not overwrite it: "
                    "move it away or choose another folder"
                )

    def claim(self, rel: str) -> Path:
        """The path of ``rel``, ready to be written: refused if a file stdann did not write is there;
        otherwise entered in the manifest (before the write) and its parent folder made."""
        self.require_lock()
        if not self.is_marked():
            raise RuntimeError(f"internal error: write into {self.root} before it was made a run folder")
        self.check_writable([rel])
        self._record(rel)
        p = self.path(rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def record_own(self, rel: str) -> None:
        """Enter in the manifest a file that a library has just created under a name no one else could
        know in advance (TensorBoard's event file, named with a random suffix): the one exception to
        "claim before writing"."""
        self.require_lock()
        guarded_path(self.root, _rel(rel), what="write")
        self._record(rel)

    def write_text(self, rel: str, text: str) -> Path:
        return atomic_write_text(self.claim(rel), text)

    def write_json(self, rel: str, obj: Any, **dumps_kwargs: Any) -> Path:
        return write_json(self.claim(rel), obj, **dumps_kwargs)

    def write_config(self, cfg: Config) -> Path:
        return self.write_text(CONFIG, cfg.to_yaml())

    def write_status(self, status: str, **fields: Any) -> Path:
        """``run.json``: the status, the given fields, and who wrote it."""
        info = {"status": status, **fields, "pid": os.getpid(), "host": socket.gethostname(),
                "updated": time.strftime("%Y-%m-%d %H:%M:%S")}
        return self.write_json(STATUS, info)

    def save_checkpoint(self, which: str, ckpt: dict) -> Path:
        return atomic_save(ckpt, self.claim(f"{CHECKPOINTS}/{which}.pt"))

    def save_positions(self, positions: dict[str, LayerPositions], record: tuple[str, Any] | None = None) -> None:
        """:func:`stdann.runs.positions.save_positions` (one set, written atomically, ``record`` last)."""
        save_positions(self, positions, record)

    def interrupted_positions(self, blocks: Iterable[str], record: str) -> bool:
        """:func:`stdann.runs.positions.interrupted_positions`."""
        return interrupted_positions(self, blocks, record)

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """A private, empty folder inside the run folder for outputs that a library writes itself
        (tables, figures); :meth:`publish` then moves them into place through the manifest. The
        folder is removed when the block ends (a killed process's is removed by the next
        :meth:`ensure_run`)."""
        self.require_lock()
        tmp = self.root / f"{STAGING_PREFIX}{os.getpid()}"
        _remove_tree(tmp)
        tmp.mkdir(parents=True)
        try:
            yield tmp
        finally:
            _remove_tree(tmp)

    def publish(self, staging: Path) -> list[str]:
        """Move every file of ``staging`` (:meth:`staging`) to the same relative path in the run
        folder: all are checked first (a user's file, a folder or a link in the way refuses them
        all, nothing moved), then each is entered in the manifest and renamed into place."""
        self.require_lock()
        files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file() and not p.is_symlink())
        self.check_writable(files)
        for rel in files:
            os.replace(staging / rel, self.claim(rel))
        return files

    # -- deletion ---------------------------------------------------------------------------------------------------
    def _to_clear(self, keep: Iterable[str] = (), only: Iterable[str] | None = None) -> tuple[list[str], list[str]]:
        """(paths to delete, paths to keep) of :meth:`clear`, every one checked first — the manifest
        read whole, no path through a link, nested runs' manifests too — so that a problem anywhere
        is refused before anything is deleted."""
        keep = tuple(_rel(k) for k in keep)
        only = None if only is None else tuple(_rel(o) for o in only)
        drop, remaining = [], []
        for rel in sorted(self.written()):
            if _under(rel, keep) or (only is not None and not _under(rel, only)):
                remaining.append(rel)
                continue
            p = guarded_path(self.root, rel, what="delete")
            if p.name == MARKER and "/" in rel and RunFolder(p.parent).is_marked():
                RunFolder(p.parent)._to_clear()
            drop.append(rel)
        return drop, remaining

    def clear(self, keep: Iterable[str] = (), only: Iterable[str] | None = None) -> list[str]:
        """Delete the files stdann wrote here (and clear the run folders nested in it that it
        recorded), except those under ``keep`` (or only those under ``only``). Never deletes a folder
        that still holds anything, nor any file the manifest does not list, nor anything through a
        link; a damaged manifest or a link in the way is refused before anything is deleted. Returns
        up to five of the files left that stdann did not write (for the user's information)."""
        self.require_lock()
        if not self.is_marked():
            raise RuntimeError(f"internal error: clear {self.root}, which is not a run folder")
        drop, remaining = self._to_clear(keep, only)
        emptied: set[Path] = set()
        for rel in drop:
            p = self.root / rel
            if p.name == MARKER and "/" in rel:  # a nested run recorded by this one: clear it, keep it marked
                child = RunFolder(p.parent)
                if child.is_marked():
                    with child.hold():
                        child.clear()
                remaining.append(rel)
                emptied.add(p.parent)
                continue
            if p.is_dir():
                remaining.append(rel)  # replaced by a folder since stdann wrote it: not stdann's any more
                continue
            p.unlink(missing_ok=True)
            if p.parent.is_dir():
                for sib in p.parent.iterdir():  # temporary files of interrupted atomic writes
                    if is_temp_of(sib.name, p.name):
                        sib.unlink(missing_ok=True)
            emptied.add(p.parent)
        write_manifest(self.root, sorted(remaining))
        for folder in sorted(emptied, key=lambda q: len(q.parts), reverse=True):
            while folder != self.root and self.root in folder.parents and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()  # a folder left empty; one that holds anything stays
                folder = folder.parent
        return self._foreign_files()

    def _foreign_files(self, limit: int = 5) -> list[str]:
        written, out = self.written(), []
        for dirpath, dirnames, filenames in os.walk(self.root):
            base = Path(dirpath)
            if base != self.root and (base / MARKER).exists():
                dirnames[:] = []  # a nested run folder: its own business
                continue
            for name in sorted(filenames):
                rel = (base / name).relative_to(self.root).as_posix()
                if rel not in written and name not in BOOKKEEPING:
                    out.append(rel)
                    if len(out) >= limit:
                        return out
        return out

    # -- reads --------------------------------------------------------------------------------------------------------
    def load_positions(self, blocks: Iterable[str],
                       dims: dict[str, tuple[int, int, int]] | None = None) -> dict[str, LayerPositions] | None:
        """:func:`stdann.runs.positions.load_positions` (all blocks or none; refused for another network)."""
        return load_positions(self, blocks, dims)

    def discard(self, keep: Iterable[str] = ()) -> list[str]:
        """``--overwrite`` (lock held): delete the files stdann wrote here except those under ``keep``,
        and print which other files were left. A folder stdann cannot prove it made (no marker) is
        refused if it holds anything."""
        self.require_lock()
        kind = self.kind()
        if kind == "foreign":
            raise RunFolderError(
                f"{self.root} is not a stdann run folder (it holds {', '.join(self.content())}); --overwrite "
                "deletes only files stdann wrote in its own run folders: choose another --out"
            )
        if kind != "marked":
            return []
        kept = self.clear(keep=keep)
        if kept:
            print(f"[stdann] --overwrite left the files stdann did not write in {self.root}: {', '.join(kept)}")
        return kept

"""The run folder: its layout, the proof that stdann made it, the files stdann wrote there, and
every write into it.

Rule: a command deletes or overwrites only files that stdann itself wrote, in a folder it can
prove is a stdann run; anything else is refused with a one-line error. How:

* the **marker** ``RUN/.stdann-run`` is written when stdann makes a folder a run folder;
* the **manifest** ``RUN/.stdann-files`` lists, one per line, every file stdann wrote there. A path
  is added *before* the file is written (:meth:`RunFolder.claim`), so a crash never leaves a
  stdann file that the manifest does not know;
* a write to a path that exists but is not in the manifest is refused (a user's file is never
  replaced); ``--overwrite`` (:meth:`RunFolder.clear`) deletes only manifest files, never a
  folder tree, so a user's own files anywhere in the run folder survive;
* every write happens while this process holds the folder's lock (:mod:`stdann.runs.lock`).

Run folders made by stdann before the marker existed ("legacy": ``config.yaml`` or
``checkpoints/`` but no marker) are adopted when they are resumed or continued: the marker is
written and the files whose *content* shows stdann wrote them (a checkpoint stamped with the
checkpoint format, a complete stdann config, a positions record, a log with stdann's header, ...)
are entered in the manifest. ``--overwrite`` refuses a legacy folder: which files stdann wrote
there cannot be proven, so the user decides.

Layout (paths relative to the run folder)::

    config.yaml               the resolved Config
    run.json                  status, step, versions, the writing process
    checkpoints/last.pt       training state; init.pt = the step-0 weights; step_NNNNNN.pt snapshots
    positions/<block>.npz     unit positions (LayerPositions)
    logs/train.csv, logs/tb/  training log, TensorBoard events
    swap.json, pretrain/      the recipe's swap summary and its contrastive-only run (a run folder)
    metrics.json, tables/, figures/, report.html    analysis and report outputs
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import zipfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
import yaml

from stdann import __version__
from stdann.config import Config, ConfigError, parse_yaml
from stdann.fileio import (
    atomic_write_many,
    atomic_write_text,
    is_temp_of,
    read_json_cache,
    remove_stale_temps,
    write_json,
)
from stdann.runs.checkpoint import FORMAT, atomic_save, checkpoint_path
from stdann.runs.errors import RunExistsError, RunFolderError
from stdann.runs.lock import LOCK_NAME, folder_lock, holds
from stdann.topography.positions import LayerPositions, PositionsError, load_run_positions, positions_path

MARKER = ".stdann-run"
MANIFEST = ".stdann-files"
BOOKKEEPING = (MARKER, MANIFEST, LOCK_NAME)

CONFIG = "config.yaml"
STATUS = "run.json"
CHECKPOINTS = "checkpoints"
POSITIONS = "positions"
LOGS = "logs"
TRAIN_LOG = "logs/train.csv"
TENSORBOARD = "logs/tb"
SWAP = "swap.json"
PRETRAIN = "pretrain"
METRICS = "metrics.json"
TABLES = "tables"
FIGURES = "figures"
REPORT = "report.html"
CONDITION = "condition.json"

TRAINING_STATE = (CONFIG, STATUS, CHECKPOINTS, LOGS)  # what a training run writes about itself
TRAINING_INPUTS = (POSITIONS, SWAP, PRETRAIN)  # kept by `train --overwrite`: the run's inputs
LOG_HEADER = "step,epoch,lr,loss"  # how stdann's train.csv starts


def _rel(rel: str) -> str:
    """A normalised relative path inside a run folder (``a/b``), refusing anything that leaves it."""
    parts = [p for p in str(rel).replace(os.sep, "/").split("/") if p not in ("", ".")]
    if not parts or str(rel).startswith("/") or ".." in parts:
        raise ValueError(f"not a path inside a run folder: {rel!r}")
    return "/".join(parts)


def _under(rel: str, tops: Iterable[str]) -> bool:
    return any(rel == t or rel.startswith(t + "/") for t in tops)


def _flat_keys(d: Any, prefix: str = "") -> set[str]:
    if not isinstance(d, dict) or not d:
        return {prefix[:-1]} if prefix else set()
    keys: set[str] = set()
    for k, v in d.items():
        keys |= _flat_keys(v, f"{prefix}{k}.")
    return keys


def _yaml_mapping(path: Path, text: str | None = None) -> dict:
    """A YAML file that must hold a mapping; damaged files raise :class:`RunFolderError` naming it."""
    try:
        text = path.read_text(encoding="utf-8") if text is None else text
        data = parse_yaml(text)
    except UnicodeDecodeError:
        raise RunFolderError(f"{path} is not a text file: it is damaged") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise RunFolderError(f"{path} is not valid YAML{at}: it is damaged") from None
    if not isinstance(data, dict):
        raise RunFolderError(f"{path} does not hold a configuration mapping (got {type(data).__name__}): it is damaged")
    return data


def checkpoint_config_text(path: Path) -> str:
    """The config stored in a checkpoint, read without loading its tensors (memory-mapped)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - re-raised as one line naming the file
        raise RunFolderError(f"cannot read {path} ({type(e).__name__}): the checkpoint is damaged; "
                             "restore it or start the run again with --overwrite") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("config"), str):
        raise RunFolderError(f"{path} holds no configuration: it is not a stdann training checkpoint")
    return ckpt["config"]


# -- content proofs (legacy adoption) ---------------------------------------------------------------------
def _stamped_checkpoint(path: Path) -> bool:
    """A torch zip archive whose pickle carries stdann's checkpoint format string."""
    try:
        with zipfile.ZipFile(path) as z:
            pkl = [n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
            return bool(pkl) and FORMAT.encode() in z.read(pkl[0])
    except (OSError, zipfile.BadZipFile, KeyError):
        return False


def _json_with(path: Path, keys: set[str]) -> bool:
    return keys <= set(read_json_cache(path))  # (every caller asks for at least one key)


def _stdann_config(path: Path) -> bool:
    try:
        data = _yaml_mapping(path)
        Config.from_dict(data, validate=False)
    except (OSError, ValueError, TypeError, RunFolderError):
        return False
    return {"model", "optim", "train"} <= set(data)


def _stdann_positions(path: Path) -> bool:
    try:
        LayerPositions.load(path)
    except (OSError, ValueError, PositionsError, KeyError):
        return False
    return True


def _stdann_report(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return '<meta name="generator" content="stdann ' in f.read(4096)
    except OSError:
        return False


def _stdann_log(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().startswith(LOG_HEADER)
    except (OSError, UnicodeDecodeError):
        return False


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
        return (self.root / MARKER).is_file()

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
        """``absent`` | ``empty`` | ``marked`` (a stdann run) | ``legacy`` (a run made before the marker
        existed) | ``foreign`` (other files, no marker)."""
        if not self.root.exists():
            return "absent"
        if not self.root.is_dir():
            raise RunFolderError(f"{self.root} is a file, not a folder; choose another path")
        if self.is_marked():
            return "marked"
        if self._legacy_run():
            return "legacy"
        return "foreign" if self.content(1) else "empty"

    def _legacy_run(self) -> bool:
        """A run folder of an stdann made before the marker: its config or a checkpoint proves it."""
        config = self.root / CONFIG
        if config.is_file() and _stdann_config(config):
            return True
        return any(_stamped_checkpoint(self.checkpoint(w)) for w in ("last", "init") if self.checkpoint(w).is_file())

    def written(self) -> set[str]:
        """The files stdann wrote here (relative paths), from the manifest (read afresh each time:
        several RunFolder objects of one folder may write it in one process)."""
        found: set[str] = set()
        with contextlib.suppress(FileNotFoundError):
            for line in (self.root / MANIFEST).read_text(encoding="utf-8", errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    found.add(_rel(line.strip()))
        return found

    def has(self, rel: str) -> bool:
        """Whether stdann wrote ``rel`` here and it is still there."""
        rel = _rel(rel)
        return rel in self.written() and self.path(rel).exists()

    def started(self) -> bool:
        """Whether a training run has written its state here (config, status, checkpoints or logs)."""
        return self.checkpoint("last").is_file() or any(_under(r, TRAINING_STATE) for r in self.written())

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
            yield self

    @contextlib.contextmanager
    def hold_for_resume(self) -> Iterator["RunFolder"]:
        """Hold the lock of a run to resume: a folder that does not exist is refused (never created),
        one in use by another process is refused as such, one without a run to resume is refused."""
        if not self.root.exists():
            self.require_resumable()
        with self.hold():
            self.require_resumable()
            yield self

    def _require_lock(self) -> None:
        if not holds(self.root):
            raise RuntimeError(f"internal error: write into {self.root} without holding its lock (use RunFolder.hold())")

    def create(self) -> "RunFolder":
        """Make the folder a run folder (write the marker). Refuses a legacy folder (adopt it instead)."""
        self._require_lock()
        kind = self.kind()
        if kind == "marked":
            return self
        if kind == "legacy":
            raise RuntimeError(f"internal error: {self.root} is a legacy run folder; adopt it instead of creating it")
        info = {"stdann_run": 1, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "stdann": __version__,
                "host": socket.gethostname(), "pid": os.getpid()}
        atomic_write_text(self.root / MARKER, json.dumps(info, indent=1))
        return self

    def adopt_legacy(self) -> list[str]:
        """Mark a run folder made before the marker existed and enter in the manifest the files whose
        content shows stdann wrote them; returns them. A nested legacy ``pretrain/`` run is adopted too."""
        self._require_lock()
        if self.kind() != "legacy":
            raise RuntimeError(f"internal error: {self.root} is not a legacy run folder")
        proofs = {CONFIG: _stdann_config, TRAIN_LOG: _stdann_log,
                  STATUS: lambda p: _json_with(p, {"status", "step", "total_steps"}),
                  SWAP: lambda p: _json_with(p, {"steps", "blocks"}),
                  METRICS: lambda p: _json_with(p, {"run_dir", "blocks", "direction_convention"}),
                  CONDITION: lambda p: _json_with(p, {"name", "seed", "metrics"}), REPORT: _stdann_report}
        found = [rel for rel, proof in proofs.items() if (self.root / rel).is_file() and proof(self.root / rel)]
        for folder, pattern, proof in ((CHECKPOINTS, "*.pt", _stamped_checkpoint), (POSITIONS, "*.npz", _stdann_positions),
                                       (TENSORBOARD, "events.out.tfevents.*", lambda p: True)):
            if (self.root / folder).is_dir():
                found += [f"{folder}/{p.name}" for p in sorted((self.root / folder).glob(pattern)) if p.is_file() and proof(p)]
        pre = self.child(PRETRAIN)
        if pre.root.is_dir() and pre.kind() == "legacy":
            with pre.hold():
                pre.adopt_legacy()
            found.append(f"{PRETRAIN}/{MARKER}")
        for rel in found:  # the manifest first: a marker never stands beside an incomplete manifest
            self._record(rel)
        atomic_write_text(self.root / MARKER, json.dumps({"stdann_run": 1, "adopted": time.strftime("%Y-%m-%d %H:%M:%S"),
                                                          "stdann": __version__, "legacy": True}, indent=1))
        return found

    def ensure_run(self) -> "RunFolder":
        """Make sure this is a run folder before writing into it: create it (absent, empty, or a
        folder of other files), or adopt a legacy run folder. Temporary files that a killed
        process left beside the files stdann wrote are removed."""
        self._require_lock()
        kind = self.kind()
        if kind == "legacy":
            self.adopt_legacy()
        elif kind != "marked":
            self.create()
        self.remove_stale_temps()
        return self

    def remove_stale_temps(self) -> list[Path]:
        """Remove the temporary files of atomic writes of this run's files (and of its bookkeeping)
        left by processes that ended while writing them (kill -9, a full disk)."""
        by_folder: dict[Path, set[str]] = {self.root: {MARKER, MANIFEST}}
        for rel in self.written():
            p = self.root / rel
            by_folder.setdefault(p.parent, set()).add(p.name)
        return [t for folder, names in by_folder.items() for t in remove_stale_temps(folder, names)]

    def adopt_child(self, name: str) -> "RunFolder":
        """A run folder nested in this one (e.g. the recipe's ``pretrain/``), entered in this folder's
        manifest so that clearing this run clears it too. Refuses a nested folder stdann did not make."""
        self._require_lock()
        child = self.child(name)
        kind = child.kind()
        if kind == "foreign":
            raise RunFolderError(f"{child.root} holds files stdann did not write ({', '.join(child.content())}); "
                                 "move them away or choose another folder")
        self._record(f"{_rel(name)}/{MARKER}")
        return child

    # -- writes -------------------------------------------------------------------------------------------------
    def _record(self, rel: str) -> None:
        self._require_lock()
        rel = _rel(rel)
        if rel in self.written():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / MANIFEST, "a", encoding="utf-8") as f:
            f.write(rel + "\n")
            f.flush()
            os.fsync(f.fileno())

    def check_writable(self, rels: Iterable[str]) -> None:
        """Refuse (before any work) if one of ``rels`` exists and stdann did not write it."""
        written = self.written()
        for rel in map(_rel, rels):
            p = self.root / rel
            if rel not in written and (p.exists() or p.is_symlink()):
                raise RunFolderError(
                    f"{p} exists and was not written by stdann, which will not overwrite it: "
                    "move it away or choose another folder"
                )

    def claim(self, rel: str) -> Path:
        """The path of ``rel``, ready to be written: refused if a file stdann did not write is there;
        otherwise entered in the manifest (before the write) and its parent folder made."""
        self._require_lock()
        if not self.is_marked():
            raise RuntimeError(f"internal error: write into {self.root} before it was made a run folder")
        self.check_writable([rel])
        self._record(rel)
        p = self.path(rel)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

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
        """Write every block's positions as one set, with ``record = (rel, obj)`` (e.g. ``swap.json``)
        as a JSON file last: all files are written before any replaces its old version, so a process
        killed while writing leaves the previous positions whole."""
        rels = [f"{POSITIONS}/{b}.npz" for b in positions] + ([record[0]] if record else [])
        self.check_writable(rels)
        items = [(self.claim(f"{POSITIONS}/{block}.npz"), pos.write_to) for block, pos in positions.items()]
        if record:
            data = json.dumps(record[1]).encode("utf-8")
            items.append((self.claim(record[0]), lambda f: f.write(data)))
        atomic_write_many(items)

    def interrupted_positions(self, blocks: Iterable[str], record: str) -> bool:
        """Whether this folder holds part of a set of positions that a killed process was writing
        with ``record``: some blocks' files but not all, every one written by stdann, and no
        ``record`` (written last)."""
        present = [b for b in blocks if self.positions_file(b).is_file()]
        return (0 < len(present) < len(list(blocks)) and not self.has(record)
                and all(self.has(f"{POSITIONS}/{b}.npz") for b in present))

    def files_in(self, rel_dir: str) -> dict[str, tuple[int, int, int]]:
        """Files under ``rel_dir`` (recursively; or ``rel_dir`` itself when it is a file) with (inode,
        size, mtime_ns), for :meth:`record_changed`."""
        base = self.path(rel_dir)
        out = {}
        if base.is_file() and not base.is_symlink():
            st = base.stat()
            out[base.relative_to(self.root).as_posix()] = (st.st_ino, st.st_size, st.st_mtime_ns)
        elif base.is_dir():
            for p in base.rglob("*"):
                if p.is_file() and not p.is_symlink():
                    st = p.stat()
                    out[p.relative_to(self.root).as_posix()] = (st.st_ino, st.st_size, st.st_mtime_ns)
        return out

    def record_changed(self, rel_dir: str, before: dict[str, tuple[int, int, int]]) -> list[str]:
        """Enter in the manifest the files under ``rel_dir`` that appeared or changed since ``before``
        (:meth:`files_in`) — for files a library writes itself (TensorBoard events, analysis tables
        and figures) while this process holds the lock."""
        self._require_lock()
        changed = [rel for rel, sig in self.files_in(rel_dir).items() if before.get(rel) != sig]
        for rel in changed:
            self._record(rel)
        return changed

    # -- deletion ---------------------------------------------------------------------------------------------------
    def clear(self, keep: Iterable[str] = (), only: Iterable[str] | None = None) -> list[str]:
        """Delete the files stdann wrote here (and clear the run folders nested in it that it
        recorded), except those under ``keep`` (or only those under ``only``). Never deletes a folder
        that still holds anything, nor any file the manifest does not list. Returns up to five of
        the files left that stdann did not write (for the user's information)."""
        self._require_lock()
        if not self.is_marked():
            raise RuntimeError(f"internal error: clear {self.root}, which is not a run folder")
        keep = tuple(_rel(k) for k in keep)
        only = None if only is None else tuple(_rel(o) for o in only)
        remaining: list[str] = []
        emptied: set[Path] = set()
        for rel in sorted(self.written()):
            if _under(rel, keep) or (only is not None and not _under(rel, only)):
                remaining.append(rel)
                continue
            p = self.root / rel
            if p.name == MARKER and "/" in rel:  # a nested run recorded by this one: clear it, keep it marked
                child = RunFolder(p.parent)
                if child.is_marked():
                    with child.hold():
                        child.clear()
                remaining.append(rel)
                emptied.add(p.parent)
                continue
            if p.is_dir() and not p.is_symlink():
                remaining.append(rel)  # replaced by a folder since stdann wrote it: not stdann's any more
                continue
            p.unlink(missing_ok=True)
            if p.parent.is_dir():
                for sib in p.parent.iterdir():  # temporary files of interrupted atomic writes
                    if is_temp_of(sib.name, p.name):
                        sib.unlink(missing_ok=True)
            emptied.add(p.parent)
        atomic_write_text(self.root / MANIFEST, "".join(r + "\n" for r in remaining))
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
    def load_positions(self, blocks: Iterable[str]) -> dict[str, LayerPositions] | None:
        """The positions of ``blocks``: all of them, or ``None`` when there are none at all. Some but
        not all is refused, naming the missing files: positions of one run are made together, and
        making the missing ones anew must never replace the others (e.g. swap-optimised ones)."""
        blocks = list(blocks)
        missing = [self.positions_file(b) for b in blocks if not self.positions_file(b).is_file()]
        if len(missing) == len(blocks):
            return None
        if missing:
            raise RunFolderError(
                f"{self.root / POSITIONS} lacks {', '.join(p.name for p in missing)} while it holds the other blocks' "
                f"positions; restore the missing file(s), or make all positions anew with "
                f"`stdann positions init {self.root} --force`"
            )
        return load_run_positions(self.root, blocks)

    def resume_config(self, overrides: Iterable[str] = ()) -> Config:
        """The configuration to resume this run with: ``config.yaml`` (which may have been edited),
        checked against the complete copy inside ``checkpoints/last.pt`` — a key the checkpoint has
        and config.yaml lacks means a truncated or damaged file, never a default. Without
        config.yaml, the checkpoint's copy. Then ``overrides``."""
        self.require_resumable()  # (callers hold the lock: see hold_for_resume)
        ckpt = self.checkpoint("last")
        stored = _yaml_mapping(ckpt, checkpoint_config_text(ckpt))
        path = self.root / CONFIG
        if path.is_file():
            data = _yaml_mapping(path)
            lacking = sorted(_flat_keys(stored) - _flat_keys(data))
            if lacking:
                raise RunFolderError(
                    f"{path} lacks {len(lacking)} key(s) of the run's configuration (e.g. {', '.join(lacking[:3])}): "
                    f"it was truncated or damaged. Delete it to resume with the configuration stored in {ckpt}, "
                    "or restore it"
                )
        else:
            data = stored
        try:
            return Config.from_dict(data, validate=False).with_overrides(list(overrides)).validate()
        except ConfigError as e:
            raise ConfigError(f"{path if path.is_file() else ckpt}: {e}") from None

    def require_resumable(self) -> None:
        """Refuse, naming the problem, unless this folder holds a run to resume."""
        kind = self.kind()
        if kind == "absent":
            raise RunFolderError(f"{self.root} does not exist: there is no run to resume (check the path; "
                                 "without --resume a new run is started there)")
        if kind in ("empty", "foreign"):
            raise RunFolderError(f"{self.root} is not a stdann run folder: there is no run to resume "
                                 "(check the path; without --resume a new run is started there)")
        if not self.checkpoint("last").is_file():
            raise RunFolderError(
                f"{self.root} has no checkpoint to resume ({self.checkpoint('last')}): the run stopped before its "
                "first checkpoint (every train.ckpt_every steps) or the file was removed. "
                "Start it again with --overwrite"
            )

    def discard(self, keep: Iterable[str] = ()) -> list[str]:
        """``--overwrite`` (lock held): delete the files stdann wrote here except those under ``keep``,
        and print which other files were left. A folder stdann cannot prove it made (no marker) is
        refused if it holds anything."""
        self._require_lock()
        kind = self.kind()
        if kind == "legacy":
            raise RunFolderError(
                f"{self.root} was made by an older stdann (no {MARKER} marker), so stdann cannot prove which files "
                "there it wrote and will delete none: continue it (train --resume, or the same demo command without "
                "--overwrite), remove it yourself, or choose another --out"
            )
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

    # -- training ---------------------------------------------------------------------------------------------------
    def prepare_training(self, *, resume: bool | str = False, overwrite: bool = False) -> bool:
        """Get the folder ready for a training run (lock held); returns True when an existing run is
        resumed. ``resume``: True = continue the run here (refused if there is none); ``"auto"`` =
        continue it if it has a checkpoint, else start (again) — what the recipe's stages use;
        ``overwrite`` = discard the run's own files (keeping its inputs: positions, swap.json,
        pretrain/) and start again."""
        self._require_lock()
        if resume and overwrite:
            raise RunFolderError("--resume and --overwrite exclude each other: choose one")
        kind = self.kind()
        if overwrite:
            self.discard(keep=TRAINING_INPUTS)
        elif resume is True:
            self.require_resumable()
        if kind == "legacy" and not resume:
            raise RunExistsError(f"{self.root} already holds a run. Pass --resume to continue it, or choose another --out")
        self.ensure_run()  # adopts a legacy run folder that is resumed
        if self.checkpoint("last").is_file() and resume:
            return True
        if self.started():
            if resume != "auto":
                raise RunExistsError(
                    f"{self.root} already holds a run. Pass --resume to continue it or --overwrite to discard it, "
                    "or choose another --out"
                )
            self.clear(only=TRAINING_STATE)  # stopped before its first checkpoint: start that stage again
        self.check_writable([CONFIG, STATUS, TRAIN_LOG, f"{CHECKPOINTS}/last.pt", f"{CHECKPOINTS}/init.pt"])
        return False


@contextlib.contextmanager
def training_folder(out: str | Path, *, resume: bool | str = False, overwrite: bool = False,
                    main: bool = True) -> Iterator[tuple[RunFolder, bool]]:
    """``(run folder, resuming)`` for a training run, the lock held throughout (on the main process
    only; other ranks never write). ``--resume`` on a folder that does not exist is refused before
    anything is created."""
    run = RunFolder(out)
    if not main:
        yield run, False
        return
    with run.hold_for_resume() if resume is True and not overwrite else run.hold():
        resuming = run.prepare_training(resume=resume, overwrite=overwrite)
        try:
            yield run, resuming
        except BaseException as e:
            run.mark_ended(e)
            raise

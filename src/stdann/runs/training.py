"""Getting a run folder ready for training — a new run, a resumed one (``--resume``, or ``"auto"``
for the recipe's stages and torchrun restarts), or one started again (``--overwrite``) — and the
configuration a run resumes with, checked against the copy inside its checkpoint."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
import yaml

from stdann.config import Config, ConfigError
from stdann.fileio import parse_yaml
from stdann.runs.errors import RunExistsError, RunFolderError
from stdann.runs.folder import RunFolder
from stdann.runs.layout import CHECKPOINTS, CONFIG, STATUS, TRAIN_LOG, TRAINING_INPUTS, TRAINING_STATE
from stdann.runs.manifest import MANIFEST


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
        problem = getattr(e, "problem", None) or (str(e).splitlines() or [""])[0]
        raise RunFolderError(f"{path} is not valid YAML{at} ({problem[:160]}): it is damaged") from None
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


def resume_config(run: RunFolder, overrides: Iterable[str] = ()) -> Config:
    """The configuration to resume this run with: ``config.yaml`` (which may have been edited),
    checked against the complete copy inside ``checkpoints/last.pt`` — a key the checkpoint has
    and config.yaml lacks means a truncated or damaged file, never a default. Without
    config.yaml, the checkpoint's copy. Then ``overrides``."""
    require_resumable(run)  # (callers hold the lock: see hold_for_resume)
    ckpt = run.checkpoint("last")
    stored = _yaml_mapping(ckpt, checkpoint_config_text(ckpt))
    path = run.root / CONFIG
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


def prepare_training(run: RunFolder, *, resume: bool | str = False, overwrite: bool = False) -> bool:
    """Get the folder ready for a training run (lock held); returns True when an existing run is
    resumed. ``resume``: True = continue the run here (refused if there is none); ``"auto"`` =
    continue it if it has a checkpoint, else start (again) — what the recipe's stages use;
    ``overwrite`` = discard the run's own files (keeping its inputs: positions, swap.json,
    pretrain/) and start again."""
    run.require_lock()
    if resume and overwrite:
        raise RunFolderError("--resume and --overwrite exclude each other: choose one")
    state = [CONFIG, STATUS, TRAIN_LOG, f"{CHECKPOINTS}/last.pt", f"{CHECKPOINTS}/init.pt"]
    if overwrite:
        if run.is_marked():
            run.check_writable(state)  # what would stop the new run is refused before anything is deleted
        run.discard(keep=TRAINING_INPUTS)
    elif resume is True:
        require_resumable(run)
    if resume and run.has(f"{CHECKPOINTS}/last.pt"):
        run.ensure_run()
        return True
    if run.started() and not overwrite:  # (after --overwrite, what is left is named by check_writable below)
        if resume != "auto":
            raise RunExistsError(
                f"{run.root} already holds a run. Pass --resume to continue it or --overwrite to discard it, "
                "or choose another --out"
            )
        run.clear(only=TRAINING_STATE)  # stopped before its first checkpoint: start that stage again
    run.check_writable(state)  # before the marker: a user's folder in the way is refused untouched
    run.ensure_run()
    return False


def require_resumable(run: RunFolder) -> None:
    """Refuse, naming the problem, unless this folder holds a run to resume."""
    kind = run.kind()
    if kind == "absent":
        raise RunFolderError(f"{run.root} does not exist: there is no run to resume (check the path; "
                             "without --resume a new run is started there)")
    if kind in ("empty", "foreign"):
        raise RunFolderError(f"{run.root} is not a stdann run folder: there is no run to resume "
                             "(check the path; without --resume a new run is started there)")
    last = f"{CHECKPOINTS}/last.pt"
    if run.checkpoint("last").exists() and not run.has(last):
        raise RunFolderError(
            f"{run.checkpoint('last')} is not in {run.root / MANIFEST}, stdann's record of the files it wrote "
            "there (the record was emptied or edited), so stdann will neither resume from it nor replace it: "
            "restore the record, or copy the run elsewhere and start a new one (--set train.init_from=RUN "
            "starts from its weights)"
        )
    if not run.has(last):
        raise RunFolderError(
            f"{run.root} has no checkpoint to resume ({run.checkpoint('last')}): the run stopped before its "
            "first checkpoint (every train.ckpt_every steps) or the file was removed. "
            "Start it again with --overwrite"
        )


@contextlib.contextmanager
def hold_for_resume(run: RunFolder) -> Iterator[RunFolder]:
    """Hold the lock of a run to resume: a folder that does not exist is refused (never created),
    one in use by another process is refused as such, one without a run to resume is refused."""
    if not run.root.exists():
        require_resumable(run)
    with run.hold():
        require_resumable(run)
        yield run


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
    with hold_for_resume(run) if resume is True and not overwrite else run.hold():
        resuming = prepare_training(run, resume=resume, overwrite=overwrite)
        try:
            yield run, resuming
        except BaseException as e:
            run.mark_ended(e)
            raise

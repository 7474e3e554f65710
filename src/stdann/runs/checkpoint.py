"""Checkpoints: the one place their format is written and checked, atomic writes, safe loads.

A checkpoint is a plain dict of tensors, numbers and strings stamped ``"format": FORMAT``. Two
kinds exist, each made by one function here: the training state (:func:`training_checkpoint`:
model, optimiser, RNG — what ``--resume`` needs) and a backbone snapshot
(:func:`backbone_checkpoint`: the query backbone's weights, for the untrained control
``init.pt`` and ``step_NNNNNN.pt`` snapshots). Both carry the run's resolved config as YAML.

Writes go to a temporary file beside the target, are flushed to disk, then renamed over it
(:func:`stdann.fileio.atomic_write`): a crash never leaves a half-written checkpoint. Reads always
use ``torch.load(weights_only=True)``, which refuses arbitrary pickled objects, so a checkpoint
from an untrusted source cannot run code. A dict stamped with another format is refused; a dict
without a stamp (hand-made or converted weights) is accepted by :func:`load_backbone` only.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any

import torch
import yaml

from stdann.config import Config, ConfigError
from stdann.fileio import parse_yaml, read_yaml
from stdann.errors import MissingFileError, StdannError, shown
from stdann.fileio import atomic_write
from stdann.models.r3d import build_backbone

FORMAT = "stdann-checkpoint-v1"
TRAINING_KEYS = ("step", "config", "model", "optimizer", "rng")


class CheckpointError(StdannError, RuntimeError):
    """A checkpoint that cannot be used here; the message says what differs."""


def training_checkpoint(step: int, config_yaml: str, model: dict, optimizer: dict, rng: dict,
                        world_size: int = 1) -> dict[str, Any]:
    """The training state that ``--resume`` restores."""
    return {"format": FORMAT, "step": int(step), "config": config_yaml, "model": model, "optimizer": optimizer,
            "rng": rng, "world_size": int(world_size)}


def backbone_checkpoint(step: int, config_yaml: str, backbone: dict) -> dict[str, Any]:
    """The query backbone's weights alone (``init.pt``, ``step_NNNNNN.pt``)."""
    return {"format": FORMAT, "step": int(step), "config": config_yaml, "backbone": backbone}


def atomic_save(obj: dict[str, Any], path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` atomically (see :func:`stdann.fileio.atomic_write`)."""
    return atomic_write(path, lambda f: torch.save(obj, f))


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else "no message"


def damaged_member(path: str | Path) -> str | None:
    """The first member of a checkpoint's zip archive whose CRC-32 does not match its bytes (torch.load
    does not check them, so flipped bits would load as silently wrong weights), or None. A file that
    is not a zip archive is left to torch.load to judge."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error):
        return None


def safe_load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint dict read without unpickling arbitrary objects; a dict stamped with another
    format than :data:`FORMAT` is refused."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint {path} does not exist")
    damaged = damaged_member(path)
    if damaged:
        raise CheckpointError(f"checkpoint {path} is damaged (the checksum of {damaged} does not match: bytes changed "
                              "on disk); resume from an earlier checkpoint or retrain")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the reason and the fix
        raise CheckpointError(
            f"cannot read checkpoint {path} safely ({type(e).__name__}: {_first_line(e)}). "
            "stdann loads checkpoints with weights_only=True and never unpickles arbitrary objects; "
            "if the file is truncated, resume from an earlier one or retrain"
        ) from e
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} does not hold a checkpoint dict (got {type(ckpt).__name__})")
    if "format" in ckpt and ckpt["format"] != FORMAT:
        raise CheckpointError(f"{path} is a {ckpt['format']!r} checkpoint; this stdann reads {FORMAT!r} only")
    return ckpt


def load_training_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A training checkpoint for ``--resume``: stamped with :data:`FORMAT` and holding every part."""
    ckpt = safe_load(path, map_location)
    missing = [k for k in ("format",) + TRAINING_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"{path} is not a stdann training checkpoint (missing {missing}); "
                              "resume needs the checkpoints/last.pt that `stdann train` writes")
    problem = training_state_problem(ckpt)
    if problem:
        raise CheckpointError(f"{path} is damaged ({problem}); resume from an earlier checkpoint or retrain")
    return ckpt


MAX_STEP = 2 ** 31 - 1


def _tensors(d: Any) -> bool:
    return isinstance(d, dict) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in d.items())


def training_state_problem(ckpt: dict[str, Any]) -> str | None:
    """What is wrong with the fields of a training checkpoint, field by field (None when nothing):
    the step an integer in [0, 2^31), the model a dict of tensors, the optimiser state PyTorch's
    ``{state, param_groups}``, the RNG state a uint8 tensor, the config text."""
    step = ckpt.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= MAX_STEP:
        return f"'step' is {shown(step)}, not a step count"
    if not isinstance(ckpt.get("config"), str):
        return "'config' is not the configuration's text"
    if not _tensors(ckpt.get("model")):
        return "'model' is not a dict of tensors"
    opt = ckpt.get("optimizer")
    if not (isinstance(opt, dict) and isinstance(opt.get("state"), dict) and isinstance(opt.get("param_groups"), list)
            and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in opt["param_groups"])):
        return "'optimizer' is not an optimiser state ({state, param_groups})"
    rng = ckpt.get("rng")
    if not (isinstance(rng, dict) and isinstance(rng.get("torch"), torch.Tensor) and rng["torch"].dtype == torch.uint8):
        return "'rng' does not hold the random generator's state"
    return None


def checkpoint_path(run_dir: str | Path, which: str = "last") -> Path:
    return Path(run_dir) / "checkpoints" / f"{which}.pt"


def describe_mismatch(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], limit: int = 6) -> str:
    """A short human description of how two state dicts differ (missing, unexpected, shapes)."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        f"{k}: expected {tuple(expected[k].shape)}, found {tuple(found[k].shape)}"
        for k in expected
        if k in found and tuple(expected[k].shape) != tuple(found[k].shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[:limit]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:limit]})")
    if shapes:
        parts.append(f"{len(shapes)} with other shapes (e.g. {shapes[:limit]})")
    return "; ".join(parts) or "no difference"


def load_state_checked(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    expected = module.state_dict()
    if set(expected) != set(state) or any(tuple(expected[k].shape) != tuple(state[k].shape) for k in expected):
        hint = ""
        w_exp = expected.get("stem.0.weight", expected.get("encoder_q.backbone.stem.0.weight"))
        w_got = state.get("stem.0.weight", state.get("encoder_q.backbone.stem.0.weight"))
        if w_exp is not None and w_got is not None and w_exp.shape[0] != w_got.shape[0]:
            hint = f" The checkpoint has width {w_got.shape[0]}, this model width {w_exp.shape[0]} (set model.width)."
        raise CheckpointError(f"{what} does not match this model: {describe_mismatch(expected, state)}.{hint}")
    module.load_state_dict(state, strict=True)


def backbone_state(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The query encoder's backbone weights from a training checkpoint (or a bare backbone one)."""
    if "backbone" in ckpt:
        return ckpt["backbone"]
    if "model" in ckpt:
        prefix = "encoder_q.backbone."
        return {k[len(prefix) :]: v for k, v in ckpt["model"].items() if k.startswith(prefix)}
    raise CheckpointError("checkpoint holds neither 'model' nor 'backbone' weights")


def load_backbone(run_dir: str | Path, which: str = "last", device: str | torch.device = "cpu"):
    """``(backbone in eval mode, Config)`` of a run folder.

    ``which="last"`` is the latest training state; ``which="init"`` the network at step 0 — the
    untrained control of the very same run (same seed, same initialisation).
    """
    run_dir = Path(run_dir)
    path = checkpoint_path(run_dir, which)
    if not path.is_file():
        avail = sorted(p.stem for p in (run_dir / "checkpoints").glob("*.pt")) if (run_dir / "checkpoints").is_dir() else []
        raise MissingFileError(
            f"{run_dir} has no checkpoint {which!r} ({path}); available: {avail or 'none'}. "
            "Train the run first with `stdann train --out RUN_DIR`"
        )
    ckpt = safe_load(path)
    cfg = config_from_checkpoint(ckpt, run_dir)
    model = build_backbone(cfg.model.arch, width=cfg.model.width)
    load_state_checked(model, backbone_state(ckpt), f"checkpoint {path}")
    return model.to(device).eval(), cfg


def config_from_checkpoint(ckpt: dict[str, Any], run_dir: str | Path | None = None) -> Config:
    """The configuration a checkpoint was trained with (its stored copy; for a hand-made checkpoint
    without one, the run folder's config.yaml). Not re-validated: it was valid when it trained."""
    text, source = ckpt.get("config"), "the checkpoint's stored configuration"
    if text is None and run_dir is not None and (Path(run_dir) / "config.yaml").is_file():
        source = str(Path(run_dir) / "config.yaml")
        data = read_yaml(source)
    elif text is None:
        raise CheckpointError("checkpoint has no config and the run folder has no config.yaml")
    else:
        try:
            data = parse_yaml(text) if isinstance(text, str) else None
        except yaml.YAMLError:
            data = None
    if not isinstance(data, dict):
        raise CheckpointError(f"{source} is not a configuration mapping: the file is damaged; restore it or retrain")
    try:
        return Config.from_dict(data, validate=False)
    except ConfigError as e:
        raise CheckpointError(f"{source}: {e}") from None

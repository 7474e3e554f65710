"""Checkpoints: atomic writes, safe loads, compatibility checks, and the backbone of a run.

A checkpoint is a plain dict of tensors, numbers and strings, written with ``torch.save`` to a
temporary file in the same folder, flushed to disk, then renamed over the old one — a crash never
leaves a half-written checkpoint. It is always read with ``torch.load(weights_only=True)``, which
refuses arbitrary pickled objects, so a checkpoint from an untrusted source cannot run code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

FORMAT = "stdann-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used here; the message says what differs."""


def atomic_save(obj: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def safe_load(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the reason and the fix
        raise CheckpointError(
            f"cannot read checkpoint {path} safely ({type(e).__name__}: {str(e).splitlines()[0][:300]}). "
            "stdann loads checkpoints with weights_only=True and never unpickles arbitrary objects; "
            "if the file is truncated, resume from an earlier one or retrain"
        ) from e
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{path} does not hold a checkpoint dict (got {type(ckpt).__name__})")
    return ckpt


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
    from stdann.models.r3d import r3d_18

    run_dir = Path(run_dir)
    path = checkpoint_path(run_dir, which)
    if not path.is_file():
        avail = sorted(p.stem for p in (run_dir / "checkpoints").glob("*.pt")) if (run_dir / "checkpoints").is_dir() else []
        raise FileNotFoundError(
            f"{run_dir} has no checkpoint {which!r} ({path}); available: {avail or 'none'}. "
            "Train the run first with `stdann train --out RUN_DIR`"
        )
    ckpt = safe_load(path)
    cfg = config_from_checkpoint(ckpt, run_dir)
    model = r3d_18(None, width=cfg.model.width)
    load_state_checked(model, backbone_state(ckpt), f"checkpoint {path}")
    return model.to(device).eval(), cfg


def config_from_checkpoint(ckpt: dict[str, Any], run_dir: str | Path | None = None):
    import yaml

    from stdann.config import Config

    text = ckpt.get("config")
    if text is None and run_dir is not None and (Path(run_dir) / "config.yaml").is_file():
        text = (Path(run_dir) / "config.yaml").read_text()
    if text is None:
        raise CheckpointError("checkpoint has no config and the run folder has no config.yaml")
    return Config.from_dict(yaml.safe_load(text) or {})

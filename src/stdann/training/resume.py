"""Starting or resuming a run: the last checkpoint restored into model and optimiser (refused, in one
line, when it was trained with another structure or world size), or a fresh start, optionally from
another run's weights (``train.init_from``), with the step-0 control saved as ``init``."""

from __future__ import annotations

from typing import Any

import torch

from stdann import distributed
from stdann.config import Config
from stdann.errors import MissingFileError
from stdann.models.moco import MoCo
from stdann.models.motion_classifier import MotionClassifier
from stdann.runs.checkpoint import (
    CheckpointError,
    backbone_checkpoint,
    backbone_state,
    config_from_checkpoint,
    load_state_checked,
    load_training_state,
    safe_load,
)
from stdann.runs.folder import RunFolder

# Fields that must match between a checkpoint and the config that resumes it.
STRUCTURAL_KEYS = (
    "model.arch",
    "model.width",
    "moco.dim",
    "moco.hidden_dim",
    "moco.head_bn",
    "moco.queue_size",
    "data.frames",
    "data.size",
    "optim.batch_size",
    "optim.optimizer",
    "topography.blocks",
    "train.objective",
    "train.direction_bins",
    "train.speed_bins",
)


def structural_diff(a: Config, b: Config) -> list[str]:
    """The :data:`STRUCTURAL_KEYS` on which checkpoint config ``a`` and config ``b`` differ."""
    return [f"{k}: checkpoint {a.get(k)!r}, now {b.get(k)!r}" for k in STRUCTURAL_KEYS if a.get(k) != b.get(k)]


def rng_state() -> dict[str, Any]:
    """The random state a checkpoint carries (CPU, and every GPU's where there are GPUs)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(run: RunFolder, cfg: Config, model: MoCo | MotionClassifier, optimizer, device: torch.device, is_main: bool) -> int:
    """Load the run's last checkpoint into model and optimiser; returns its step."""
    ckpt = load_training_state(run.checkpoint("last"), map_location=device)
    diffs = structural_diff(config_from_checkpoint(ckpt), cfg)
    if diffs:
        raise CheckpointError(
            f"cannot resume {run.root}: the checkpoint was trained with another configuration ({'; '.join(diffs)}). "
            "Resume with the run's own config.yaml, or use --overwrite / another --out"
        )
    saved_world = int(ckpt.get("world_size", 1))
    if saved_world != distributed.world_size():
        raise CheckpointError(
            f"cannot resume {run.root} on {distributed.world_size()} process(es): it was trained on {saved_world} (each rank draws "
            f"its own clips and the batch is split among them); resume with torchrun --nproc-per-node {saved_world} "
            "(or that many processes over the nodes), or start a new run from its weights with --set train.init_from=RUN"
        )
    load_state_checked(model, ckpt["model"], f"checkpoint {run.checkpoint('last')}")
    try:
        optimizer.load_state_dict(ckpt["optimizer"])
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        if "cuda" in ckpt["rng"] and torch.cuda.is_available() and len(ckpt["rng"]["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["rng"]["cuda"]])
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError) as e:
        raise CheckpointError(f"{run.checkpoint('last')} is damaged (its optimiser or random state does not fit this "
                              f"run: {type(e).__name__}: {str(e)[:160]}); resume from an earlier checkpoint or retrain") from None
    if is_main:
        run.write_config(cfg)  # the configuration the run continues with (--set changes included)
    return int(ckpt["step"])


def start(run: RunFolder, cfg: Config, model: MoCo | MotionClassifier, device: torch.device, is_main: bool) -> int:
    """A fresh run: optional start weights (``train.init_from``), config and the step-0 control."""
    init_backbone = model.backbone.state_dict()
    if cfg.train.init_from:
        # Start from another run's weights (e.g. the contrastive-only pretraining of the
        # topographic recipe). The untrained control stays that run's step-0 network.
        src_run = RunFolder(cfg.train.init_from)
        if not src_run.checkpoint("last").is_file():
            raise MissingFileError(f"train.init_from = {cfg.train.init_from}: {src_run.checkpoint('last')} does not "
                                   "exist; give a run folder that holds a training checkpoint")
        src_ckpt = load_training_state(src_run.checkpoint("last"), map_location=device)
        if config_from_checkpoint(src_ckpt).train.objective == cfg.train.objective:
            load_state_checked(model, src_ckpt["model"], f"train.init_from={src_run.root}")
        else:  # another objective: its backbone starts this run, the task head is new
            load_state_checked(model.backbone, backbone_state(src_ckpt), f"train.init_from={src_run.root}")
        if src_run.checkpoint("init").is_file():
            init_backbone = backbone_state(safe_load(src_run.checkpoint("init")))
    if is_main:
        run.write_config(cfg)
        run.save_checkpoint("init", backbone_checkpoint(0, cfg.to_yaml(), init_backbone))
    return 0


def kept_checkpoint(run: RunFolder) -> str:
    """What the user still has after a divergence (only a checkpoint that exists is promised)."""
    last = run.checkpoint("last")
    if last.is_file():
        return f"The last good checkpoint ({last}) was kept"
    return f"No checkpoint was written before (the first comes after train.ckpt_every steps); nothing to resume in {run.root}"

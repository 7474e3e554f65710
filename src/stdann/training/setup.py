"""What a run needs before its first step, the same on every rank: how the step runs on this device,
the unit positions (read from the run folder or made and saved by the main process), the check that
every rank of a torchrun job trains the same configuration from the same step with the same
positions, and the logger."""

from __future__ import annotations

import hashlib
import platform
import secrets

import numpy as np
import scipy
import torch

from stdann import __version__
from stdann import distributed
from stdann.config import Config
from stdann.models.r3d import block_output_shapes
from stdann.runs.folder import RunFolder
from stdann.runs.layout import TENSORBOARD, TRAIN_LOG
from stdann.topography import sheets_from_config
from stdann.topography.cache import cached_model_positions
from stdann.topography.positions import positions_fingerprint
from stdann.training.logger import RunLogger
from stdann.training.step import StepSettings


def amp_enabled(cfg: Config, device: torch.device) -> bool:
    """bf16 autocast: train.amp (validated by Config.validate) on this device."""
    mode = str(cfg.train.amp).lower()
    return mode in ("bf16", "true") or (mode == "auto" and device.type == "cuda")


def step_settings(cfg: Config, device: torch.device) -> StepSettings:
    """How the trainer runs its step on ``device`` (the benchmark times the step with these too).

    On CUDA: bf16 autocast where ``train.amp`` allows it, foreach SGD, cuDNN autotuning (fixed clip
    shapes; off with ``train.deterministic``), no host synchronisation for the spatial loss's NaN
    check (the loop checks the loss at its log and checkpoint steps), ``torch.compile`` of both
    encoders with ``train.compile``. On the CPU: fp32, PyTorch's SGD, the check every step."""
    use_cuda = device.type == "cuda"
    return StepSettings(
        amp_bf16=amp_enabled(cfg, device), channels_last=bool(cfg.train.channels_last),
        compile=bool(cfg.train.compile) and use_cuda, foreach=True if use_cuda else None, check_finite=not use_cuda,
        cudnn_benchmark=use_cuda and not cfg.train.deterministic,
    )


def versions() -> dict[str, str]:
    """The versions a run's status records."""
    return {"stdann": __version__, "torch": torch.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "python": platform.python_version(), "cuda": str(torch.version.cuda)}


def run_positions(cfg: Config, run: RunFolder, is_main: bool, device: torch.device | None = None):
    """The run's positions: those already in ``RUN/positions`` (e.g. written by ``stdann positions
    optimize``; all blocks or none — see :meth:`RunFolder.load_positions`), else a fresh retinotopic
    initialisation, saved by the main process."""
    blocks = list(cfg.topography.blocks)
    shapes = block_output_shapes(cfg.model.width, cfg.data.frames, cfg.data.size)
    pos = run.load_positions(blocks, dims={b: (shapes[b][0], shapes[b][2], shapes[b][3]) for b in blocks})
    if pos is not None:
        return pos
    pos = cached_model_positions(
        width=cfg.model.width, frames=cfg.data.frames, size=cfg.data.size, blocks=blocks,
        sheets=sheets_from_config(cfg.topography), seed=cfg.topography.position_seed, n_windows=cfg.topography.n_windows,
        device=device,  # the neighbourhood search on the training device (a GPU makes it seconds)
    )
    if is_main:
        run.save_positions(pos)
    return pos


def shared_positions(cfg: Config, run: RunFolder, is_main: bool, device: torch.device | None = None):
    """The positions, the main process first (it writes any new ones), then the other ranks read them
    (a failure on any rank stops every rank). Whether they are the same everywhere is checked by
    :func:`check_ranks_agree`."""
    made = distributed.on_main("making the positions", lambda: run_positions(cfg, run, is_main, device))
    return distributed.on_every_rank("reading the positions", lambda: made if is_main else run_positions(cfg, run, is_main, device))


# What one process of a job may set for itself: where it runs and its own budget, the mount point of
# the video folder on its node, and what only the main process uses (the rest must be the same on every rank)
PER_PROCESS_KEYS = {"train": ("device", "threads", "max_minutes", "ckpt_minutes", "tensorboard"), "data": ("root",),
                    "ephys": None}


def shared_config(cfg: Config) -> str:
    """A hash of the configuration without :data:`PER_PROCESS_KEYS`."""
    d = cfg.to_dict()
    for section, keys in PER_PROCESS_KEYS.items():
        if keys is None:
            d.pop(section, None)
        else:
            for k in keys:
                d.get(section, {}).pop(k, None)
    return hashlib.sha256(repr(sorted((k, sorted(v.items())) for k, v in d.items())).encode()).hexdigest()[:16]


def check_ranks_agree(cfg: Config, start_step: int, positions: dict | None) -> None:
    """Every rank must train the same configuration from the same step with the same positions: a
    rank that cannot see the main process's run folder (several nodes, no shared filesystem) would
    otherwise make its own positions and start from step 0 — training on other neighbourhoods with
    no error. One small all-gather at the start; nothing without a process group."""
    if not distributed.is_dist():
        return
    distributed.same_on_every_rank({
        "the configuration": shared_config(cfg),
        "the step to start from": int(start_step),
        "the positions": positions_fingerprint(positions) if positions else None,
    })


def open_logger(run: RunFolder, cfg: Config, is_main: bool, resuming: bool, start_step: int) -> RunLogger:
    """The run's train.csv (and TensorBoard) logger; on resume, lines after ``start_step`` are cut."""
    tb_dir = run.path(TENSORBOARD) if cfg.train.tensorboard else None
    # TensorBoard names its event file itself: a suffix no one can guess tells this writer's file
    tb_suffix = f".stdann-{secrets.token_hex(6)}"
    if is_main:
        run.claim(TRAIN_LOG)  # refuses a train.csv that stdann did not write (its header is never adopted)
        if tb_dir is not None:
            run.check_writable([f"{TENSORBOARD}/events{tb_suffix}"])  # no link on the way to logs/tb
    logger = RunLogger(run.path(TRAIN_LOG), tb_dir, enabled=is_main, tb_suffix=tb_suffix)
    if is_main and tb_dir is not None and tb_dir.is_dir():
        for event_file in tb_dir.glob(f"events.out.tfevents.*{tb_suffix}"):
            run.record_own(f"{TENSORBOARD}/{event_file.name}")
    if resuming:
        logger.truncate_after(start_step)
    return logger

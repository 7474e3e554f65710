"""The training loop: MoCo + α·spatial loss, on CPU, one GPU, or many GPUs under torchrun.

The task loss is MoCo's unless ``train.objective`` asks for the supervised positive control
(:mod:`stdann.models.motion_classifier`); the loop, the run folder and the checkpoints are the same.
The log's ``loss_task`` is then the cross-entropy, ``loss_task_chance`` its chance Σ ln(classes),
``acc`` the direction top-1 with ``acc_chance`` = 1/direction_bins, and the held-out check the
direction top-1 on held-out clips (:func:`stdann.training.evaluation.heldout_classification`).

Readable in one sitting (:func:`_train_in`): settings → model → optimiser → positions → resume or
start → data → the step (:mod:`stdann.training.step`) → logger; then the loop: step → every
``log_every`` steps a log line, every ``ckpt_every`` a checkpoint → stop when done, interrupted
(Ctrl-C, SIGTERM), out of time (``train.max_minutes``) or diverged. Under torchrun every rank
takes each stop decision at the same step (one small all-reduce at the steps that synchronise
anyway), and a failed write on the main process stops every rank.

Resume: everything random in a step is seeded from (seed, step) and the data source is a pure
function of (seed, step, rank), so a resumed run draws exactly the batches, augmentations, key
shuffles and neighborhoods of the uninterrupted one. On the CPU (``train.deterministic=true``) it
then computes the same numbers, which the tests check. On CUDA it computes them to floating-point
reproducibility only: cuDNN autotuning (``cudnn.benchmark``, on unless ``train.deterministic``),
atomic additions in some backward kernels and bf16 rounding make two runs of the same steps differ
in the last bits, and such differences grow over training; ``train.deterministic=true`` turns
autotuning off and asks PyTorch for deterministic kernels (slower).
"""

from __future__ import annotations

import hashlib
import math
import platform
import secrets
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import scipy
import torch
from tqdm.auto import tqdm

from stdann import __version__
from stdann import distributed as D
from stdann.config import Config
from stdann.data.loader import build_pair_source
from stdann.devices import resolve_device
from stdann.devices import select as select_device
from stdann.errors import MissingFileError, StdannError
from stdann.models.inputs import normalize
from stdann.models.moco import MoCo
from stdann.models.motion_classifier import MotionClassifier, motion_targets
from stdann.models.r3d import block_output_shapes
from stdann.resources import check_memory
from stdann.runs.checkpoint import (
    CheckpointError,
    backbone_checkpoint,
    backbone_state,
    config_from_checkpoint,
    load_state_checked,
    load_training_state,
    safe_load,
    training_checkpoint,
)
from stdann.runs.errors import RunExistsError  # noqa: F401 - part of this module's interface
from stdann.runs.folder import TENSORBOARD, TRAIN_LOG, RunFolder, training_folder
from stdann.topography import sheets_from_config
from stdann.topography.cache import cached_model_positions
from stdann.topography.positions import positions_fingerprint
from stdann.training.evaluation import heldout_classification, heldout_seed, instance_discrimination
from stdann.training.logger import RunLogger
from stdann.training.step import (
    ExtraLoss,
    StepOutput,
    StepSettings,
    build_model,
    build_optimizer,
    build_step,
    configure_backends,
    is_supervised,
    task_chance,
)

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


class TrainingDiverged(StdannError, RuntimeError):
    """The loss became NaN or Inf; the message says at which step and which checkpoint is good."""


@dataclass
class TrainResult:
    status: str  # finished | interrupted | time-budget | stopped
    step: int
    total_steps: int
    seconds: float
    last: dict[str, float]
    run_dir: Path
    signal: int | None = None  # the signal that interrupted the run (SIGINT, SIGTERM), if any


def amp_enabled(cfg: Config, device: torch.device) -> bool:
    """bf16 autocast: train.amp (validated by Config.validate) on this device."""
    mode = str(cfg.train.amp).lower()
    return mode in ("bf16", "true") or (mode == "auto" and device.type == "cuda")


def structural_diff(a: Config, b: Config) -> list[str]:
    return [f"{k}: checkpoint {a.get(k)!r}, now {b.get(k)!r}" for k in STRUCTURAL_KEYS if a.get(k) != b.get(k)]


def versions() -> dict[str, str]:
    return {
        "stdann": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
        "cuda": str(torch.version.cuda),
    }


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


def _positions(cfg: Config, run: RunFolder, is_main: bool, device: torch.device | None = None):
    """The run's positions: those already in ``RUN/positions`` (e.g. written by ``stdann positions
    optimize``; all blocks or none — see :meth:`RunFolder.load_positions`), else a fresh retinotopic
    initialisation, saved by the main process."""
    blocks = list(cfg.topography.blocks)
    shapes = block_output_shapes(cfg.model.width, cfg.data.frames, cfg.data.size)
    pos = run.load_positions(blocks, dims={b: (shapes[b][0], shapes[b][2], shapes[b][3]) for b in blocks})
    if pos is not None:
        return pos
    pos = cached_model_positions(
        width=cfg.model.width,
        frames=cfg.data.frames,
        size=cfg.data.size,
        blocks=blocks,
        sheets=sheets_from_config(cfg.topography),
        seed=cfg.topography.position_seed,
        n_windows=cfg.topography.n_windows,
        device=device,  # the neighbourhood search on the training device (a GPU makes it seconds)
    )
    if is_main:
        run.save_positions(pos)
    return pos


def _shared_positions(cfg: Config, run: RunFolder, is_main: bool, device: torch.device | None = None):
    """The positions, the main process first (it writes any new ones), then the other ranks read them
    (a failure on any rank stops every rank). Whether they are the same everywhere is checked by
    :func:`_check_ranks_agree`."""
    made = D.on_main("making the positions", lambda: _positions(cfg, run, is_main, device))
    return D.on_every_rank("reading the positions", lambda: made if is_main else _positions(cfg, run, is_main, device))


# What one process of a job may set for itself: where it runs and its own budget, the mount point of
# the video folder on its node, and what only the main process uses (the rest must be the same on every rank)
PER_PROCESS_KEYS = {"train": ("device", "threads", "max_minutes", "ckpt_minutes", "tensorboard"), "data": ("root",),
                    "ephys": None}


def _shared_config(cfg: Config) -> str:
    """A hash of the configuration without :data:`PER_PROCESS_KEYS`."""
    d = cfg.to_dict()
    for section, keys in PER_PROCESS_KEYS.items():
        if keys is None:
            d.pop(section, None)
        else:
            for k in keys:
                d.get(section, {}).pop(k, None)
    return hashlib.sha256(repr(sorted((k, sorted(v.items())) for k, v in d.items())).encode()).hexdigest()[:16]


def _check_ranks_agree(cfg: Config, start_step: int, positions: dict | None) -> None:
    """Every rank must train the same configuration from the same step with the same positions: a
    rank that cannot see the main process's run folder (several nodes, no shared filesystem) would
    otherwise make its own positions and start from step 0 — training on other neighbourhoods with
    no error. One small all-gather at the start; nothing without a process group."""
    if not D.is_dist():
        return
    D.same_on_every_rank({
        "the configuration": _shared_config(cfg),
        "the step to start from": int(start_step),
        "the positions": positions_fingerprint(positions) if positions else None,
    })


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore(run: RunFolder, cfg: Config, model: MoCo | MotionClassifier, optimizer, device: torch.device, is_main: bool) -> int:
    """Load the run's last checkpoint into model and optimiser; returns its step."""
    ckpt = load_training_state(run.checkpoint("last"), map_location=device)
    diffs = structural_diff(config_from_checkpoint(ckpt), cfg)
    if diffs:
        raise CheckpointError(
            f"cannot resume {run.root}: the checkpoint was trained with another configuration ({'; '.join(diffs)}). "
            "Resume with the run's own config.yaml, or use --overwrite / another --out"
        )
    saved_world = int(ckpt.get("world_size", 1))
    if saved_world != D.world_size():
        raise CheckpointError(
            f"cannot resume {run.root} on {D.world_size()} process(es): it was trained on {saved_world} (each rank draws "
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


def _start(run: RunFolder, cfg: Config, model: MoCo | MotionClassifier, device: torch.device, is_main: bool) -> int:
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


def _open_logger(run: RunFolder, cfg: Config, is_main: bool, resuming: bool, start_step: int) -> RunLogger:
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


class _StopRequest:
    """First Ctrl-C / SIGTERM asks for a clean stop (checkpoint, then exit); a second one raises
    KeyboardInterrupt. Handlers are installed in the main thread only, restored by :meth:`close`.
    A signal the process was started ignoring (``nohup``, ``cmd &`` in a script) stays ignored."""

    def __init__(self) -> None:
        self.requested, self.signal = False, None
        self._old: dict[int, Any] = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._old[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread
            self._old = {}

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        if self.requested:
            raise KeyboardInterrupt
        self.requested, self.signal = True, signum

    def close(self) -> None:
        for sig, h in self._old.items():
            signal.signal(sig, h)


class _Interval:
    """Sums since the last log line, kept on the device (no host synchronisation per step)."""

    def __init__(self, device: torch.device, now: float) -> None:
        self.task, self.acc = torch.zeros((), device=device), torch.zeros((), device=device)
        self.steps, self.clips, self.since = 0, 0, now

    def add(self, out: StepOutput, world_size: int) -> None:
        self.task += out.task.float()
        self.acc += out.acc.float()
        self.steps += 1
        self.clips += out.clips * world_size

    def mean_task(self) -> float:
        return float(self.task) / self.steps

    def mean_acc(self) -> float:
        return float(self.acc) / self.steps

    def clips_per_s(self, now: float) -> float:
        return self.clips / max(now - self.since, 1e-9)

    def reset(self, now: float) -> None:
        self.task.zero_()
        self.acc.zero_()
        self.steps, self.clips, self.since = 0, 0, now


def train(
    cfg: Config,
    out_dir: str | Path,
    *,
    resume: bool | str = False,
    overwrite: bool = False,
    source: Any = None,
    progress: bool = True,
    extra_losses: Iterable[ExtraLoss] = (),
    stop_at_step: int | None = None,
) -> TrainResult:
    """Train MoCo (+ α·spatial loss) into the run folder ``out_dir``.

    ``resume=True`` continues the run there (refused when there is none); ``resume="auto"``
    continues it when it has a checkpoint and starts otherwise (the recipe's stages);
    ``overwrite`` discards the files the run wrote (never a user's) and starts again. While it
    trains, the folder is locked: a second process gets :class:`~stdann.runs.errors.FolderInUse`.
    ``source`` overrides the data (anything with ``batch(step) -> (x1, x2)``); ``extra_losses``
    are callables ``(block_outputs, step) -> {name: scalar}`` added to the loss (the hook for new
    objectives; ``block_outputs[name]`` is the pair (view-1 output, view-2 output), each
    (B, C, T, H, W)); ``stop_at_step`` stops as if interrupted after that step (tests).
    """
    out = Path(out_dir)
    cfg.validate()  # every value, before any device or process group is touched
    device = resolve_device(cfg.train.device)
    dist_info = D.init_distributed(device.type, cfg.train.collective_minutes)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    device = select_device(device)  # cuda:N becomes this process's current GPU (streams, events, kernels)
    is_main = dist_info.is_main
    configure_backends(cfg)

    cfg.validate(world_size=dist_info.world_size)  # the global batch split between the processes
    check_memory(cfg, device, dist_info.world_size)  # refuse what cannot fit, before allocating
    local_batch = cfg.optim.batch_size // dist_info.world_size

    with training_folder(out, resume=resume, overwrite=overwrite, main=is_main) as (run, resuming):
        resuming = bool(D.broadcast_from_main(resuming))
        return _train_in(run, resuming, cfg, device, dist_info, local_batch, source=source, progress=progress,
                         extra_losses=extra_losses, stop_at_step=stop_at_step)


def _train_in(run: RunFolder, resuming: bool, cfg: Config, device: torch.device, dist_info: Any, local_batch: int, *,
              source: Any, progress: bool, extra_losses: Iterable[ExtraLoss], stop_at_step: int | None) -> TrainResult:
    """The training run itself, in a prepared (and, on the main process, locked) run folder."""
    is_main = dist_info.is_main
    settings = step_settings(cfg, device)
    model = build_model(cfg, device, settings)
    optimizer = build_optimizer(model, cfg, settings)
    if resuming:  # the checkpoint's configuration first: its error names every difference
        start_step = D.on_every_rank("restoring the checkpoint", lambda: _restore(run, cfg, model, optimizer, device, is_main))
        positions = _shared_positions(cfg, run, is_main, device)
    else:  # the positions first: ones made for another network are refused before the run is started
        positions = _shared_positions(cfg, run, is_main, device)
        start_step = D.on_every_rank("starting the run", lambda: _start(run, cfg, model, device, is_main))
    _check_ranks_agree(cfg, start_step, positions)
    if source is None:
        source = build_pair_source(cfg.data, local_batch, device, seed=cfg.data.seed + cfg.train.seed,
                                   rank=dist_info.rank, world_size=dist_info.world_size)
    step_fn = build_step(cfg, device, settings, source, positions=positions, model=model, optimizer=optimizer,
                         extra_losses=extra_losses)
    heldout = _heldout_pairs(cfg, device) if is_main else None
    logger = _open_logger(run, cfg, is_main, resuming, start_step)

    total_steps = cfg.optim.total_steps()
    chance_loss, chance_top1 = task_chance(cfg)
    chance_acc = {"acc_chance": chance_top1} if is_supervised(cfg) else {}  # MoCo's logs keep their columns
    budget_s = 60 * cfg.train.max_minutes if cfg.train.max_minutes > 0 else math.inf
    host_sync_every_step = device.type != "cuda"  # reading the loss costs nothing on the CPU

    def save_last(step: int) -> None:
        bad = [n for n, p in model.encoder_q.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise TrainingDiverged(
                f"parameters became NaN/Inf by step {step} (e.g. {bad[:3]}). {_kept_checkpoint(run)}. "
                "Lower optim.lr or set optim.clip_grad"
            )
        run.save_checkpoint("last", training_checkpoint(step, cfg.to_yaml(), model.state_dict(), optimizer.state_dict(),
                                                        _rng_state(), dist_info.world_size))

    def write_status(status: str, step: int, extra: dict | None = None) -> None:
        if is_main:
            run.write_status(status, step=step, total_steps=total_steps, device=str(device),
                             world_size=dist_info.world_size, versions=versions(), **(extra or {}))

    stop = _StopRequest()
    bar = tqdm(total=total_steps, initial=start_step, disable=not (progress and is_main), desc="train", unit="step", dynamic_ncols=True)
    status, step, saved_at, last_row = "finished", start_step, -1, {}
    D.barrier()  # every rank starts its clock (train.max_minutes) here, after the main process's writes
    t_start = time.time()
    interval = _Interval(device, t_start)
    ckpt_s, last_ckpt_t = 60.0 * cfg.train.ckpt_minutes, t_start  # train.ckpt_minutes: checkpoints by the clock too
    write_status("running", step)
    model.train()
    try:
        while step < total_steps:
            out = step_fn(step)
            step += 1
            interval.add(out, dist_info.world_size)
            bar.update(1)

            must_eval = step == total_steps or (cfg.train.eval_every > 0 and step % cfg.train.eval_every == 0)
            must_log = step % cfg.train.log_every == 0 or step == total_steps or must_eval
            must_ckpt = step % cfg.train.ckpt_every == 0 or step == total_steps
            must_snapshot = cfg.train.snapshot_every > 0 and step % cfg.train.snapshot_every == 0
            asks = {"interrupted": stop.requested,
                    "time-budget": time.time() - t_start > budget_s,
                    "stopped": stop_at_step is not None and stop_at_step <= step < total_steps}
            # Decisions are taken by all ranks together, at the steps that synchronise anyway (on the
            # CPU every step; on CUDA the log and checkpoint steps); alone, at every step.
            time_due = ckpt_s > 0 and time.time() - last_ckpt_t >= ckpt_s
            if must_log or must_ckpt or host_sync_every_step:
                value = float(out.loss)  # one host sync, only where it is needed
                diverged, time_due, *decided = D.agree([not math.isfinite(value), time_due, *asks.values()])
                if diverged:
                    where = f"loss became {value}" if not math.isfinite(value) else "the loss became non-finite on another rank"
                    raise TrainingDiverged(
                        f"{where} at step {step}; stopped. {_kept_checkpoint(run)}. "
                        "Lower optim.lr, set optim.clip_grad, or check the data"
                    )
            else:
                decided = [False] * len(asks) if dist_info.enabled else list(asks.values())
                time_due = time_due and not dist_info.enabled  # (ranks decide together, at synchronising steps)
            must_ckpt = must_ckpt or time_due

            if must_log or must_ckpt or must_snapshot:
                def main_writes() -> None:
                    nonlocal last_row
                    if must_log:
                        now = time.time()
                        row = {"step": step, "epoch": step * cfg.optim.batch_size / cfg.optim.epoch_size, "lr": out.lr,
                               "loss": value,
                               "loss_task": interval.mean_task(),  # mean over the steps since the last line
                               "acc": interval.mean_acc(),
                               "loss_task_chance": chance_loss, **chance_acc,
                               "sl_total": float(out.sl_total), **{f"sl_{k}": float(v) for k, v in out.sl.items()},
                               **{k: float(v) for k, v in out.extras.items()},
                               "clips_per_s": interval.clips_per_s(now),  # clips = both views of every pair
                               "elapsed_s": now - t_start, **_heldout_row(model, heldout if must_eval else None, cfg)}
                        logger.log(row)
                        last_row = row
                        bar.set_postfix(loss=f"{row['loss_task']:.3f}", sl=f"{row['sl_total']:.3f}",
                                        clips_s=f"{row['clips_per_s']:.1f}")
                    if must_ckpt:
                        save_last(step)
                    if must_snapshot:  # backbone-only snapshots for "metric vs training step" studies
                        run.save_checkpoint(f"step_{step:06d}", backbone_checkpoint(step, cfg.to_yaml(), model.backbone.state_dict()))

                D.on_main(f"step {step}: writing the log / checkpoint", main_writes)
                if must_log:
                    interval.reset(time.time())
                if must_ckpt:
                    saved_at, last_ckpt_t = step, time.time()
            reason = next((name for name, yes in zip(asks, decided) if yes), None)
            if reason is not None:
                status = reason
                break
        if saved_at != step:
            D.on_main(f"step {step}: saving the last checkpoint", lambda: save_last(step))
        write_status(status, step, {"last": last_row})
    except TrainingDiverged:
        write_status("diverged", step)
        raise
    finally:
        bar.close()
        logger.close()
        stop.close()
    if is_main and status == "interrupted":
        print(f"[stdann] interrupted at step {step}; checkpoint saved. Continue with --resume.")
    return TrainResult(status, step, total_steps, time.time() - t_start, last_row, run.root, stop.signal)


HELDOUT_COLUMNS = ("heldout_top1", "heldout_top5", "heldout_infonce", "heldout_chance_infonce")
# the supervised objective's held-out check: direction top-1 of held-out clips (chance 1/bins), its
# cross-entropy (chance Σ ln(classes)) and, with speed bins, the speed top-1 (chance 1/speed_bins)
SUPERVISED_HELDOUT_COLUMNS = ("heldout_top1", "heldout_chance_top1", "heldout_loss", "heldout_chance_loss")
SPEED_HELDOUT_COLUMNS = ("heldout_speed_top1", "heldout_chance_speed_top1")


def heldout_columns(cfg: Config) -> tuple[str, ...]:
    """The held-out columns of this run's log lines."""
    if not is_supervised(cfg):
        return HELDOUT_COLUMNS
    return SUPERVISED_HELDOUT_COLUMNS + (SPEED_HELDOUT_COLUMNS if cfg.train.objective == "supervised_direction_speed" else ())


def _heldout_pairs(cfg: Config, device: torch.device) -> tuple | None:
    """The fixed held-out positive pairs of a run (model-ready), from the run's own data source
    with a seed stream that training never draws (:func:`stdann.training.evaluation.heldout_seed`);
    for the supervised objective the clips of both views and their motion bins instead."""
    n = int(cfg.train.eval_pairs)
    if n < 2:
        return None
    src = build_pair_source(cfg.data, n, device, seed=heldout_seed(cfg.data.seed, cfg.train.seed))
    try:
        if is_supervised(cfg):
            x1, x2, m1, m2 = src.batch(0, return_motion=True)
        else:
            x1, x2 = src.batch(0)
    finally:
        src.close()
    fmt = torch.channels_last_3d if cfg.train.channels_last else torch.contiguous_format
    if is_supervised(cfg):
        speed = cfg.train.speed_bins if cfg.train.objective == "supervised_direction_speed" else 0
        y = [motion_targets(m, cfg.train.direction_bins, speed, (cfg.data.speed_min, cfg.data.speed_max)) for m in (m1, m2)]
        return normalize(torch.cat([x1, x2])).contiguous(memory_format=fmt), torch.cat(y).to(device)
    return normalize(x1).contiguous(memory_format=fmt), normalize(x2).contiguous(memory_format=fmt)


def _heldout_row(model: MoCo | MotionClassifier, heldout, cfg: Config) -> dict[str, float]:
    """The held-out columns of a log line (NaN when no check is due at this step)."""
    if heldout is None:
        return dict.fromkeys(heldout_columns(cfg), float("nan"))
    if isinstance(model, MotionClassifier):
        m = heldout_classification(model, *heldout, batch_size=64)
        row = {"heldout_top1": m["top1"], "heldout_chance_top1": m["chance_top1"], "heldout_loss": m["loss"],
               "heldout_chance_loss": m["chance_loss"]}
        if "speed_top1" in m:
            row.update(heldout_speed_top1=m["speed_top1"], heldout_chance_speed_top1=m["chance_speed_top1"])
        return row
    m = instance_discrimination(model, *heldout, batch_size=64)
    return {"heldout_top1": m["top1"], "heldout_top5": m["top5"], "heldout_infonce": m["infonce"],
            "heldout_chance_infonce": m["chance_infonce"]}


def _kept_checkpoint(run: RunFolder) -> str:
    """What the user still has after a divergence (only a checkpoint that exists is promised)."""
    last = run.checkpoint("last")
    if last.is_file():
        return f"The last good checkpoint ({last}) was kept"
    return f"No checkpoint was written before (the first comes after train.ckpt_every steps); nothing to resume in {run.root}"

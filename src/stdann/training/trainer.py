"""The training loop: MoCo + α·spatial loss, on CPU, one GPU, or many GPUs under torchrun.

Read it top to bottom: :func:`train` prepares the device, the process group and the (locked) run
folder; :func:`_build` makes everything a run needs — model, optimiser, positions, the start or the
resume (:mod:`stdann.training.resume`), data, the step (:mod:`stdann.training.step`), the held-out
pairs, the logger — as one :class:`_Run`; :func:`_loop` runs the steps. After each step
:func:`due` says which periodic jobs fall on it (log line, held-out check, checkpoint, snapshot) and
the :class:`~stdann.training.stopper.Stopper` whether to stop (Ctrl-C, SIGTERM, ``train.max_minutes``,
a non-finite loss) or checkpoint by the clock (``train.ckpt_minutes``), the same on every rank.

The task loss is MoCo's unless ``train.objective`` asks for the supervised positive control
(:mod:`stdann.models.motion_classifier`): the log's ``loss_task`` is then the cross-entropy, ``acc``
the direction top-1 (``acc_chance`` = 1/direction_bins), and the held-out check the direction top-1.

Resume: everything random in a step is seeded from (seed, step) and the data source is a pure
function of (seed, step, rank), so a resumed run draws exactly the batches, augmentations, key
shuffles and neighborhoods of the uninterrupted one. On the CPU (``train.deterministic=true``) it
then computes the same numbers, which the tests check; on CUDA to floating-point reproducibility
only (cuDNN autotuning, atomic additions, bf16; ``train.deterministic=true`` asks for deterministic
kernels).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from tqdm.auto import tqdm

from stdann import distributed
from stdann.config import Config
from stdann.data.loader import build_pair_source
from stdann.devices import resolve_device
from stdann.devices import select as select_device
from stdann.models.moco import MoCo
from stdann.models.motion_classifier import MotionClassifier
from stdann.resources import check_memory
from stdann.runs.checkpoint import backbone_checkpoint, training_checkpoint
from stdann.runs.errors import RunExistsError  # noqa: F401 - part of this module's interface
from stdann.runs.folder import RunFolder
from stdann.runs.training import training_folder
from stdann.training import resume
from stdann.training.heldout import heldout_pairs, heldout_row
from stdann.training.logger import Interval, RunLogger
from stdann.training.setup import check_ranks_agree, open_logger, shared_positions, step_settings, versions
from stdann.training.step import (
    ExtraLoss, StepOutput, build_model, build_optimizer, build_step, configure_backends, is_supervised,
    task_chance,
)
from stdann.training.stopper import Stopper, TrainingDiverged

__all__ = ["TrainResult", "TrainingDiverged", "due", "train"]


@dataclass
class TrainResult:
    status: str  # finished | interrupted | time-budget | stopped
    step: int
    total_steps: int
    seconds: float
    last: dict[str, float]
    run_dir: Path
    signal: int | None = None  # the signal that interrupted the run (SIGINT, SIGTERM), if any


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
    cfg.validate()  # every value, before any device or process group is touched
    device = resolve_device(cfg.train.device)
    dist_info = distributed.init_distributed(device.type, cfg.train.collective_minutes)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
    device = select_device(device)  # cuda:N becomes this process's current GPU (streams, events, kernels)
    configure_backends(cfg)
    cfg.validate(world_size=dist_info.world_size)  # the global batch split between the processes
    check_memory(cfg, device, dist_info.world_size)  # refuse what cannot fit, before allocating
    with training_folder(Path(out_dir), resume=resume, overwrite=overwrite, main=dist_info.is_main) as (run, resuming):
        r = _build(run, bool(distributed.broadcast_from_main(resuming)), cfg, device, dist_info, source, extra_losses)
        return _loop(r, progress, stop_at_step)


@dataclass
class _Run:
    """Everything the loop touches, made by :func:`_build`."""

    run: RunFolder
    cfg: Config
    device: torch.device
    dist: Any  # stdann.distributed.DistInfo
    model: MoCo | MotionClassifier
    optimizer: torch.optim.Optimizer
    step_fn: Callable[[int], StepOutput]
    heldout: tuple | None  # the held-out pairs (main process only)
    logger: RunLogger
    start_step: int
    total_steps: int

    def save_last(self, step: int) -> None:
        """The ``last`` checkpoint, refused (the run stops) when a parameter is no longer finite."""
        bad = [n for n, p in self.model.encoder_q.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise TrainingDiverged(f"parameters became NaN/Inf by step {step} (e.g. {bad[:3]}). "
                                   f"{resume.kept_checkpoint(self.run)}. Lower optim.lr or set optim.clip_grad")
        self.run.save_checkpoint("last", training_checkpoint(step, self.cfg.to_yaml(), self.model.state_dict(),
                                                             self.optimizer.state_dict(), resume.rng_state(),
                                                             self.dist.world_size))

    def write_status(self, status: str, step: int, extra: dict | None = None) -> None:
        if self.dist.is_main:
            self.run.write_status(status, step=step, total_steps=self.total_steps, device=str(self.device),
                                  world_size=self.dist.world_size, versions=versions(), **(extra or {}))


def _build(run: RunFolder, resuming: bool, cfg: Config, device: torch.device, dist_info: Any, source: Any,
           extra_losses: Iterable[ExtraLoss]) -> _Run:
    """Model, optimiser, positions, start or resume, data, step, held-out pairs and logger."""
    is_main = dist_info.is_main
    settings = step_settings(cfg, device)
    model = build_model(cfg, device, settings)
    optimizer = build_optimizer(model, cfg, settings)
    if resuming:  # the checkpoint's configuration first: its error names every difference
        start_step = distributed.on_every_rank("restoring the checkpoint", lambda: resume.restore(run, cfg, model, optimizer, device, is_main))
        positions = shared_positions(cfg, run, is_main, device)
    else:  # the positions first: ones made for another network are refused before the run is started
        positions = shared_positions(cfg, run, is_main, device)
        start_step = distributed.on_every_rank("starting the run", lambda: resume.start(run, cfg, model, device, is_main))
    check_ranks_agree(cfg, start_step, positions)
    if source is None:
        source = build_pair_source(cfg.data, cfg.optim.batch_size // dist_info.world_size, device,
                                   seed=cfg.data.seed + cfg.train.seed, rank=dist_info.rank, world_size=dist_info.world_size)
    step_fn = build_step(cfg, device, settings, source, positions=positions, model=model, optimizer=optimizer,
                         extra_losses=extra_losses)
    return _Run(run, cfg, device, dist_info, model, optimizer, step_fn, heldout_pairs(cfg, device) if is_main else None,
                open_logger(run, cfg, is_main, resuming, start_step), start_step, cfg.optim.total_steps())


@dataclass(frozen=True)
class Due:
    """The periodic jobs that fall on a step."""

    log: bool  # a line in train.csv (every train.log_every steps, the last step, every held-out check)
    eval: bool  # the held-out check (every train.eval_every steps, the last step)
    ckpt: bool  # the `last` checkpoint (every train.ckpt_every steps, the last step)
    snapshot: bool  # a backbone snapshot step_NNNNNN (every train.snapshot_every steps)


def due(cfg: Config, step: int, total_steps: int) -> Due:
    """Which periodic jobs fall on ``step`` (counted after the step, 1 … total_steps)."""
    t, last = cfg.train, step == total_steps
    ev = last or (t.eval_every > 0 and step % t.eval_every == 0)
    return Due(log=ev or last or step % t.log_every == 0, eval=ev, ckpt=last or step % t.ckpt_every == 0,
               snapshot=t.snapshot_every > 0 and step % t.snapshot_every == 0)


def _loop(r: _Run, progress: bool, stop_at_step: int | None) -> TrainResult:
    """The steps, from ``r.start_step`` to the end or the first stop; returns how it ended."""
    stopper = Stopper(r.cfg, r.run, r.device, r.dist.enabled, stop_at_step, r.total_steps)
    bar = tqdm(total=r.total_steps, initial=r.start_step, disable=not (progress and r.dist.is_main), desc="train",
               unit="step", dynamic_ncols=True)
    status, step, saved_at, last_row = "finished", r.start_step, -1, {}
    distributed.barrier()  # every rank starts its clock (train.max_minutes) here, after the main process's writes
    stopper.start(time.time())
    interval = Interval(r.device, stopper.t_start)
    r.write_status("running", step)
    try:
        while step < r.total_steps:
            out = r.step_fn(step)  # one optimisation step
            step += 1
            interval.add(out, r.dist.world_size)
            bar.update(1)
            jobs = due(r.cfg, step, r.total_steps)  # log / held-out check / checkpoint / snapshot
            decision = stopper.decide(step, out.loss, jobs.log or jobs.ckpt)  # every rank: stop? diverged? clock?
            ckpt = jobs.ckpt or decision.checkpoint
            if jobs.log or ckpt or jobs.snapshot:  # the main process writes, the others wait for it
                row = distributed.on_main(f"step {step}: writing the log / checkpoint",
                                lambda: _write(r, step, out, decision.loss, jobs, ckpt, interval, stopper.t_start))
                if jobs.log:
                    last_row = row or last_row
                    bar.set_postfix(loss=f"{last_row.get('loss_task', float('nan')):.3f}",
                                    sl=f"{last_row.get('sl_total', float('nan')):.3f}",
                                    clips_s=f"{last_row.get('clips_per_s', float('nan')):.1f}")
                    interval.reset(time.time())
                if ckpt:
                    saved_at = step
                    stopper.checkpointed()
            if decision.stop is not None:
                status = decision.stop
                break
        if saved_at != step:
            distributed.on_main(f"step {step}: saving the last checkpoint", lambda: r.save_last(step))
        r.write_status(status, step, {"last": last_row})
    except TrainingDiverged:
        r.write_status("diverged", step)
        raise
    finally:
        bar.close()
        r.logger.close()
        stopper.close()
    if r.dist.is_main and status == "interrupted":
        print(f"[stdann] interrupted at step {step}; checkpoint saved. Continue with --resume.")
    return TrainResult(status, step, r.total_steps, time.time() - stopper.t_start, last_row, r.run.root, stopper.signals.signal)


def _write(r: _Run, step: int, out: StepOutput, loss: float | None, jobs: Due, ckpt: bool, interval: Interval,
           t_start: float) -> dict | None:
    """The main process's writes at ``step``: the log line (returned), the checkpoint, the snapshot."""
    row = None
    if jobs.log:
        now = time.time()
        chance_loss, chance_top1 = task_chance(r.cfg)
        row = {"step": step, "epoch": step * r.cfg.optim.batch_size / r.cfg.optim.epoch_size, "lr": out.lr, "loss": loss,
               "loss_task": interval.mean_task(),  # mean over the steps since the last line
               "acc": interval.mean_acc(), "loss_task_chance": chance_loss,
               **({"acc_chance": chance_top1} if is_supervised(r.cfg) else {}),  # MoCo's logs keep their columns
               "sl_total": float(out.sl_total), **{f"sl_{k}": float(v) for k, v in out.sl.items()},
               **{k: float(v) for k, v in out.extras.items()},
               "clips_per_s": interval.clips_per_s(now),  # clips = both views of every pair
               "elapsed_s": now - t_start, **heldout_row(r.model, r.heldout if jobs.eval else None, r.cfg)}
        r.logger.log(row)
    if ckpt:
        r.save_last(step)
    if jobs.snapshot:  # backbone-only snapshots for "metric vs training step" studies
        r.run.save_checkpoint(f"step_{step:06d}", backbone_checkpoint(step, r.cfg.to_yaml(), r.model.backbone.state_dict()))
    return row

"""The training loop: MoCo + α·spatial loss, on CPU, one GPU, or many GPUs under torchrun.

Readable in one sitting: set up the run folder → build model, positions, data, optimiser →
(resume) → for each step: batch → forward → loss → backward → step → EMA → enqueue → log →
checkpoint. Everything random in a step is seeded from (seed, step), and the data source is a
pure function of (seed, step, rank), so a resumed run repeats the uninterrupted one exactly.
"""

from __future__ import annotations

import contextlib
import math
import platform
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from stdann import __version__
from stdann.config import Config, ConfigError
from stdann.data.loader import build_pair_source
from stdann.models.inputs import normalize
from stdann.errors import StdannError
from stdann.models.moco import MoCo, build_moco
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
from stdann.topography import SpatialLoss, init_model_positions, sheets_from_config
from stdann.training import distributed as D
from stdann.training.evaluation import heldout_seed, instance_discrimination
from stdann.training.logger import RunLogger
from stdann.training.schedule import lr_at

ExtraLoss = Callable[[dict[str, torch.Tensor], int], dict[str, torch.Tensor]]

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
    "topography.blocks",
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


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"train.device = {spec!r} is not valid: it must be auto, cpu, cuda, cuda:N or mps; "
                          "set it with --device or --set train.device=VALUE") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device = {spec!r} but CUDA is not available here; use --device cpu (or auto)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"train.device = {spec!r} but this machine has {torch.cuda.device_count()} GPU(s); "
                          "use cuda:0 … or auto")
    return dev


def amp_enabled(cfg: Config, device: torch.device) -> bool:
    """bf16 autocast: train.amp (validated by Config.validate) on this device."""
    mode = str(cfg.train.amp).lower()
    return mode in ("bf16", "true") or (mode == "auto" and device.type == "cuda")


def _get(cfg: Config, dotted: str) -> Any:
    obj: Any = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def structural_diff(a: Config, b: Config) -> list[str]:
    return [f"{k}: checkpoint {_get(a, k)!r}, now {_get(b, k)!r}" for k in STRUCTURAL_KEYS if _get(a, k) != _get(b, k)]


def step_generator(seed: int, step: int) -> torch.Generator:
    """The RNG of one step (key shuffles, neighborhood draws): the same on every rank."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7919 + 17) % (2**63 - 1))


def versions() -> dict[str, str]:
    import scipy

    return {
        "stdann": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
        "cuda": str(torch.version.cuda),
    }


def _positions(cfg: Config, run: RunFolder, is_main: bool):
    """The run's positions: those already in ``RUN/positions`` (e.g. written by ``stdann positions
    optimize``; all blocks or none — see :meth:`RunFolder.load_positions`), else a fresh retinotopic
    initialisation, saved by the main process."""
    blocks = list(cfg.topography.blocks)
    pos = run.load_positions(blocks)
    if pos is not None:
        return pos
    pos = init_model_positions(
        width=cfg.model.width,
        frames=cfg.data.frames,
        size=cfg.data.size,
        blocks=blocks,
        sheets=sheets_from_config(cfg.topography),
        seed=cfg.topography.position_seed,
        n_windows=cfg.topography.n_windows,
    )
    if is_main:
        run.save_positions(pos)
    return pos


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


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
    dist_info = D.init_distributed(device.type)
    if dist_info.enabled and device.type == "cuda":
        device = torch.device("cuda", dist_info.local_rank)
        torch.cuda.set_device(device)
    is_main = dist_info.is_main
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)

    cfg.validate(world_size=dist_info.world_size)  # the global batch split between the processes
    check_memory(cfg, device, dist_info.world_size)  # refuse what cannot fit, before allocating
    local_batch = cfg.optim.batch_size // dist_info.world_size

    with training_folder(out, resume=resume, overwrite=overwrite, main=is_main) as (run, resuming):
        if dist_info.enabled:
            flag = [resuming]
            torch.distributed.broadcast_object_list(flag, src=0)
            resuming = bool(flag[0])
        return _train_in(run, resuming, cfg, device, dist_info, local_batch, source=source, progress=progress,
                         extra_losses=extra_losses, stop_at_step=stop_at_step)


def _train_in(run: RunFolder, resuming: bool, cfg: Config, device: torch.device, dist_info: Any, local_batch: int, *,
              source: Any, progress: bool, extra_losses: Iterable[ExtraLoss], stop_at_step: int | None) -> TrainResult:
    """The training run itself, in a prepared (and, on the main process, locked) run folder."""
    out, is_main = run.root, dist_info.is_main

    torch.manual_seed(cfg.train.seed)
    np.random.seed(cfg.train.seed % (2**32))
    model: MoCo = build_moco(cfg).to(device)
    total_steps = cfg.optim.total_steps()
    warmup = int(round(cfg.optim.warmup_epochs * cfg.optim.epoch_size / cfg.optim.batch_size))
    base_lr = cfg.optim.scaled_lr()
    use_cuda = device.type == "cuda"
    if use_cuda:
        torch.backends.cudnn.benchmark = True  # fixed clip shapes: let cuDNN pick the fastest kernels
    if cfg.train.channels_last:  # ~2x faster 3D convolutions on CUDA and on oneDNN CPUs alike
        model = model.to(memory_format=torch.channels_last_3d)
    params = [p for p in model.encoder_q.parameters() if p.requires_grad]
    opt_kwargs: dict[str, Any] = dict(lr=base_lr, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay)
    if use_cuda:
        opt_kwargs["foreach"] = True
    optimizer = torch.optim.SGD(params, **opt_kwargs)

    if is_main:
        positions = _positions(cfg, run, is_main)
    D.barrier()  # the main process has written any new positions: the other ranks read the same ones
    if not is_main:
        positions = _positions(cfg, run, is_main)
    use_spatial = cfg.topography.alpha > 0 or cfg.topography.spatial_only
    spatial_fn = None
    if use_spatial:
        spatial_fn = SpatialLoss(
            positions, kind=cfg.topography.loss, neighborhoods_per_step=cfg.topography.neighborhoods_per_step,
            check_finite=not use_cuda,  # on CUDA the NaN check runs at log steps only (no sync per step)
        )
    spatial_blocks = tuple(cfg.topography.blocks) if use_spatial or extra_losses else ()

    start_step = 0
    if resuming:
        ckpt = load_training_state(run.checkpoint("last"), map_location=device)
        diffs = structural_diff(config_from_checkpoint(ckpt), cfg)
        if diffs:
            raise CheckpointError(
                f"cannot resume {out}: the checkpoint was trained with another configuration ({'; '.join(diffs)}). "
                "Resume with the run's own config.yaml, or use --overwrite / another --out"
            )
        load_state_checked(model, ckpt["model"], f"checkpoint {run.checkpoint('last')}")
        optimizer.load_state_dict(ckpt["optimizer"])
        start_step = int(ckpt["step"])
        torch.set_rng_state(ckpt["rng"]["torch"].cpu())
        if is_main:
            run.write_config(cfg)  # the configuration the run continues with (--set changes included)
    else:
        init_backbone = model.backbone.state_dict()
        if cfg.train.init_from:
            # Start from another run's weights (e.g. the contrastive-only pretraining of the
            # topographic recipe). The untrained control stays that run's step-0 network.
            src_run = RunFolder(cfg.train.init_from)
            src_ckpt = load_training_state(src_run.checkpoint("last"), map_location=device)
            load_state_checked(model, src_ckpt["model"], f"train.init_from={src_run.root}")
            if src_run.checkpoint("init").is_file():
                init_backbone = backbone_state(safe_load(src_run.checkpoint("init")))
        if is_main:
            run.write_config(cfg)
            run.save_checkpoint("init", backbone_checkpoint(0, cfg.to_yaml(), init_backbone))

    if source is None:
        source = build_pair_source(
            cfg.data, local_batch, device, seed=cfg.data.seed + cfg.train.seed, rank=dist_info.rank,
            world_size=dist_info.world_size,
        )

    heldout = _heldout_pairs(cfg, device) if is_main else None

    step_model: Any = model
    if dist_info.enabled:
        step_model = torch.nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if use_cuda else None,
            find_unused_parameters=cfg.topography.spatial_only,
            broadcast_buffers=False,
        )
    if cfg.train.compile and use_cuda:
        model.encoder_q.backbone.forward_blocks = torch.compile(model.encoder_q.backbone.forward_blocks)

    tb_dir = run.path(TENSORBOARD) if cfg.train.tensorboard else None
    if is_main:
        run.claim(TRAIN_LOG)  # refuses a train.csv that stdann did not write (its header is never adopted)
        tb_before = run.files_in(TENSORBOARD)
    logger = RunLogger(run.path(TRAIN_LOG), tb_dir, enabled=is_main)
    if is_main:
        run.record_changed(TENSORBOARD, tb_before)
    if resuming:
        logger.truncate_after(start_step)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp_enabled(cfg, device) else contextlib.nullcontext()

    # -- signals: first Ctrl-C / SIGTERM asks for a clean stop (checkpoint, then exit) ----------
    stop: dict[str, Any] = {"flag": False, "signal": None}

    def _request_stop(signum, frame):  # noqa: ARG001
        if stop["flag"]:
            raise KeyboardInterrupt
        stop["flag"] = True
        stop["signal"] = signum

    old_handlers = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            old_handlers[sig] = signal.signal(sig, _request_stop)
    except ValueError:  # not the main thread
        old_handlers = {}

    def save_last(step: int) -> None:
        if not is_main:
            return
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

    from tqdm.auto import tqdm

    bar = tqdm(total=total_steps, initial=start_step, disable=not (progress and is_main), desc="train", unit="step", dynamic_ncols=True)
    status = "finished"
    step = start_step
    last_row: dict[str, float] = {}
    t_start = time.time()
    t_log, clips_since = time.time(), 0
    # sums of the task loss and top-1 since the last log line (on the device: no host sync per step)
    task_sum, acc_sum, n_sum = torch.zeros((), device=device), torch.zeros((), device=device), 0
    write_status("running", step)
    model.train()
    try:
        while step < total_steps:
            if stop["flag"]:
                status = "interrupted"
                break
            if cfg.train.max_minutes > 0 and (time.time() - t_start) > 60 * cfg.train.max_minutes:
                status = "time-budget"
                break
            lr = lr_at(step, total_steps, base_lr, warmup, cfg.optim.final_lr_fraction)
            for group in optimizer.param_groups:
                group["lr"] = lr
            gen = step_generator(cfg.train.seed, step)
            x1, x2 = source.batch(step)
            x1, x2 = normalize(x1.to(device, non_blocking=True)), normalize(x2.to(device, non_blocking=True))
            if cfg.train.channels_last:
                x1 = x1.contiguous(memory_format=torch.channels_last_3d)
                x2 = x2.contiguous(memory_format=torch.channels_last_3d)
            with autocast:
                outp = step_model(x1, x2, blocks=spatial_blocks, generator=gen)
            task = outp["loss"]
            sl = spatial_fn(outp["blocks"], gen) if spatial_fn is not None else {}
            extras: dict[str, torch.Tensor] = {}
            for fn in extra_losses:
                extras.update(fn(outp["blocks"], step))
            sl_total = torch.stack(list(sl.values())).sum() if sl else torch.zeros((), device=device)
            loss = (0.0 if cfg.topography.spatial_only else task) + cfg.topography.alpha * sl_total
            loss = loss + sum(extras.values()) if extras else loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.optim.clip_grad)
            optimizer.step()
            model.momentum_update()
            model.enqueue(outp["keys"])
            task_sum += task.detach().float()
            acc_sum += outp["acc"].detach().float()
            n_sum += 1
            step += 1
            clips_since += x1.shape[0] * dist_info.world_size
            bar.update(1)

            must_eval = step == total_steps or (cfg.train.eval_every > 0 and step % cfg.train.eval_every == 0)
            must_log = step % cfg.train.log_every == 0 or step == total_steps or must_eval
            must_ckpt = step % cfg.train.ckpt_every == 0 or step == total_steps
            if must_log or must_ckpt or not use_cuda:
                value = float(loss.detach())  # one host sync, only where it is needed
                if not math.isfinite(value):
                    raise TrainingDiverged(
                        f"loss became {value} at step {step}; stopped. {_kept_checkpoint(run)}. "
                        "Lower optim.lr, set optim.clip_grad, or check the data"
                    )
            if must_log:
                now = time.time()
                row = {
                    "step": step,
                    "epoch": step * cfg.optim.batch_size / cfg.optim.epoch_size,
                    "lr": lr,
                    "loss": value,
                    "loss_task": float(task_sum) / n_sum,  # mean over the steps since the last line
                    "acc": float(acc_sum) / n_sum,
                    "loss_task_chance": math.log(cfg.moco.queue_size + 1),
                    "sl_total": float(sl_total.detach()),
                    **{f"sl_{k}": float(v.detach()) for k, v in sl.items()},
                    **{k: float(v.detach()) for k, v in extras.items()},
                    "clips_per_s": clips_since / max(now - t_log, 1e-9),
                    "elapsed_s": now - t_start,
                    **_heldout_row(model, heldout if must_eval else None),
                }
                logger.log(row)
                last_row = row
                t_log, clips_since = now, 0
                task_sum.zero_()
                acc_sum.zero_()
                n_sum = 0
                bar.set_postfix(loss=f"{row['loss_task']:.3f}", sl=f"{row['sl_total']:.3f}", clips_s=f"{row['clips_per_s']:.1f}")
            if must_ckpt:
                save_last(step)
            if cfg.train.snapshot_every > 0 and step % cfg.train.snapshot_every == 0 and is_main:
                # Backbone-only snapshots for "metric vs training step" studies (small files).
                run.save_checkpoint(f"step_{step:06d}", backbone_checkpoint(step, cfg.to_yaml(), model.backbone.state_dict()))
            if stop_at_step is not None and step >= stop_at_step and step < total_steps:
                status = "stopped"
                break
        if status != "finished" or step % cfg.train.ckpt_every:
            save_last(step)
        write_status(status, step, {"last": last_row})
    except TrainingDiverged:
        write_status("diverged", step)
        raise
    finally:
        bar.close()
        logger.close()
        for sig, h in old_handlers.items():
            signal.signal(sig, h)
    if is_main and status == "interrupted":
        print(f"[stdann] interrupted at step {step}; checkpoint saved. Continue with --resume.")
    return TrainResult(status, step, total_steps, time.time() - t_start, last_row, out, stop["signal"])


HELDOUT_COLUMNS = ("heldout_top1", "heldout_top5", "heldout_infonce", "heldout_chance_infonce")


def _heldout_pairs(cfg: Config, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The fixed held-out positive pairs of a run (model-ready), from the run's own data source
    with a seed stream that training never draws (:func:`stdann.training.evaluation.heldout_seed`)."""
    n = int(cfg.train.eval_pairs)
    if n < 2:
        return None
    src = build_pair_source(cfg.data, n, device, seed=heldout_seed(cfg.data.seed, cfg.train.seed))
    try:
        x1, x2 = src.batch(0)
    finally:
        src.close()
    if cfg.train.channels_last:
        return (normalize(x1).contiguous(memory_format=torch.channels_last_3d),
                normalize(x2).contiguous(memory_format=torch.channels_last_3d))
    return normalize(x1), normalize(x2)


def _heldout_row(model: MoCo, heldout) -> dict[str, float]:
    """The held-out columns of a log line (empty when no check is due at this step)."""
    if heldout is None:
        return dict.fromkeys(HELDOUT_COLUMNS, float("nan"))
    m = instance_discrimination(model, *heldout, batch_size=64)
    return {"heldout_top1": m["top1"], "heldout_top5": m["top5"], "heldout_infonce": m["infonce"],
            "heldout_chance_infonce": m["chance_infonce"]}


def _kept_checkpoint(run: RunFolder) -> str:
    """What the user still has after a divergence (only a checkpoint that exists is promised)."""
    last = run.checkpoint("last")
    if last.is_file():
        return f"The last good checkpoint ({last}) was kept"
    return f"No checkpoint was written before (the first comes after train.ckpt_every steps); nothing to resume in {run.root}"

"""The training step — the only one: :func:`stdann.training.trainer.train` runs it and
``stdann bench train`` times it.

One call of a :class:`TrainStep` is::

    batch (x1, x2) → draw the step's neighborhoods → query encoder on both views, keeping the
    sampled units inside the pass (UnitTap) → key encoder (shuffle-BN) → InfoNCE (fp32)
    → spatial loss of the kept units (gathered over the ranks) → L = L_task + α·ΣSL (+ extras)
    → backward → (gradient clipping) → SGD (or AdamW) → key-encoder EMA → enqueue the keys

The task (``train.objective``) is MoCo's InfoNCE, or for the supervised positive control
(:mod:`stdann.models.motion_classifier`) the cross-entropy of both views' camera-motion classes,
labelled from the generator's ground truth; there the key encoder, EMA and queue are absent and
everything else (spatial loss, taps, SGD, schedule, logs, checkpoints) is the same step.
With ``moco.motion_negatives`` the batch also brings each view's motion-only negatives, which the
key encoder embeds with the positive keys.

Everything it uses is made once by the builders below from the configuration and a
:class:`StepSettings` (how the step runs on its device: the trainer's choices come from
:func:`stdann.training.setup.step_settings`). The benchmark's plain baseline is this same step
with :func:`plain_settings`: fp32, eager, contiguous tensors, non-foreach SGD, the EMA as a Python
loop and the spatial loss on the finished block outputs, one neighborhood at a time.

Phase marks: ``step(s, mark)`` calls ``mark(name)`` after each phase (``start``, ``data``,
``k_first``/``k_last`` around the key encoder's calls, ``forward``, ``spatial``, ``backward``,
``optimizer``, ``ema``, ``queue``); the trainer passes none, the benchmark times between them.
Randomness: everything drawn in a step comes from :func:`step_generator` ``(seed, step)`` and the
data source's ``(seed, step, rank)``, so a resumed run draws what the uninterrupted one drew.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np
import torch

from stdann import distributed
from stdann.config import Config
from stdann.models.inputs import normalize
from stdann.models.moco import MoCo, build_moco
from stdann.models.motion_classifier import SUPERVISED, MotionClassifier, build_motion_classifier, motion_targets
from stdann.topography.spatial_loss import (
    SpatialLoss,
    UnitTap,
    block_responses,
    spatial_loss,
)
from stdann.training.schedule import Schedule

ExtraLoss = Callable[[dict[str, torch.Tensor], int], dict[str, torch.Tensor]]
Mark = Callable[[str], None]


def _no_mark(name: str) -> None:  # noqa: ARG001
    pass


@dataclass(frozen=True)
class StepSettings:
    """How the step runs on its device (one object, so that the trainer and the benchmark cannot
    differ by accident)."""

    amp_bf16: bool  # bf16 autocast of the encoders (InfoNCE and the spatial loss stay fp32)
    channels_last: bool  # channels_last_3d model and clips
    compile: bool  # torch.compile of both encoders (CUDA only)
    foreach: bool | None  # SGD's foreach implementation (None: PyTorch's default)
    check_finite: bool  # the spatial loss checks its value every step (one host sync)
    cudnn_benchmark: bool  # cuDNN autotuning inside the step (fixed clip shapes)
    fused_ema: bool = True  # MoCo.momentum_update (one _foreach op) vs a Python loop
    tapped_spatial: bool = True  # sampled units kept inside the pass, batched loss vs a loop on full outputs


def plain_settings() -> StepSettings:
    """The benchmark's baseline: what a plain implementation of the same step does."""
    return StepSettings(amp_bf16=False, channels_last=False, compile=False, foreach=False, check_finite=False,
                        cudnn_benchmark=False, fused_ema=False, tapped_spatial=False)


@dataclass
class StepOutput:
    """What one step computed (device tensors, detached; no host synchronisation to make them)."""

    loss: torch.Tensor
    task: torch.Tensor  # InfoNCE (mean over this rank's queries); supervised: cross-entropy of both views
    acc: torch.Tensor  # top-1 of the positive against the queue; supervised: direction top-1
    sl: dict[str, torch.Tensor]  # spatial loss per block
    sl_total: torch.Tensor
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    lr: float = 0.0
    clips: int = 0  # clips through this rank's query encoder: 2 x its pairs


def step_generator(seed: int, step: int) -> torch.Generator:
    """The RNG of one step (neighborhood draws, key shuffles): the same on every rank."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7919 + 17) % (2**63 - 1))


def ema_loop(model: MoCo | MotionClassifier) -> None:
    """Key-encoder EMA as a Python loop over parameters (the plain way); nothing without a key encoder."""
    if not isinstance(model, MoCo):
        return
    m = model.momentum
    with torch.no_grad():
        for pk, pq in zip(model.encoder_k.parameters(), model.encoder_q.parameters()):
            pk.mul_(m).add_(pq.detach(), alpha=1.0 - m)


def spatial_loss_loop(spatial_fn: SpatialLoss, block_outputs: dict, neighborhoods: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The spatial loss computed the plain way: per block, the full time-averaged responses, then
    one :func:`~stdann.topography.spatial_loss.spatial_loss` call per neighborhood (the same
    neighborhoods as the batched loss, hence the same value)."""
    out = {}
    for block, pos in spatial_fn.positions.items():
        y = block_outputs[block]
        if isinstance(y, (tuple, list)):  # MoCo's per-view outputs: the plain way concatenates them
            y = torch.cat(list(y), dim=0)
        nb = neighborhoods[block]
        coords = torch.as_tensor(pos.coordinates, dtype=torch.float32, device=y.device)
        resp = block_responses(y.float())  # (S, C*H*W)
        vals = [spatial_loss(resp[:, nb[k]], coords[nb[k]], spatial_fn.kind) for k in range(nb.shape[0])]
        out[block] = torch.stack(vals).mean()
    return out


# -- builders -------------------------------------------------------------------------------------------
def configure_backends(cfg: Config) -> None:
    """Process-wide settings of a run: CPU threads and deterministic algorithms."""
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def is_supervised(cfg: Config) -> bool:
    """The positive control (a supervised camera-motion objective) rather than MoCo."""
    return cfg.train.objective in SUPERVISED


def task_chance(cfg: Config) -> tuple[float, float]:
    """(task loss, training top-1) of a network that knows nothing: MoCo ln(K + 1 + h) and
    1/(K + 1 + h) with h hard negatives per query; supervised Σ ln(classes) and 1/direction_bins."""
    if is_supervised(cfg):
        speed = cfg.train.speed_bins if cfg.train.objective == "supervised_direction_speed" else 1
        return math.log(cfg.train.direction_bins) + math.log(speed), 1.0 / cfg.train.direction_bins
    n = cfg.moco.queue_size + 1 + int(cfg.moco.reverse_negatives) + cfg.moco.motion_negatives
    return math.log(n), 1.0 / n


def build_network(cfg: Config) -> MoCo | MotionClassifier:
    """The objective's network (``train.objective``) on the CPU, from the current RNG state."""
    return build_motion_classifier(cfg) if is_supervised(cfg) else build_moco(cfg)


def build_model(cfg: Config, device: torch.device, settings: StepSettings) -> MoCo | MotionClassifier:
    """The objective's network (MoCo, or the supervised positive control) seeded from
    ``train.seed`` (the same initial weights on every rank and in every benchmark variant; the same
    initial backbone for both objectives), on ``device``, channels_last_3d when the settings say so."""
    torch.manual_seed(cfg.train.seed)
    np.random.seed(cfg.train.seed % (2**32))
    model = build_network(cfg).to(device)
    if settings.channels_last:  # faster 3D convolutions on CUDA and oneDNN CPUs (docs/benchmarks.md)
        model = model.to(memory_format=torch.channels_last_3d)
    return model


def build_optimizer(model: MoCo | MotionClassifier, cfg: Config, settings: StepSettings) -> torch.optim.Optimizer:
    """SGD (or AdamW, ``optim.optimizer``) over the query encoder's trainable parameters (lr is set
    by the schedule every step)."""
    params = [p for p in model.encoder_q.parameters() if p.requires_grad]
    kwargs: dict[str, Any] = dict(lr=cfg.optim.scaled_lr(), weight_decay=cfg.optim.weight_decay)
    if settings.foreach is not None:
        kwargs["foreach"] = settings.foreach
    if cfg.optim.optimizer == "adamw":
        return torch.optim.AdamW(params, **kwargs)
    return torch.optim.SGD(params, momentum=cfg.optim.momentum, **kwargs)


def uses_spatial_loss(cfg: Config) -> bool:
    return cfg.topography.alpha > 0 or cfg.topography.spatial_only


def build_spatial_loss(cfg: Config, positions: dict | None, settings: StepSettings) -> SpatialLoss | None:
    """The spatial loss of the configured blocks (None at α = 0). Under DDP its sampled responses
    are gathered over the ranks (:func:`~stdann.distributed.gather_samples`), so that the
    correlations run over the global batch: the same α is the same objective on any number of GPUs."""
    if not uses_spatial_loss(cfg):
        return None
    return SpatialLoss(positions, kind=cfg.topography.loss, neighborhoods_per_step=cfg.topography.neighborhoods_per_step,
                       check_finite=settings.check_finite, gather=distributed.gather_samples if distributed.is_dist() else None)


def compile_encoders(model: MoCo | MotionClassifier) -> None:
    """``torch.compile`` the encoders (backbone + head, with or without kept blocks: one code path,
    so contrastive-only pretraining is compiled too). The eager forward stays as ``eager_forward``
    for the held-out checks (:func:`stdann.training.evaluation.eager`)."""
    for enc in (model.encoder_q, getattr(model, "encoder_k", None)):
        if enc is not None:
            enc.eager_forward = enc.forward
            enc.forward = torch.compile(enc.forward)


def wrap_ddp(model: MoCo | MotionClassifier, cfg: Config, device: torch.device) -> torch.nn.Module:
    """The model DDP runs (the model itself without a process group). With the task loss off
    (spatial-only) the projection head gets no gradient, hence ``find_unused_parameters``."""
    if not distributed.is_dist():
        return model
    return torch.nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=cfg.topography.spatial_only, broadcast_buffers=False,
    )


class TrainStep:
    """One optimisation step (see the module docstring); ``step(s)`` → :class:`StepOutput`."""

    def __init__(self, cfg: Config, model: MoCo | MotionClassifier, optimizer: torch.optim.Optimizer, source: Any, settings: StepSettings, *,
                 spatial: SpatialLoss | None = None, extra_losses: Iterable[ExtraLoss] = (), ddp_model: torch.nn.Module | None = None):
        self.model, self.optimizer, self.source, self.settings = model, optimizer, source, settings
        self.forward_model = ddp_model if ddp_model is not None else model
        self.device = next(model.parameters()).device
        self.params = [p for g in optimizer.param_groups for p in g["params"]]
        self.schedule = Schedule.from_config(cfg)
        self.seed = cfg.train.seed
        self.alpha, self.spatial_only, self.clip_grad = cfg.topography.alpha, cfg.topography.spatial_only, cfg.optim.clip_grad
        self.spatial = spatial
        self.extra_losses = list(extra_losses)
        self.blocks = tuple(cfg.topography.blocks) if spatial is not None or self.extra_losses else ()
        self.tap = UnitTap() if spatial is not None and settings.tapped_spatial else None
        self.supervised = is_supervised(cfg)
        self.motion_negatives = 0 if self.supervised else int(cfg.moco.motion_negatives)
        self.labels = dict(direction_bins=cfg.train.direction_bins,
                           speed_bins=cfg.train.speed_bins if cfg.train.objective == "supervised_direction_speed" else 0,
                           speed_range=(cfg.data.speed_min, cfg.data.speed_max))
        self._mark: Mark = _no_mark
        if isinstance(model, MoCo):
            model.encoder_k.register_forward_pre_hook(lambda module, args: self._mark("k_first"))
            model.encoder_k.register_forward_hook(lambda module, args, output: self._mark("k_last"))

    def _autocast(self):
        if self.settings.amp_bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _backends(self):
        """The step's cuDNN setting, for this step only (the process-wide flags are left alone)."""
        if self.device.type != "cuda":
            return contextlib.nullcontext()
        c = torch.backends.cudnn
        return c.flags(enabled=c.enabled, benchmark=self.settings.cudnn_benchmark, deterministic=c.deterministic,
                       allow_tf32=c.allow_tf32)

    def _ready(self, x: torch.Tensor) -> torch.Tensor:
        """Clips (..., 3, T, H, W) in [0, 1] → model input on the device, in the step's memory format."""
        if x.dim() == 6:  # (B, k, 3, T, H, W) negatives: contiguous; the key encoder sees them flattened
            return normalize(x.to(self.device, non_blocking=True).flatten(0, 1)).view(x.shape).contiguous()
        x = normalize(x.to(self.device, non_blocking=True))
        fmt = torch.channels_last_3d if self.settings.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=fmt)

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The step's clip pairs, model-ready, in the step's memory format."""
        x1, x2, _ = self.inputs(step)
        return x1, x2

    def inputs(self, step: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """(x1, x2, the objective's further forward arguments): the supervised objective's
        ``targets`` (each view's motion bins, from the generator's ground truth), MoCo's motion-only
        ``negatives`` when ``moco.motion_negatives`` > 0."""
        if self.supervised:
            # Horizontal flips stay on: the generator reports each clip's motion as seen in the
            # flipped clip (vx → −vx), so a flip mirrors the label with the pixels and teaches
            # mirror symmetry, never a wrong direction.
            x1, x2, m1, m2 = self.source.batch(step, return_motion=True)
            targets = tuple(motion_targets(m, **self.labels).to(self.device) for m in (m1, m2))
            return self._ready(x1), self._ready(x2), {"targets": targets}
        if self.motion_negatives > 0:
            x1, x2, n1, n2 = self.source.batch(step, motion_negatives=self.motion_negatives)
            return self._ready(x1), self._ready(x2), {"negatives": (self._ready(n1), self._ready(n2))}
        x1, x2 = self.source.batch(step)
        return self._ready(x1), self._ready(x2), {}

    def __call__(self, step: int, mark: Mark | None = None) -> StepOutput:
        with self._backends():
            self._mark = mk = mark or _no_mark
            try:
                return self._step(step, mk)
            finally:
                self._mark = _no_mark

    def _step(self, step: int, mk: Mark) -> StepOutput:
        mk("start")
        lr = self.schedule.lr(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        gen = step_generator(self.seed, step)
        x1, x2, more = self.inputs(step)
        mk("data")
        nbs = self.spatial.sample(gen, self.device) if self.spatial is not None else {}
        if self.tap is not None:
            self.tap.arm(self.spatial.units(nbs))
        with self._autocast():
            outp = self.forward_model(x1, x2, blocks=self.blocks, generator=gen, tap=self.tap, task_grad=not self.spatial_only,
                                      **more)
        mk("forward")
        task = outp["loss"]
        if self.spatial is None:
            sl = {}
        elif self.tap is not None:
            sl = self.spatial.from_samples(self.tap.take(), nbs)
        else:
            sl = spatial_loss_loop(self.spatial, outp["blocks"], nbs)
        extras: dict[str, torch.Tensor] = {}
        for fn in self.extra_losses:
            extras.update(fn(outp["blocks"], step))
        sl_total = torch.stack(list(sl.values())).sum() if sl else torch.zeros((), device=self.device)
        loss = (0.0 if self.spatial_only else task) + self.alpha * sl_total
        loss = loss + sum(extras.values()) if extras else loss
        mk("spatial")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip_grad)
        mk("backward")
        self.optimizer.step()
        mk("optimizer")
        if self.settings.fused_ema:
            self.model.momentum_update()
        else:
            ema_loop(self.model)
        mk("ema")
        self.model.enqueue(outp["keys"])
        mk("queue")
        return StepOutput(loss=loss.detach(), task=task.detach(), acc=outp["acc"].detach(), sl={k: v.detach() for k, v in sl.items()},
                          sl_total=sl_total.detach(), extras={k: v.detach() for k, v in extras.items()}, lr=lr,
                          clips=2 * x1.shape[0])


def build_step(cfg: Config, device: torch.device, settings: StepSettings, source: Any, *, positions: dict | None = None,
               model: MoCo | MotionClassifier | None = None, optimizer: torch.optim.Optimizer | None = None,
               extra_losses: Iterable[ExtraLoss] = ()) -> TrainStep:
    """The step as the trainer runs it: model and optimiser (made here unless given, e.g. restored
    from a checkpoint), spatial loss, DDP wrapper under torchrun, torch.compile when the settings
    say so (CUDA only). ``positions`` are needed when the spatial loss is on."""
    if uses_spatial_loss(cfg) and positions is None:
        raise ValueError("build_step: the spatial loss is on (topography.alpha > 0 or spatial_only) but no positions were given")
    model = model if model is not None else build_model(cfg, device, settings)
    optimizer = optimizer if optimizer is not None else build_optimizer(model, cfg, settings)
    spatial = build_spatial_loss(cfg, positions, settings)
    ddp_model = wrap_ddp(model, cfg, device)
    if settings.compile:
        compile_encoders(model)
    return TrainStep(cfg, model, optimizer, source, settings, spatial=spatial, extra_losses=extra_losses,
                     ddp_model=ddp_model if ddp_model is not model else None)

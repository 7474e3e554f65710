"""The positive-control objective: classify the camera motion of generated clips, with labels.

MoCo has to discover motion on its own, and what it can solve by appearance it will. A network
*told* the direction of motion must encode it; it shows what direction selectivity and direction
maps look like when they are there, measured exactly as the MoCo networks are. Objectives
(``train.objective``):

* ``supervised_direction``: the direction of the generated camera translation in ``direction_bins``
  bins centred on 0°, 360°/bins, … (0° = rightward, 90° = upward, counter-clockwise); cross-entropy,
  chance ln(bins);
* ``supervised_direction_speed``: + its speed in ``speed_bins`` log-spaced bins; the loss is the sum
  of the two cross-entropies, chance ln(direction_bins) + ln(speed_bins).

The model keeps MoCo's layout where the rest of stdann reads it: the backbone is
``encoder_q.backbone`` (so checkpoints of both objectives load with ``runs.checkpoint.load_backbone``
and start with the same weights for the same seed), the classifier is a separate linear head
``encoder_q.head``. It has no key encoder and no queue: :meth:`MotionClassifier.momentum_update` and
:meth:`MotionClassifier.enqueue` do nothing, so that the one training step drives both objectives.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from stdann.models.r3d import VideoResNet, build_backbone

OBJECTIVES = ("moco", "supervised_direction", "supervised_direction_speed")
SUPERVISED = OBJECTIVES[1:]


def direction_bin(direction_deg: torch.Tensor, bins: int) -> torch.Tensor:
    """The bin of each direction (degrees, any range): bin k is centred on k·360°/bins, so 0° ± half
    a bin is bin 0 and 359° is bin 0 too."""
    width = 360.0 / bins
    return torch.floor(torch.remainder(direction_deg.double(), 360.0) / width + 0.5).long() % bins


def speed_bin(speed: torch.Tensor, lo: float, hi: float, bins: int) -> torch.Tensor:
    """The bin of each speed among ``bins`` bins of equal width in log speed over [lo, hi]; speeds
    below ``lo`` fall into bin 0, above ``hi`` into the last bin."""
    if hi <= lo:
        return torch.zeros(speed.shape, dtype=torch.long)
    u = (torch.log(speed.double().clamp_min(1e-12)) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return torch.floor(u * bins).long().clamp(0, bins - 1)


def motion_targets(motion: dict, direction_bins: int, speed_bins: int = 0, speed_range: tuple[float, float] = (1.0, 1.0)) -> torch.Tensor:
    """(n, 1) direction bins, or (n, 2) direction and speed bins, of the generator's ground-truth
    ``motion`` dict (``direction`` in degrees, ``speed`` in px per frame, as seen in the clip: a
    flipped clip's direction is already mirrored there)."""
    cols = [direction_bin(torch.as_tensor(motion["direction"]).reshape(-1), direction_bins)]
    if speed_bins > 0:
        cols.append(speed_bin(torch.as_tensor(motion["speed"]).reshape(-1), *speed_range, speed_bins))
    return torch.stack(cols, dim=1)


class ClassifierEncoder(nn.Module):
    """Backbone + one linear layer giving the logits of every head side by side."""

    def __init__(self, backbone: VideoResNet, classes: tuple[int, ...]):
        super().__init__()
        self.backbone = backbone
        self.classes = tuple(int(c) for c in classes)
        self.head = nn.Linear(backbone.num_features, sum(self.classes))

    def forward(self, x: torch.Tensor, blocks: tuple[str, ...] = (), tap=None):
        """(logits (B, Σ classes), {block: output}), as :class:`stdann.models.moco.Encoder` returns
        (embedding, {block: output})."""
        pooled, outs = self.backbone.forward_blocks(x, blocks, tap=tap)
        return self.head(pooled), outs


class MotionClassifier(nn.Module):
    """The supervised positive control (see the module docstring)."""

    def __init__(self, width: int = 64, direction_bins: int = 16, speed_bins: int = 0, arch: str = "r3d_18"):
        super().__init__()
        classes = (direction_bins,) + ((speed_bins,) if speed_bins > 0 else ())
        # the backbone is built first from the seeded RNG, as in MoCo: same seed, same initial backbone
        self.encoder_q = ClassifierEncoder(build_backbone(arch, width), classes)

    @property
    def backbone(self) -> VideoResNet:
        return self.encoder_q.backbone

    @property
    def classes(self) -> tuple[int, ...]:
        return self.encoder_q.classes

    def chance_loss(self) -> float:
        """The task loss of a uniform guess: Σ over heads of ln(classes)."""
        return float(sum(math.log(c) for c in self.classes))

    def momentum_update(self) -> None:
        """Nothing to do: no key encoder."""

    def enqueue(self, keys: torch.Tensor) -> None:  # noqa: ARG002
        """Nothing to do: no queue."""

    def task(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(summed cross-entropy over the heads, per-head top-1 hits (B, heads) as floats, the logits'
        argmax per head); float32, autocast off."""
        with torch.autocast(device_type=logits.device.type, enabled=False):
            parts = torch.split(logits.float(), list(self.classes), dim=1)
            targets = targets.to(logits.device).view(logits.shape[0], len(self.classes))
            loss = sum(F.cross_entropy(p, targets[:, i]) for i, p in enumerate(parts))
            pred = torch.stack([p.argmax(dim=1) for p in parts], dim=1)
        return loss, (pred == targets).float(), pred

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, targets: tuple[torch.Tensor, torch.Tensor],
                blocks: tuple[str, ...] = (), generator: torch.Generator | None = None, tap=None,  # noqa: ARG002
                task_grad: bool = True):
        """MoCo's output layout for two views with their ``targets`` ((B, heads) bins each):
        ``{"loss": mean cross-entropy of the views, "acc": direction top-1, "blocks": {name: (out_view1,
        out_view2)}, "keys": an empty (0, 1) tensor}``. Each view goes through the network in its own
        pass (BatchNorm statistics per view, as for MoCo's queries). ``task_grad=False`` (spatial loss
        only) detaches the logits: the loss is then logged only."""
        l1, b1 = self.encoder_q(x1, blocks, tap)
        l2, b2 = self.encoder_q(x2, blocks, tap)
        if not task_grad:
            l1, l2 = l1.detach(), l2.detach()
        loss1, hit1, _ = self.task(l1, targets[0])
        loss2, hit2, _ = self.task(l2, targets[1])
        acc = 0.5 * (hit1[:, 0].mean() + hit2[:, 0].mean())
        outs = {name: (b1[name], b2[name]) for name in b1}
        return {"loss": 0.5 * (loss1 + loss2), "acc": acc, "blocks": outs, "keys": l1.new_zeros((0, 1))}


def build_motion_classifier(cfg) -> MotionClassifier:
    """The positive control from a :class:`stdann.config.Config` (``train.objective`` supervised)."""
    speed = cfg.train.speed_bins if cfg.train.objective == "supervised_direction_speed" else 0
    return MotionClassifier(width=cfg.model.width, direction_bins=cfg.train.direction_bins, speed_bins=speed,
                            arch=cfg.model.arch)

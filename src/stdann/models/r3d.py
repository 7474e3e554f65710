"""3D ResNet-18 (Tran et al. 2018, "A Closer Look at Spatiotemporal Convolutions").

Layer layout and parameter names follow torchvision's ``r3d_18`` so that its state dicts (and
Kinetics-400 checkpoints converted from it) load with ``strict=True``:

    stem.0 Conv3d(3, w, (3,7,7), stride (1,2,2), pad (1,3,3))  stem.1 BN  stem.2 ReLU
    layer{1..4}.{0,1}.conv1.0 Conv3d 3x3x3 / conv1.1 BN / conv1.2 ReLU
                      .conv2.0 Conv3d 3x3x3 / conv2.1 BN
                      .downsample.0 Conv3d 1x1x1 / downsample.1 BN   (first block of stages 2-4)
    avgpool, fc

``width`` scales every channel count (64 → 16 gives the CPU presets). The eight residual blocks
(``layer1.0`` … ``layer4.1``, each taken after its final ReLU) are the model's "units"; a single
forward pass can return all of them (:meth:`VideoResNet.forward_blocks`).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import torch
from torch import nn

BLOCK_NAMES: tuple[str, ...] = tuple(f"layer{s}.{b}" for s in range(1, 5) for b in range(2))


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv3d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.BatchNorm3d(planes),
            nn.ReLU(inplace=True),
        )
        self.conv2 = nn.Sequential(
            nn.Conv3d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm3d(planes),
        )
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.conv2(self.conv1(x))
        return self.relu(out + identity)


class VideoResNet(nn.Module):
    """3D ResNet with torchvision's module names. Use :func:`r3d_18` to build one."""

    def __init__(self, layers=(2, 2, 2, 2), num_classes: int | None = None, width: int = 64):
        super().__init__()
        if width < 1:
            raise ValueError(f"width must be a positive channel count (64 = torchvision), got {width}")
        self.width = width
        chans = [width, width * 2, width * 4, width * 8]
        self.stem = nn.Sequential(
            nn.Conv3d(3, width, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
            nn.BatchNorm3d(width),
            nn.ReLU(inplace=True),
        )
        self.inplanes = width
        self.layer1 = self._make_layer(chans[0], layers[0], stride=1)
        self.layer2 = self._make_layer(chans[1], layers[1], stride=2)
        self.layer3 = self._make_layer(chans[2], layers[2], stride=2)
        self.layer4 = self._make_layer(chans[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.num_features = chans[3]
        self.num_classes = num_classes
        self.fc = nn.Linear(chans[3], num_classes) if num_classes else nn.Identity()
        self._init_weights()

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv3d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm3d(planes),
            )
        mods = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        mods += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def _init_weights(self) -> None:
        # The same initialisation as torchvision's VideoResNet.
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    # -- forward passes ---------------------------------------------------------------------
    def blocks(self):
        """(name, module) for the eight residual blocks, in forward order."""
        for s in range(1, 5):
            layer = getattr(self, f"layer{s}")
            for b, block in enumerate(layer):
                yield f"layer{s}.{b}", block

    def forward_blocks(
        self, x: torch.Tensor, blocks: tuple[str, ...] | list[str] | None = None, stop_early: bool = False,
        tap: Callable[[str, torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor | None, "OrderedDict[str, torch.Tensor]"]:
        """One forward pass returning ``(head_output, {block name: block output})``.

        ``blocks`` selects which block outputs to keep (default: all eight). With
        ``stop_early=True`` the pass ends after the last requested block and the head output is
        ``None`` (cheap recording for electrophysiology). ``tap(name, output)``, when given, is
        called on each kept block output *inside* the pass and returns the tensor that the pass
        continues with (e.g. :class:`stdann.topography.spatial_loss.UnitTap`, which keeps a few
        units and returns the output unchanged).
        """
        wanted = BLOCK_NAMES if blocks is None else tuple(blocks)
        unknown = [b for b in wanted if b not in BLOCK_NAMES]
        if unknown:
            raise KeyError(f"unknown block(s) {unknown}; valid blocks are {list(BLOCK_NAMES)}")
        last = max(BLOCK_NAMES.index(b) for b in wanted) if wanted else -1
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        h = self.stem(x)
        for i, (name, block) in enumerate(self.blocks()):
            h = block(h)
            if name in wanted:
                if tap is not None:
                    h = tap(name, h)
                out[name] = h
            if stop_early and i >= last:
                return None, out
        return self.head(h), out

    def head(self, h: torch.Tensor) -> torch.Tensor:
        # the mean over (T, H, W) is what avgpool computes, with a deterministic and faster backward pass
        # (AdaptiveAvgPool3d's CUDA backward uses atomics); the module stays, for torchvision's layout
        h = h.mean(dim=(2, 3, 4))
        return self.fc(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        return self.head(h)


def r3d_18(num_classes: int | None = None, width: int = 64) -> VideoResNet:
    """The 3D ResNet-18 of torchvision (``torchvision.models.video.r3d_18``).

    ``num_classes=None`` gives a feature extractor whose output is the pooled ``8*width``-d vector
    (512-d at width 64); with ``num_classes`` it returns logits (400 for Kinetics-400 weights).
    """
    return VideoResNet((2, 2, 2, 2), num_classes=num_classes, width=width)


# Backbones by their ``model.arch`` name (one entry today; a new architecture registers here).
BACKBONES = {"r3d_18": r3d_18}


def build_backbone(arch: str = "r3d_18", width: int = 64, num_classes: int | None = None) -> VideoResNet:
    """The backbone named ``arch`` (``model.arch``) at ``width``; see :data:`BACKBONES`."""
    if arch not in BACKBONES:
        raise ValueError(f"unknown backbone {arch!r}; model.arch must be one of {sorted(BACKBONES)}")
    return BACKBONES[arch](num_classes, width)


def r3d_parameter_count(width: int = 64, num_classes: int | None = None) -> int:
    """The number of parameters of :func:`r3d_18` (``width``, ``num_classes``), counted without
    building it (33,371,472 at width 64 with the 400-way head)."""
    params = 3 * width * 3 * 7 * 7 + 2 * width  # stem conv + BN
    inplanes = width
    for stage in range(4):
        planes = width * 2 ** stage
        for b in range(2):
            params += 27 * inplanes * planes + 2 * planes + 27 * planes * planes + 2 * planes
            if inplanes != planes:  # the 1x1x1 conv + BN shortcut of stages 2-4
                params += inplanes * planes + 2 * planes
            inplanes = planes
    if num_classes:
        params += inplanes * num_classes + num_classes
    return params


def block_output_shapes(width: int, frames: int, size: int) -> "OrderedDict[str, tuple[int, int, int, int]]":
    """(C, T, H, W) of every block output for a ``frames x size x size`` clip, without running it."""

    def down(n: int) -> int:  # a stride-2 conv with kernel 3 and padding 1 (or kernel 1, padding 0)
        return (n - 1) // 2 + 1

    t, s = frames, down(size)  # the stem halves H and W only
    shapes: OrderedDict[str, tuple[int, int, int, int]] = OrderedDict()
    for stage in range(1, 5):
        if stage > 1:
            t, s = down(t), down(s)
        c = width * 2 ** (stage - 1)
        for b in range(2):
            shapes[f"layer{stage}.{b}"] = (c, t, s, s)
    return shapes

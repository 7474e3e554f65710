"""Models: the 3D ResNet-18 backbone (torchvision-compatible names) and MoCo for video."""

from stdann.models.inputs import KINETICS_MEAN, KINETICS_STD, normalize
from stdann.models.r3d import BACKBONES, BLOCK_NAMES, BasicBlock, VideoResNet, block_output_shapes, build_backbone, r3d_18

__all__ = [
    "BACKBONES",
    "BLOCK_NAMES",
    "build_backbone",
    "BasicBlock",
    "VideoResNet",
    "block_output_shapes",
    "r3d_18",
    "normalize",
    "KINETICS_MEAN",
    "KINETICS_STD",
]

"""Models: the 3D ResNet-18 backbone (torchvision-compatible names) and MoCo for video."""

from stdann.models.inputs import KINETICS_MEAN, KINETICS_STD, normalize
from stdann.models.r3d import BLOCK_NAMES, BasicBlock, VideoResNet, block_output_shapes, r3d_18

__all__ = [
    "BLOCK_NAMES",
    "BasicBlock",
    "VideoResNet",
    "block_output_shapes",
    "r3d_18",
    "normalize",
    "KINETICS_MEAN",
    "KINETICS_STD",
]

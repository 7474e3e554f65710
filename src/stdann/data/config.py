"""Data section of the configuration (see stdann.config).

Defaults are the paper-scale values; the presets override ``frames`` and ``size``. Pixel speeds
are in pixels of the rendered clip (``size``) per clip frame; times are in seconds at ``fps``.
Direction convention: 0° = motion to the right, 90° = upward on the screen, counter-clockwise.

Which speeds can the network sample? (:func:`sampled_speeds`; docs/emergence.md, "Regime levers")
r3d_18's stem is a (3, 7, 7) convolution at stride (1, 2, 2); every later block uses 3×3×3
kernels, and layer2–4 each halve time and space. So a block sees the clip at spatial stride s
(layer1 2, layer2 4, layer3 8, layer4 16 px) and temporal stride τ = s / 2 (1, 2, 4, 8 frames):
between two of its time samples a pattern moving v px/frame moves v·τ/s = v/2 of the block's own
pixels, in every block. A 3×3×3 kernel reaches one pixel to either side between neighbouring
samples, so each block samples motion up to **v = 2 px/frame** (the stem, 7 px wide over 3
frames: up to 3 px/frame); faster motion aliases. A block with T_b = ceil(T/τ) time samples sees a
displacement of (T_b − 1)·v/2 of its pixels across the clip; it takes v ≥ 2/(T_b − 1) to move one
whole pixel. At 8 frames: layer1 ≥ 0.29, layer2 ≥ 0.67, layer3 (MT) ≥ 2 px/frame, layer4 holds one
time sample and cannot sample motion itself; at 16 frames: 0.13, 0.29, 0.67, 2. Slower motion is
still visible to the stem and layer1 (sub-pixel shifts change intensities) and can be passed on,
but the deeper blocks cannot measure it on their own grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

DEFAULT_IMAGES = (
    "astronaut", "brick", "camera", "cell", "chelsea", "coffee", "coins", "grass", "gravel",
    "hubble_deep_field", "ihc", "moon", "motorcycle_left", "retina", "rocket",
)
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ogv", ".3gp")


@dataclass
class DataConfig:
    source: str = "generated"  # generated | folder | cache
    root: str = ""  # video folder or cache directory (source folder/cache)
    frames: int = 16  # frames per clip (T)
    size: int = 112  # clip height and width after augmentation
    seed: int = 0  # fixes the generator's scene bank and the video order

    # -- sampling of clips and positive pairs ------------------------------------------
    frame_stride: int = 1  # keep every k-th frame (video sources and generator alike)
    fps: float = 25.0  # nominal frame rate of the generated video (turns seconds into frames)
    pair_min_gap: float = 0.0  # s, smallest start-time difference of the two clips of a pair
    pair_max_gap: float = 1.5  # s, largest start-time difference of the two clips of a pair
    pair_mode: str = "scene"  # scene: positives = same scene at two times | motion: generator only, same motion, different scenes
    crop_max_distance: float = 0.0  # max distance of the two views' crop centres (fraction of the frame); 0 = independent
    same_scene_repeats: int = 1  # generator: each scene appears this many times per batch, with different motions

    # -- augmentation (constant across the frames of a clip, vectorised on the device) ---
    augment: bool = True
    crop_scale_min: float = 0.2  # random resized crop, area fraction
    crop_scale_max: float = 1.0
    crop_ratio_min: float = 0.75  # aspect ratio range of the crop
    crop_ratio_max: float = 1.3333333
    color_jitter: float = 0.4  # brightness, contrast and saturation strength
    hue_jitter: float = 0.1
    color_jitter_prob: float = 0.8
    grayscale_prob: float = 0.2
    flip_prob: float = 0.5  # horizontal flip (mirrors the motion direction too)
    # shared: both views of a positive pair are flipped or neither (the pair keeps one motion);
    # independent: each view on its own — half the flipped pairs then tell MoCo that a clip and its
    # mirror image (opposite horizontal motion) are the same instance (docs/emergence.md §5)
    pair_flip: str = "shared"

    # -- built-in generated video ------------------------------------------------------
    num_scenes: int = 64  # distinct base textures in the bank
    images: list[str] = field(default_factory=lambda: list(DEFAULT_IMAGES))  # scikit-image sample names
    noise_texture_fraction: float = 0.25  # share of the bank that is coloured 1/f noise
    texture_size: int = 0  # side of each bank texture in pixels; 0 = 3 × size
    texture_scale_min: float = 0.75  # texture pixels per clip pixel (zoom of the scene)
    texture_scale_max: float = 1.5
    # camera translation speed, px of the clip per frame (log-uniform); objects move at speeds of the
    # same range. What each block can sample (module docstring, sampled_speeds): every block up to
    # 2 px/frame (the stem 3); across an 8-frame clip layer3 moves a whole pixel only from 2 px/frame.
    # Crops zoom the clip by up to 1/sqrt(crop_scale_min), so output speeds reach speed_max × that.
    speed_min: float = 0.5
    speed_max: float = 8.0
    velocity_drift: float = 1.0  # std of the heading drift (deg/frame) and of log-speed drift (%/frame)
    expansion_prob: float = 0.3  # probability of a zoom (expansion or contraction) component
    expansion_max: float = 0.01  # |d log zoom / frame|
    rotation_prob: float = 0.3  # probability of a rotation component
    rotation_max: float = 0.5  # |deg / frame|
    objects_max: int = 1  # foreground object slots per clip
    object_prob: float = 0.5  # probability that a slot holds an object
    object_size_min: float = 0.2  # object diameter, fraction of the frame
    object_size_max: float = 0.5
    object_edge: float = 0.08  # soft-edge width, fraction of the object radius
    brightness_drift: float = 0.01  # std of the log-brightness change per frame
    sensor_noise: float = 0.02  # largest std of the additive pixel noise (uniform per clip from 0)

    # -- video folders and caches --------------------------------------------------------
    extensions: list[str] = field(default_factory=lambda: list(VIDEO_EXTENSIONS))
    split: str = ""  # UCF101 split list name (e.g. trainlist01); "" = every video found
    resize: int = 0  # frames are resized to this height (4:3 centre crop); 0 = ceil(size × 8/7)
    min_side: int = 16  # videos with a smaller frame side are skipped
    max_side: int = 4096  # videos with a larger frame side are skipped (a decoded 8000x8000 frame is 192 MB)
    workers: int = 2  # decoding threads or processes (training: see worker_type) / processes (cache building)
    # pyav | torchcodec | auto (torchcodec where it loads, else PyAV): the folder source's decoder.
    # PyAV by default so that a run gives the same clips on every machine; the cache always uses PyAV
    decoder: str = "pyav"
    worker_type: str = "thread"  # thread: a pool in the training process | process: DataLoader worker processes
    prefetch: int = 2  # batches prepared ahead by the background workers (folder/cache sources)
    cache_windows: int = 4  # windows cached per video (evenly spread over its length)

    def resize_hw(self) -> tuple[int, int]:
        """(height, width) of decoded/cached frames: 4:3, short side ``resize``."""
        h = self.resize if self.resize > 0 else -(-self.size * 8 // 7)
        return int(h), int(round(h * 4 / 3))


# r3d_18's cumulative (temporal, spatial) strides at each stage's output (stdann.models.r3d; a test
# checks them against the model's block output shapes)
BLOCK_STRIDES = {"stem": (1, 2), "layer1": (1, 2), "layer2": (2, 4), "layer3": (4, 8), "layer4": (8, 16)}


def sampled_speeds(frames: int) -> dict[str, tuple[float, float]]:
    """Per stage: (slowest, fastest) camera speed in px per clip frame that the stage's own grid
    samples in a clip of ``frames`` frames (module docstring): fastest = one of its pixels per time
    sample for a 3×3×3 kernel (the stem's 7-wide kernel at full resolution: 3 px/frame); slowest = one
    of its pixels across the clip (inf when the stage holds a single time sample)."""
    out = {}
    for stage, (tau, s) in BLOCK_STRIDES.items():
        if stage == "stem":  # its kernel sees the input frames at full resolution, 3 px to either side
            out[stage] = (1.0 / max(frames - 1, 1), 3.0)
            continue
        samples = math.ceil(frames / tau)
        out[stage] = (s / (tau * (samples - 1)) if samples > 1 else math.inf, s / tau)
    return out

"""The built-in video generator: shapes, ranges, determinism, motion ground truth and coverage."""

import numpy as np
import pytest
import torch

from stdann.data.config import DataConfig
from stdann.data.generator import VideoGenerator
from stdann.data.textures import load_image, skimage_data_dir


@pytest.fixture(scope="module")
def gen():
    return VideoGenerator(DataConfig(frames=6, size=32, num_scenes=12))


def _shift(a, b):
    """Integer translation of image b relative to a by phase correlation (dx right, dy down)."""
    A, B = torch.fft.fft2(a), torch.fft.fft2(b)
    cross = B * A.conj()
    r = torch.fft.ifft2(cross / (cross.abs() + 1e-9)).real
    dy, dx = divmod(int(r.argmax()), r.shape[1])
    if dy > r.shape[0] // 2:
        dy -= r.shape[0]
    if dx > r.shape[1] // 2:
        dx -= r.shape[1]
    return dx, dy


def test_scene_bank_reads_skimage_images():
    assert skimage_data_dir() is not None
    img = load_image("astronaut")
    assert img.shape == (512, 512, 3) and img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1


@pytest.mark.parametrize("frames,h,w", [(6, 32, 32), (3, 20, 36), (1, 17, 17)])
def test_generate_shape_dtype_range(gen, frames, h, w):
    x = gen.generate(5, frames=frames, height=h, width=w, seed=1)
    assert x.shape == (5, 3, frames, h, w) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert float(x.std()) > 0.02  # not blank


def test_seed_determinism(gen):
    a = gen.generate(4, seed=7)
    b = gen.generate(4, seed=7)
    c = gen.generate(4, seed=8)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # a fresh generator with the same config renders the same clips
    g2 = VideoGenerator(DataConfig(frames=6, size=32, num_scenes=12))
    assert torch.equal(g2.generate(4, seed=7), a)
    p1 = gen.pairs(4, seed=3)
    p2 = gen.pairs(4, seed=3)
    assert torch.equal(p1[0], p2[0]) and torch.equal(p1[1], p2[1])


@pytest.mark.parametrize("direction,expected", [(0, (3, 0)), (90, (0, -3)), (180, (-3, 0)), (270, (0, 3)), (45, (2, -2))])
def test_direction_convention(direction, expected):
    cfg = DataConfig(frames=3, size=48, num_scenes=4)
    g = VideoGenerator(cfg)
    x, m = g.generate(1, directions=direction, speeds=3.0 if direction % 90 == 0 else 2.0 * 2**0.5, objects=False, noise=False, seed=2, return_motion=True)
    f = x[0].mean(0)
    assert _shift(f[0], f[1]) == expected
    assert abs(((float(m["direction"][0]) - direction + 180) % 360) - 180) < 1e-3


def test_ground_truth_matches_image_motion():
    cfg = DataConfig(frames=4, size=48, num_scenes=6, expansion_prob=0, rotation_prob=0, velocity_drift=0, speed_min=1.5, speed_max=4)
    g = VideoGenerator(cfg)
    x, m = g.generate(12, seed=5, objects=False, noise=False, return_motion=True)
    ok = 0
    for i in range(12):
        f = x[i].mean(0)
        dx, dy = _shift(f[0], f[3])  # 3 frames apart
        th = np.deg2rad(float(m["direction"][i]))
        ex, ey = 3 * float(m["speed"][i]) * np.cos(th), -3 * float(m["speed"][i]) * np.sin(th)
        ok += abs(dx - ex) <= 1.01 and abs(dy - ey) <= 1.01
    assert ok >= 10  # phase correlation may fail on a nearly uniform texture


def test_motion_covers_all_directions_and_speeds(gen):
    _, _, m1, m2 = gen.pairs(400, seed=11, return_motion=True)
    d = torch.cat([m1["direction"], m2["direction"]]).numpy()
    counts = np.bincount((((d + 22.5) % 360) // 45).astype(int), minlength=8)
    assert counts.min() > 0.5 * counts.mean()  # every 45° sector populated
    x, m = gen.generate(400, seed=2, return_motion=True)
    s = m["speed"].numpy()
    assert s.min() >= 0.3 and s.max() <= 12 and np.median(s) > 1.0
    assert {"direction", "speed", "expansion", "rotation", "scene", "objects"} <= set(m)
    assert (m["objects"] > 0).any() and (m["objects"] == 0).any()


def test_pairs_flip_mirrors_direction():
    cfg = DataConfig(frames=4, size=32, num_scenes=4, flip_prob=1.0, crop_scale_min=1, crop_scale_max=1, crop_ratio_min=1, crop_ratio_max=1, velocity_drift=0)
    g = VideoGenerator(cfg)
    cfg2 = DataConfig(frames=4, size=32, num_scenes=4, flip_prob=0.0, crop_scale_min=1, crop_scale_max=1, crop_ratio_min=1, crop_ratio_max=1, velocity_drift=0)
    g2 = VideoGenerator(cfg2)
    _, _, m, _ = g.pairs(8, seed=1, return_motion=True)
    _, _, m0, _ = g2.pairs(8, seed=1, return_motion=True)
    diff = (m["direction"] - (180 - m0["direction"])) % 360
    assert torch.all((diff < 1e-2) | (diff > 360 - 1e-2))


def test_same_scene_repeats_and_motion_mode():
    g = VideoGenerator(DataConfig(frames=2, size=16, num_scenes=10, same_scene_repeats=4))
    _, _, m1, m2 = g.pairs(8, seed=0, return_motion=True)
    sc = m1["scene"].view(2, 4)
    assert torch.all(sc == sc[:, :1])
    g = VideoGenerator(DataConfig(frames=2, size=16, num_scenes=10, pair_mode="motion"))
    _, _, m1, m2 = g.pairs(8, seed=0, return_motion=True)
    assert torch.all(m1["scene"] != m2["scene"])


def _pair_directions(pair_flip):
    # square crops: an anisotropic crop would also rotate the motion direction in output pixels
    cfg = DataConfig(frames=4, size=32, num_scenes=4, flip_prob=0.5, velocity_drift=0, pair_flip=pair_flip,
                     crop_ratio_min=1.0, crop_ratio_max=1.0)
    _, _, m1, m2 = VideoGenerator(cfg).pairs(64, seed=3, return_motion=True)
    d = (m1["direction"] - m2["direction"]) % 360
    return np.minimum(d.numpy(), 360 - d.numpy())


def test_shared_flips_keep_one_motion_per_pair():
    # Without heading drift the two views of a pair move the same way unless one of them is
    # mirrored; shared flips (the default) never mirror only one view.
    assert DataConfig().pair_flip == "shared"
    assert _pair_directions("shared").max() < 1e-2


def test_independent_flips_mirror_one_view_of_some_pairs():
    d = _pair_directions("independent")
    mirrored = d > 1e-2
    assert 0.25 < mirrored.mean() < 0.75  # P(exactly one view flipped) = 0.5


def test_unknown_pair_flip_mode_is_refused():
    with pytest.raises(ValueError, match="pair_flip"):
        VideoGenerator(DataConfig(frames=2, size=16, num_scenes=2, pair_flip="sometimes")).pairs(2)

"""MoCo's regime levers: motion-only hard negatives (same scene, place, time and appearance, other
camera directions) and time-reversed negatives — the clips, the logits they add, the training step."""

import math

import pytest
import torch
import torch.nn.functional as F

from stdann.config import ConfigError, load_config
from stdann.data.config import DataConfig
from stdann.data.generator import VideoGenerator
from stdann.data.loader import build_pair_source
from stdann.models.moco import MoCo
from stdann.training.step import build_step
from stdann.training.setup import step_settings

STILL = dict(frames=4, size=32, num_scenes=4, sensor_noise=0.0, velocity_drift=0.0)


def test_negatives_share_the_middle_frame_and_move_elsewhere():
    k = 3
    g = VideoGenerator(DataConfig(**STILL))
    x1, x2, n1, n2, m1, m2 = g.pairs(4, seed=1, return_motion=True, motion_negatives=k)
    assert n1.shape == n2.shape == (4, k, 3, 4, 32, 32)
    mid = STILL["frames"] // 2
    # same scene, place, crop, flip, colour and objects: the middle frames agree (up to rendering rounding)
    assert (n1[:, :, :, mid] - x1[:, None, :, mid]).abs().max() < 0.05
    assert (n2[:, :, :, mid] - x2[:, None, :, mid]).abs().max() < 0.05
    # ... the other frames do not: the camera moves another way
    assert (n1[:, :, :, 0] - x1[:, None, :, 0]).abs().mean() > 0.02
    # k directions spread round the circle: each at least 360°/(2(k+1)) from the positive's and from each other
    d = m1["negative_direction"]
    gap = (d - m1["direction"][:, None]) % 360
    assert torch.all(torch.minimum(gap, 360 - gap) >= 180 / (k + 1) - 1)
    between = (d[:, 1:] - d[:, :-1]) % 360
    assert torch.all(between >= 360 / (k + 1) - 1)  # adjacent negatives differ by about one slot


def test_without_negatives_the_clips_are_unchanged():
    g = VideoGenerator(DataConfig(**STILL))
    a1, a2 = g.pairs(3, seed=5)
    b1, b2, _, _ = g.pairs(3, seed=5, motion_negatives=2)
    assert torch.equal(a1, b1) and torch.equal(a2, b2)


def tiny(**kw):
    torch.manual_seed(0)
    return MoCo(width=4, dim=16, hidden_dim=32, queue_size=8, momentum=0.9, temperature=0.5, **kw)


def test_several_hard_negatives_per_query_enter_the_softmax():
    m = tiny()
    q = torch.randn(3, 16)
    k = F.normalize(torch.randn(3, 16), dim=1)
    h = F.normalize(torch.randn(3, 4, 16), dim=2)
    loss, _ = m.info_nce(q, k, h)
    qn = F.normalize(q, dim=1)
    expected = 0.0
    for i in range(3):
        pos = math.exp(float(qn[i] @ k[i]) / 0.5)
        neg = sum(math.exp(float(qn[i] @ h[i, j]) / 0.5) for j in range(4))
        neg += sum(math.exp(float(qn[i] @ m.queue[:, j]) / 0.5) for j in range(8))
        expected += -math.log(pos / (pos + neg)) / 3
    assert float(loss) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("reverse", [False, True])
def test_forward_counts_reverse_and_motion_negatives_as_logits(monkeypatch, reverse):
    m = tiny(reverse_negatives=reverse)
    seen = []
    real = MoCo.info_nce

    def spy(self, q, k, hard_neg=None):
        seen.append(None if hard_neg is None else tuple(hard_neg.shape))
        return real(self, q, k, hard_neg)

    monkeypatch.setattr(MoCo, "info_nce", spy)
    x1, x2 = torch.randn(2, 3, 4, 32, 32), torch.randn(2, 3, 4, 32, 32)
    negs = (torch.randn(2, 3, 3, 4, 32, 32), torch.randn(2, 3, 3, 4, 32, 32))
    out = m(x1, x2, negatives=negs)
    assert seen == [(2, 3 + reverse, 16)] * 2 and m.hard_negatives_per_query(3) == 3 + reverse
    assert torch.isfinite(out["loss"]) and out["keys"].shape == (4, 16)  # only the positives' keys are queued
    seen.clear()
    m(x1, x2)
    assert seen == ([(2, 1, 16)] * 2 if reverse else [None, None])


def test_a_negative_equal_to_the_positive_costs_what_the_formula_says():
    # the time-reversed clip of a still clip is the clip itself: its key is the positive's, and the
    # loss is that of a doubled positive logit
    m = tiny(reverse_negatives=True)
    q = torch.randn(2, 16)
    k = F.normalize(torch.randn(2, 16), dim=1)
    with_copy, _ = m.info_nce(q, k, k)
    plain, _ = m.info_nce(q, k)
    qn = F.normalize(q, dim=1)
    pos = torch.exp((qn * k).sum(1) / 0.5)
    queue = torch.exp(qn @ m.queue / 0.5).sum(1)
    expected = (-torch.log(pos / (2 * pos + queue))).mean()
    assert float(with_copy) == pytest.approx(float(expected), rel=1e-5) and float(with_copy) > float(plain)


def test_one_training_step_with_motion_negatives():
    cfg = load_config("smoke", overrides=["moco.motion_negatives=2", "topography.alpha=0", "train.threads=1"])
    dev = torch.device("cpu")
    step = build_step(cfg, dev, step_settings(cfg, dev), build_pair_source(cfg.data, cfg.optim.batch_size, dev, seed=0))
    x1, x2, more = step.inputs(0)
    n1, n2 = more["negatives"]
    assert n1.shape == (cfg.optim.batch_size, 2, *x1.shape[1:]) and n2.shape == n1.shape
    out = step(0)
    assert torch.isfinite(out.loss)


def test_motion_negatives_need_the_generator(tmp_path):
    with pytest.raises(ConfigError, match="moco.motion_negatives = 2 is not valid: it must be 0 for data.source=folder"):
        load_config("smoke", overrides=["moco.motion_negatives=2", "data.source=folder", f"data.root={tmp_path}"])


@pytest.mark.parametrize("tapped", [True, False])
def test_asymmetric_moco_trains_with_the_spatial_loss_on_the_query_view(tapped):
    """moco.symmetric = false (MoCo v2, the paper preset): a step with α > 0 through the unit tap
    (the trainer's path) and through the plain loop gives one spatial loss from view 1's clips, and
    the queue advances by one key per pair."""
    from stdann.topography import init_model_positions, sheets_from_config
    from stdann.training.step import plain_settings

    cfg = load_config("smoke", overrides=["moco.symmetric=false", "topography.alpha=0.5", "train.threads=1"])
    dev = torch.device("cpu")
    positions = init_model_positions(width=cfg.model.width, frames=cfg.data.frames, size=cfg.data.size,
                                     blocks=list(cfg.topography.blocks), sheets=sheets_from_config(cfg.topography),
                                     seed=0, n_windows=cfg.topography.n_windows)
    settings = step_settings(cfg, dev) if tapped else plain_settings()
    step = build_step(cfg, dev, settings, build_pair_source(cfg.data, cfg.optim.batch_size, dev, seed=0),
                      positions=positions)
    assert (step.tap is not None) == tapped
    out = step(0)
    assert torch.isfinite(out.loss) and out.sl and float(out.sl_total) > 0
    assert float(out.loss) == pytest.approx(float(out.task) + 0.5 * float(out.sl_total), rel=1e-5)
    assert int(step.model.queue_ptr) == cfg.optim.batch_size

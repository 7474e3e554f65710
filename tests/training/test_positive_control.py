"""The supervised positive control (``train.objective``): labels from the generator's ground truth,
its loss, one training step of every objective with and without the spatial loss, its log columns,
resume, refusals, and the command line from `stdann train` to `stdann analyze`."""

import csv
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from stdann.config import ConfigError, load_config
from stdann.data.config import BLOCK_STRIDES, DataConfig, sampled_speeds
from stdann.data.generator import VideoGenerator
from stdann.data.loader import build_pair_source
from stdann.models.motion_classifier import MotionClassifier, direction_bin, motion_targets, speed_bin
from stdann.models.r3d import block_output_shapes
from stdann.runs.checkpoint import load_backbone
from stdann.topography import init_model_positions, sheets_from_config
from stdann.training.step import build_model, build_step, plain_settings, task_chance
from stdann.training.setup import step_settings
from stdann.training.trainer import train

SMOKE = ["train.log_every=1", "train.ckpt_every=3", "optim.max_steps=4", "train.deterministic=true",
         "train.threads=1", "train.eval_pairs=8"]


def smoke(*extra):
    return load_config("smoke", overrides=SMOKE + list(extra))


def rows(run):
    with open(Path(run) / "logs" / "train.csv") as f:
        return list(csv.DictReader(f))


# -- labels ---------------------------------------------------------------------------------------------------
def test_direction_bins_are_centred_on_multiples_of_the_bin_width():
    d = torch.tensor([0.0, 11.2, 11.3, 22.5, 90.0, 180.0, 348.7, 348.8, 359.9, -22.5, 720.0, 45.0])
    assert direction_bin(d, 16).tolist() == [0, 0, 1, 1, 4, 8, 15, 0, 0, 15, 0, 2]
    assert direction_bin(torch.tensor([44.9, 45.1, 314.9, 315.1]), 4).tolist() == [0, 1, 3, 0]


def test_speed_bins_are_log_spaced_with_edge_bins_for_outliers():
    s = torch.tensor([0.1, 0.7, 1.5, 3.0, 5.0, 100.0])
    assert speed_bin(s, 0.5, 8.0, 4).tolist() == [0, 0, 1, 2, 3, 3]  # edges 0.5, 1, 2, 4, 8


def test_targets_have_one_column_per_head():
    m = {"direction": torch.tensor([0.0, 90.0, 200.0]), "speed": torch.tensor([0.6, 1.1, 7.0])}
    assert motion_targets(m, 16).tolist() == [[0], [4], [9]]
    assert motion_targets(m, 16, 4, (0.5, 8.0)).tolist() == [[0, 0], [4, 1], [9, 3]]


def _shift(a: torch.Tensor, b: torch.Tensor) -> tuple[int, int]:
    """Integer displacement (right, down) of image ``b`` relative to ``a`` (phase correlation)."""
    w = torch.hann_window(a.shape[-1], periodic=False)
    win = w[:, None] * w[None, :]
    fa, fb = torch.fft.fft2((a - a.mean()) * win), torch.fft.fft2((b - b.mean()) * win)
    r = torch.fft.ifft2(fb * fa.conj() / (fb * fa.conj()).abs().clamp_min(1e-9)).real
    h, w_ = r.shape
    dy, dx = divmod(int(r.argmax()), w_)
    return (dx - w_ if dx > w_ // 2 else dx), (dy - h if dy > h // 2 else dy)


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_labels_follow_the_pixels_of_flipped_and_unflipped_clips(flip):
    # Flips stay on for the supervised objective: the generator mirrors the reported direction with
    # the pixels. Here the motion measured in the pixels (phase correlation between the first and
    # the last frame of each clip) must agree with the label, flipped or not.
    cfg = DataConfig(frames=4, size=48, num_scenes=8, flip_prob=flip, crop_scale_min=1, crop_scale_max=1,
                     crop_ratio_min=1, crop_ratio_max=1, velocity_drift=0, speed_min=3, speed_max=3, expansion_prob=0,
                     rotation_prob=0, objects_max=0, sensor_noise=0, brightness_drift=0, color_jitter_prob=0,
                     grayscale_prob=0, noise_texture_fraction=0)
    x1, _, m1, _ = VideoGenerator(cfg).pairs(16, seed=3, return_motion=True)
    labels = motion_targets(m1, 16)[:, 0]
    for clip, direction, label in zip(x1, m1["direction"], labels):
        gray = clip.mean(0)
        dx, dy = _shift(gray[0], gray[-1])
        seen = math.degrees(math.atan2(-dy, dx)) % 360  # 90° = upward on the screen
        err = abs((seen - float(direction) + 180) % 360 - 180)
        assert err < 10, (seen, float(direction))  # 9 px shifts: integer peaks resolve ~6°
        assert int(direction_bin(torch.tensor([seen]), 16)) in {(int(label) + k) % 16 for k in (-1, 0, 1)}


def test_flipped_labels_are_the_mirrored_directions():
    kw = dict(frames=4, size=32, num_scenes=4, crop_scale_min=1, crop_scale_max=1, crop_ratio_min=1, crop_ratio_max=1,
              velocity_drift=0)
    _, _, m, _ = VideoGenerator(DataConfig(flip_prob=1.0, **kw)).pairs(16, seed=1, return_motion=True)
    _, _, m0, _ = VideoGenerator(DataConfig(flip_prob=1e-12, **kw)).pairs(16, seed=1, return_motion=True)
    assert torch.equal(motion_targets(m, 16)[:, 0], direction_bin(180.0 - m0["direction"], 16))


# -- the loss ----------------------------------------------------------------------------------------------------
def test_loss_is_the_cross_entropy_of_both_views_and_heads():
    torch.manual_seed(0)
    model = MotionClassifier(width=4, direction_bins=8, speed_bins=3)
    logits = torch.randn(5, 11)
    y = torch.tensor([[0, 2], [7, 0], [3, 1], [3, 1], [5, 2]])
    loss, hits, pred = model.task(logits, y)
    expected = F.cross_entropy(logits[:, :8], y[:, 0]) + F.cross_entropy(logits[:, 8:], y[:, 1])
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    assert torch.equal(pred[:, 0], logits[:, :8].argmax(1)) and torch.equal(pred[:, 1], logits[:, 8:].argmax(1))
    assert torch.equal(hits, (pred == y).float())
    assert model.chance_loss() == pytest.approx(math.log(8) + math.log(3))
    # uniform logits score exactly chance
    flat, _, _ = model.task(torch.zeros(5, 11), y)
    assert float(flat) == pytest.approx(model.chance_loss(), rel=1e-6)


def test_both_objectives_start_from_the_same_backbone_and_keep_its_names():
    dev = torch.device("cpu")
    moco = build_model(smoke(), dev, plain_settings())
    sup = build_model(smoke("train.objective=supervised_direction"), dev, plain_settings())
    a, b = moco.backbone.state_dict(), sup.backbone.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert "encoder_q.backbone.stem.0.weight" in sup.state_dict()
    assert not any(k.startswith("encoder_q.backbone.fc") for k in sup.state_dict())


def test_chance_levels_of_each_objective():
    assert task_chance(smoke("train.objective=supervised_direction")) == pytest.approx((math.log(16), 1 / 16))
    assert task_chance(smoke("train.objective=supervised_direction_speed", "train.speed_bins=3")) == \
        pytest.approx((math.log(16) + math.log(3), 1 / 16))
    k = smoke().moco.queue_size
    assert task_chance(smoke("moco.motion_negatives=2", "moco.reverse_negatives=true")) == \
        pytest.approx((math.log(k + 4), 1 / (k + 4)))


# -- one step of every objective ------------------------------------------------------------------------------
@pytest.mark.parametrize("objective", ["moco", "supervised_direction", "supervised_direction_speed"])
@pytest.mark.parametrize("alpha", [0.0, 0.25])
def test_one_step_of_each_objective_with_and_without_the_spatial_loss(objective, alpha):
    cfg = smoke(f"train.objective={objective}", f"topography.alpha={alpha}")
    dev = torch.device("cpu")
    positions = None
    if alpha > 0:
        positions = init_model_positions(width=cfg.model.width, frames=cfg.data.frames, size=cfg.data.size,
                                         blocks=list(cfg.topography.blocks), sheets=sheets_from_config(cfg.topography),
                                         seed=0, n_windows=cfg.topography.n_windows)
    source = build_pair_source(cfg.data, cfg.optim.batch_size, dev, seed=0)
    step = build_step(cfg, dev, step_settings(cfg, dev), source, positions=positions)
    before = {k: v.clone() for k, v in step.model.encoder_q.state_dict().items()}
    out = step(0)
    assert torch.isfinite(out.loss) and torch.isfinite(out.task) and 0 <= float(out.acc) <= 1
    assert bool(out.sl) == (alpha > 0)
    assert float(out.loss) == pytest.approx(float(out.task) + alpha * float(out.sl_total), rel=1e-5)
    after = step.model.encoder_q.state_dict()
    for part in ("backbone.stem.0.weight", "head"):
        changed = [k for k in before if k.startswith(part) and not torch.equal(before[k], after[k])]
        assert changed, f"{part} did not learn"


def test_adamw_is_an_optimiser_choice_and_part_of_the_run_structure(tmp_path):
    dev = torch.device("cpu")
    cfg = smoke("train.objective=supervised_direction", "optim.optimizer=adamw", "optim.lr=0.008", "topography.alpha=0")
    step = build_step(cfg, dev, step_settings(cfg, dev), build_pair_source(cfg.data, cfg.optim.batch_size, dev, seed=0))
    assert isinstance(step.optimizer, torch.optim.AdamW)
    assert step.optimizer.param_groups[0]["lr"] == pytest.approx(0.008 * cfg.optim.batch_size / 256)
    assert torch.isfinite(step(0).loss)
    with pytest.raises(ConfigError, match="optim.optimizer.*one of sgd, adamw"):
        smoke("optim.optimizer=adam")
    train(cfg, tmp_path / "r", progress=False, stop_at_step=3)
    with pytest.raises(Exception, match="optim.optimizer: checkpoint 'adamw', now 'sgd'"):
        train(smoke("train.objective=supervised_direction", "topography.alpha=0"), tmp_path / "r", resume=True,
              progress=False)


# -- the trainer ---------------------------------------------------------------------------------------------------
def test_trainer_logs_accuracy_and_chance_and_a_heldout_direction_check(tmp_path):
    train(smoke("train.objective=supervised_direction_speed", "topography.alpha=0.25"), tmp_path / "r", progress=False)
    log = rows(tmp_path / "r")
    last = log[-1]
    assert float(last["loss_task_chance"]) == pytest.approx(math.log(16) + math.log(4))
    assert float(last["acc_chance"]) == pytest.approx(1 / 16) and 0 <= float(last["acc"]) <= 1
    assert 0 <= float(last["heldout_top1"]) <= 1 and float(last["heldout_chance_top1"]) == pytest.approx(1 / 16)
    assert float(last["heldout_chance_loss"]) == pytest.approx(math.log(64))
    assert math.isfinite(float(last["heldout_loss"])) and 0 <= float(last["heldout_speed_top1"]) <= 1
    assert "heldout_infonce" not in last  # no InfoNCE in a supervised run's log
    assert math.isnan(float(log[0]["heldout_top1"]))  # the check runs at the end (train.eval_every = 0)
    model, cfg = load_backbone(tmp_path / "r", "last")
    assert cfg.train.objective == "supervised_direction_speed" and model.stem[0].weight.shape[0] == cfg.model.width


def test_supervised_resume_repeats_the_uninterrupted_run(tmp_path):
    cfg = smoke("train.objective=supervised_direction", "topography.alpha=0.25")
    train(cfg, tmp_path / "full", progress=False)
    assert train(cfg, tmp_path / "split", progress=False, stop_at_step=2).status == "stopped"
    train(cfg, tmp_path / "split", resume=True, progress=False)
    a, b = rows(tmp_path / "full"), rows(tmp_path / "split")
    assert [r["step"] for r in a] == [r["step"] for r in b] == ["1", "2", "3", "4"]
    for ra, rb in zip(a, b):
        assert float(ra["loss"]) == pytest.approx(float(rb["loss"]), abs=1e-5)


def test_a_changed_objective_is_refused_on_resume(tmp_path):
    train(smoke("train.objective=supervised_direction"), tmp_path / "r", progress=False, stop_at_step=3)
    with pytest.raises(Exception, match="train.objective: checkpoint 'supervised_direction', now 'moco'"):
        train(smoke(), tmp_path / "r", resume=True, progress=False)


def test_init_from_a_run_of_the_other_objective_takes_its_backbone(tmp_path):
    train(smoke(), tmp_path / "moco", progress=False)
    train(smoke("train.objective=supervised_direction", "optim.max_steps=1", f"train.init_from={tmp_path / 'moco'}",
                "optim.lr=1e-12"), tmp_path / "sup", progress=False)
    a, _ = load_backbone(tmp_path / "moco", "last")
    b, _ = load_backbone(tmp_path / "sup", "last")
    assert torch.allclose(a.stem[0].weight, b.stem[0].weight, atol=1e-6)


# -- refusals ---------------------------------------------------------------------------------------------------
def test_supervised_objective_is_refused_for_video_folders(tmp_path):
    with pytest.raises(ConfigError, match=r"train.objective = '?supervised_direction'? is not valid: it must be moco for "
                                          r"data.source=folder .*no such labels"):
        load_config("smoke", overrides=["train.objective=supervised_direction", "data.source=folder",
                                        f"data.root={tmp_path}"])
    with pytest.raises(ConfigError, match="one of moco, supervised_direction, supervised_direction_speed"):
        load_config("smoke", overrides=["train.objective=labels"])


# -- the speeds each block samples ---------------------------------------------------------------------------------
def test_block_strides_are_the_models():
    frames, size = 16, 64
    shapes = block_output_shapes(8, frames, size)
    for stage, (tau, s) in BLOCK_STRIDES.items():
        if stage == "stem":
            continue
        _, t, h, _ = shapes[f"{stage}.1"]
        assert (frames // t, size // h) == (tau, s)


def test_sampled_speeds_of_an_8_and_a_16_frame_clip():
    s8, s16 = sampled_speeds(8), sampled_speeds(16)
    assert all(hi == 2.0 for k, (lo, hi) in s8.items() if k != "stem") and s8["stem"][1] == 3.0
    assert s8["layer3"][0] == pytest.approx(2.0) and s8["layer4"][0] == math.inf  # one time sample
    assert s16["layer3"][0] == pytest.approx(2 / 3) and s16["layer4"][0] == pytest.approx(2.0)
    assert s8["layer1"][0] == pytest.approx(2 / 7)


# -- the command line ----------------------------------------------------------------------------------------------
@pytest.mark.heavy
def test_cli_trains_the_positive_control_and_analyze_reads_it(tmp_path):
    run = tmp_path / "run"
    env_cmd = [sys.executable, "-m", "stdann"]
    r = subprocess.run(env_cmd + ["train", "--preset", "smoke", "--steps", "3", "--out", str(run), "--no-progress",
                                  "--set", "train.objective=supervised_direction", "--set", "train.threads=1",
                                  "--set", "train.eval_pairs=8"], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "supervised_direction cross-entropy" in r.stdout and "held-out direction top-1" in r.stdout
    assert "InfoNCE" not in r.stdout
    r = subprocess.run(env_cmd + ["analyze", str(run), "--blocks", "layer4.1", "--no-figures", "--no-progress",
                                  "--device", "cpu", "--set", "ephys.n_directions=8"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert (run / "metrics.json").is_file()

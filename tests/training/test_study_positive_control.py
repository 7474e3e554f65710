"""The positive control as conditions of `stdann study` and `stdann emergence`, and the study's
regime options on the command line."""

import argparse
import json
import math

import pytest
import torch

from stdann.cli import study as study_cli
from stdann.config import load_config
from stdann.orchestration.protocol import POSITIVE_CONTROL_RECIPE, ProtocolPlan, run_protocol
from stdann.orchestration.study import EMERGENCE_VARIANTS, emergence_conditions

SMOKE = ["optim.max_steps=6", "topography.pretrain_fraction=0.5", "train.eval_pairs=8", "ephys.bn_calibration_clips=8",
         "train.threads=1", "ephys.blocks=[layer4.1]"]


def parse(*argv):
    p = argparse.ArgumentParser()
    sub = p.add_subparsers()
    study_cli.register(sub)
    return p.parse_args(["study", "--out", "/tmp/x", *argv])


def test_positive_control_option_defaults_to_without_and_with_the_spatial_loss():
    cfg = load_config("smoke", overrides=["topography.alpha=0.5"])
    assert study_cli.positive_alphas(parse().positive_control, cfg) == ()
    assert study_cli.positive_alphas(parse("--positive-control").positive_control, cfg) == (0.0, 0.5)
    assert study_cli.positive_alphas(parse("--positive-control", "0,1").positive_control, cfg) == (0.0, 1.0)


def test_background_child_gets_the_same_plan():
    args = parse("--positive-control", "0,0.25", "--frames", "16", "--preset", "smoke")
    args.overrides = [*args.overrides, f"data.frames={args.frames}"]  # as run() folds it
    argv = study_cli._argv_of(args)
    again = parse(*argv[2:])
    assert again.positive_control == "0,0.25" and again.positive_objective == "supervised_direction"
    assert "data.frames=16" in again.overrides
    # every option reaches the child (a new option forgotten in _argv_of fails here)
    full = parse("--alphas", "0,1", "--seeds", "3", "--no-spatial-only", "--positive-control", "--positive-objective",
                 "supervised_direction", "--lever", "moco.reverse_negatives=true", "--lever-alphas", "0.25",
                 "--untrained-seeds", "4", "--blocks", "layer3.1", "--no-readout", "--no-progress", "--background",
                 "--preset", "smoke", "--set", "optim.max_steps=4", "--debug")
    child = parse(*study_cli._argv_of(full)[2:])
    skip = {"background", "out"}
    assert {k: v for k, v in vars(child).items() if k not in skip} == {k: v for k, v in vars(full).items() if k not in skip}


def test_plan_refuses_a_moco_positive_control():
    with pytest.raises(ValueError, match="positive control's objective"):
        ProtocolPlan(positive_control=(0.0,), positive_objective="moco")
    with pytest.raises(ValueError, match="positive-control α"):
        ProtocolPlan(positive_control=(-1.0,))


def test_emergence_offers_the_positive_control_and_the_levers():
    for name in ("supervised", "supervised_fast", "motion_negatives", "frames16"):
        assert name in EMERGENCE_VARIANTS
    cond = emergence_conditions(["supervised_fast"], alpha=0.25)[0]
    cfg = load_config("smoke", overrides=cond.overrides)
    assert cfg.train.objective == "supervised_direction" and (cfg.data.speed_min, cfg.data.speed_max) == (1.5, 3.0)
    assert cfg.topography.alpha == 0.25 and cfg.optim.optimizer == "adamw"


@pytest.mark.heavy
def test_study_runs_the_positive_control_with_and_without_the_spatial_loss(tmp_path):
    cfg = load_config("smoke", overrides=SMOKE)
    plan = ProtocolPlan(alphas=(0.0,), seeds=1, spatial_only=False, positive_control=(0.0, 0.25))
    s = run_protocol(cfg, tmp_path, plan, progress=False, readout=False, log=lambda *_: None)
    names = sorted(c["name"] for c in s["conditions"])
    assert names == ["alpha_0", "supervised_direction_alpha_0", "supervised_direction_alpha_0.25", "untrained"]
    seed = tmp_path / "seed0"
    for c in s["conditions"]:
        if c["name"].startswith("supervised_direction"):
            assert c["mode"] == "positive_control"
            task = c["task"]
            assert task["objective"] == "supervised_direction" and task["chance_loss"] == pytest.approx(math.log(16))
            assert task["heldout_chance_top1"] == pytest.approx(1 / 16) and 0 <= task["heldout_top1"] <= 1
            assert "trained" in c["metrics"]["layer4.1"] and "untrained" in c["metrics"]["layer4.1"]
            conf = (seed / c["name"] / "config.yaml").read_text()
            assert "objective: supervised_direction" in conf and str(seed / "supervised_direction_pretrain") in conf
    # the positive control starts from the same untrained backbone as MoCo (same seed)
    a = (seed / "pretrain" / "checkpoints" / "init.pt")
    b = (seed / "supervised_direction_pretrain" / "checkpoints" / "init.pt")
    wa, wb = torch.load(a, weights_only=True)["backbone"], torch.load(b, weights_only=True)["backbone"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    on_disk = json.loads((tmp_path / "study.json").read_text())
    assert on_disk["protocol"]["positive_control"] == [0.0, 0.25]
    assert on_disk["protocol"]["positive_overrides"] == list(POSITIVE_CONTROL_RECIPE)
    assert "optimizer: adamw" in (seed / "supervised_direction_alpha_0.25" / "config.yaml").read_text()
    assert sorted(c["name"] for c in on_disk["conditions"]) == names


def test_lever_option_and_its_background_command_line():
    cfg = load_config("smoke", overrides=["topography.alpha=0.5"])
    args = parse("--lever", "moco.reverse_negatives=true", "--preset", "smoke")
    again = parse(*study_cli._argv_of(args)[2:])
    assert again.lever == ["moco.reverse_negatives=true"] and again.lever_alphas is None
    with pytest.raises(ValueError, match="lever needs both"):
        ProtocolPlan(lever=("moco.reverse_negatives=true",))
    assert parse("--lever-alphas", "0,2.5").lever_alphas == [0.0, 2.5]
    assert cfg.topography.alpha == 0.5


@pytest.mark.heavy
def test_study_runs_a_lever_beside_moco(tmp_path):
    cfg = load_config("smoke", overrides=SMOKE)
    plan = ProtocolPlan(alphas=(0.0,), seeds=1, spatial_only=False, lever=("moco.reverse_negatives=true",),
                        lever_alphas=(0.25,))
    s = run_protocol(cfg, tmp_path, plan, progress=False, readout=False, log=lambda *_: None)
    lever = [c for c in s["conditions"] if c["mode"] == "lever"]
    assert [c["name"] for c in lever] == ["lever_alpha_0.25"] and "layer4.1" in lever[0]["metrics"]
    conf = (tmp_path / "seed0" / "lever_alpha_0.25" / "config.yaml").read_text()
    assert "reverse_negatives: true" in conf and str(tmp_path / "seed0" / "lever_pretrain") in conf
    assert "reverse_negatives: true" not in (tmp_path / "seed0" / "alpha_0" / "config.yaml").read_text()
    assert json.loads((tmp_path / "study.json").read_text())["protocol"]["lever"] == ["moco.reverse_negatives=true"]

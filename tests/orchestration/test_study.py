"""Trained-vs-untrained comparison machinery (emergence, sweep) at smoke scale.

These tests do not ask the science to come out a certain way; they fail if the comparison is
wired wrongly (wrong checkpoint, BatchNorm state leaking into the comparison, lost results).
"""

import copy
import json
import os

import pytest
import torch
from lock_helpers import hold_in_other_process

import stdann.orchestration.runner as R
from stdann.config import load_config
from stdann.ephys.analyze import MEASUREMENT_VERSION
from stdann.ephys.recording import calibrate_batchnorm
from stdann.models import r3d_18
from stdann.orchestration.measure import evaluate_network
from stdann.orchestration.study import emergence_conditions, run_study, study_plan, sweep_conditions
from stdann.runs.errors import FolderInUse
from stdann.topography import init_model_positions

FAST = {"n_directions": 8, "spatial_frequencies": [0.04, 0.08], "temporal_frequencies": [0.0625, 0.125],
        "n_phases": 1, "bn_calibration_clips": 16}


@pytest.fixture(scope="module")
def setup():
    cfg = load_config("smoke")
    torch.manual_seed(0)
    net = r3d_18(None, cfg.model.width).eval()
    pos = init_model_positions(cfg.model.width, cfg.data.frames, cfg.data.size, ["layer3.1"], seed=0, n_windows=500)
    return cfg, net, pos


def test_same_network_same_numbers_whatever_its_batchnorm_state(setup):
    cfg, net, pos = setup
    a = evaluate_network(copy.deepcopy(net), cfg, pos, ["layer3.1"], "cpu", FAST)
    def perturbed():
        other = copy.deepcopy(net)
        for m in other.modules():  # a different stored BN state (e.g. from training batches)
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.add_(0.05)
                m.running_var.mul_(1.5)
        return other

    b = evaluate_network(perturbed(), cfg, pos, ["layer3.1"], "cpu", FAST)
    assert a["layer3.1"]["dsi_median"] == pytest.approx(b["layer3.1"]["dsi_median"], abs=1e-5)
    # without re-estimation the BN state does change the numbers (so the calibration is doing work)
    c = evaluate_network(perturbed(), cfg, pos, ["layer3.1"], "cpu", dict(FAST, bn_calibration_clips=0))
    assert c["layer3.1"].get("dsi_median") != pytest.approx(a["layer3.1"]["dsi_median"], abs=1e-4)


def test_calibration_sets_running_stats_to_the_batch_average():
    torch.manual_seed(0)
    bn_net = torch.nn.Sequential(torch.nn.Conv3d(3, 4, 1), torch.nn.BatchNorm3d(4))
    clips = [torch.rand(2, 3, 2, 4, 4) for _ in range(3)]
    calibrate_batchnorm(bn_net, clips, normalize_input=False)
    feats = torch.cat([bn_net[0](c) for c in clips])
    torch.testing.assert_close(bn_net[1].running_mean, feats.mean(dim=(0, 2, 3, 4)), rtol=1e-4, atol=1e-5)
    assert not bn_net.training


def test_study_stores_trained_and_untrained_from_the_right_checkpoints(tmp_path, monkeypatch):
    base = load_config("smoke", overrides=["optim.max_steps=4", "train.snapshot_every=2"])
    study = run_study("emergence", base, emergence_conditions(["paper"]), tmp_path / "em", seeds=1, progress=False,
                      blocks=["layer3.1"], readout=False, snapshots=True, ephys_overrides=FAST)
    (entry,) = study["conditions"]
    assert [s["step"] for s in entry["snapshots"]] == [2, 4]
    m = entry["metrics"]["layer3.1"]
    # the last snapshot is the final network: its numbers equal the "trained" entry
    assert entry["snapshots"][-1]["metrics"]["layer3.1"]["dsi_median"] == pytest.approx(m["trained"]["dsi_median"])
    assert m["trained"]["dsi_median"] != pytest.approx(m["untrained"]["dsi_median"], abs=1e-6)
    saved = json.loads((tmp_path / "em" / "study.json").read_text())
    assert saved["conditions"][0]["metrics"]["layer3.1"]["untrained"]["dsi_median"] == pytest.approx(m["untrained"]["dsi_median"])
    # the verdict is decided when the study is made and stored with it (reports only show it)
    verdict = m["trained_vs_untrained"]["dsi_median"]["verdict"]
    lo, hi = m["trained"]["dsi_ci"]
    ulo, uhi = m["untrained"]["dsi_ci"]
    assert verdict == ("above" if lo > uhi else "below" if hi < ulo else "not_distinguishable")
    assert "direction_bias" in m["trained"] and "above_chance" in m["trained"]["direction_bias"]
    assert saved["batchnorm"].startswith("eval; running statistics re-estimated on the same 16")
    assert (tmp_path / "em" / "figures" / "emergence_layer3.1.png").is_file()
    # rerunning skips the finished condition (no retraining, same numbers)
    again = run_study("emergence", base, emergence_conditions(["paper"]), tmp_path / "em", seeds=1, progress=False,
                      blocks=["layer3.1"], readout=False, snapshots=True, ephys_overrides=FAST)
    assert again["conditions"][0]["metrics"] == study["conditions"][0]["metrics"]
    assert entry["measurement"] == MEASUREMENT_VERSION
    # an entry measured under older rules is measured again on resume, without training again
    cached = tmp_path / "em" / "paper" / "seed0" / "condition.json"
    old = json.loads(cached.read_text())
    old["measurement"] = MEASUREMENT_VERSION - 1
    old["metrics"]["layer3.1"]["trained"]["dsi_median"] = -1.0
    cached.write_text(json.dumps(old))
    import stdann.orchestration.recipe as T

    monkeypatch.setattr(T, "train", lambda *a, **k: pytest.fail("a finished run was trained again"))
    remeasured = run_study("emergence", base, emergence_conditions(["paper"]), tmp_path / "em", seeds=1,
                           progress=False, blocks=["layer3.1"], readout=False, snapshots=True, ephys_overrides=FAST)
    assert remeasured["conditions"][0]["metrics"] == study["conditions"][0]["metrics"]
    assert json.loads(cached.read_text())["measurement"] == MEASUREMENT_VERSION


def test_unknown_variant_is_refused_with_the_list():
    with pytest.raises(ValueError, match="did you mean 'reverse'"):
        emergence_conditions(["revers"])
    names = [c.name for c in sweep_conditions([0, 0.25], spatial_only=True)]
    assert names == ["alpha_0", "alpha_0.25", "spatial_only"]


def test_interrupted_training_stops_the_study_without_results(tmp_path, monkeypatch):
    import stdann.orchestration.recipe as T  # the stages call the trainer through the recipe
    from stdann.orchestration.recipe import RecipeInterrupted

    real = T.train
    monkeypatch.setattr(T, "train", lambda *a, **k: real(*a, **{**k, "stop_at_step": 2}))
    base = load_config("smoke", overrides=["optim.max_steps=4"])
    with pytest.raises(RecipeInterrupted, match="run the same command again"):
        run_study("emergence", base, emergence_conditions(["paper"]), tmp_path / "em", progress=False,
                  blocks=["layer3.1"], readout=False, ephys_overrides=FAST)
    assert not (tmp_path / "em" / "paper" / "seed0" / "condition.json").exists()
    monkeypatch.setattr(T, "train", real)  # resuming finishes the run and then evaluates it
    study = run_study("emergence", base, emergence_conditions(["paper"]), tmp_path / "em", progress=False,
                      blocks=["layer3.1"], readout=False, ephys_overrides=FAST)
    assert study["conditions"][0]["metrics"]["layer3.1"]["trained"]["dsi_median"] is not None


def test_one_process_per_study_folder(tmp_path, monkeypatch):
    """The study folder is locked by run_study; a second process is refused with a one-line error. The
    lock is an OS lock (no pid file), so a holder that died never leaves a stale lock behind, and a live
    holder is never taken for a dead one (the old pid lock treated os.kill's PermissionError as 'dead')."""
    def kill_says_permission_denied(pid, sig):  # what os.kill(pid, 0) says of another user's live process
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", kill_says_permission_denied)
    with hold_in_other_process(tmp_path) as holder:
        with pytest.raises(FolderInUse, match="in use by another stdann process"):
            run_study("sweep", load_config("smoke"), sweep_conditions([0.0]), tmp_path, progress=False,
                      blocks=["layer3.1"], readout=False, ephys_overrides=FAST)
        monkeypatch.undo()
        holder.kill()  # kill -9: the kernel drops its lock
        holder.wait()
    seen = []
    monkeypatch.setattr(R, "_run_plan", lambda *a, **k: seen.append(a) or {"kind": "sweep"})
    assert run_study("sweep", load_config("smoke"), [], tmp_path)["kind"] == "sweep" and seen


def test_sweep_untrained_rows_are_planned_and_a_held_study_folder_is_refused(tmp_path, capsys):
    """`stdann sweep --untrained`: the untrained network's rows are part of the plan (one study.json
    write per condition, no second pass over the folder), and a study folder another process holds
    is refused before any training."""
    from stdann.cli.main import main

    plan = study_plan("sweep", load_config("smoke"), sweep_conditions([0.0, 0.5]), tmp_path, seeds=2, untrained_rows=True)
    assert [(r.name, r.seed, r.control_after) for r in plan.conditions] == [
        ("alpha_0", 0, True), ("alpha_0", 1, True), ("alpha_0.5", 0, False), ("alpha_0.5", 1, False)]
    assert plan.conditions[2].make.__closure__ is not None  # each row makes its own run folder
    out = tmp_path / "sweep"
    with hold_in_other_process(out) as holder:
        assert main(["sweep", "--preset", "smoke", "--out", str(out), "--untrained", "--alphas", "0"]) == 2
    err = capsys.readouterr().err
    assert "in use by another stdann process" in err and str(holder.pid) in err
    assert not (out / "study.json").exists() and not (out / "alpha_0").exists()


def test_a_later_first_seed_adds_seeds_without_repeating_the_first(tmp_path):
    """`--first-seed K`: seeds K … K+N-1, each with its own initialisation and data seed and folder, the
    same configurations a study of K+N seeds gives its last N."""
    base = load_config("smoke")
    later = study_plan("emergence", base, emergence_conditions(["paper"]), tmp_path, seeds=2, first_seed=1)
    whole = study_plan("emergence", base, emergence_conditions(["paper"]), tmp_path, seeds=3)
    assert [r.seed for r in later.conditions] == [1, 2]
    assert [r.cfg for r in later.conditions] == [r.cfg for r in whole.conditions[1:]]
    assert later.conditions[0].cfg.train.seed == 1 and later.conditions[0].cfg.data.seed == base.data.seed + 1


def test_every_emergence_variant_starts_from_the_papers_moco():
    """The demo preset turns time-reversed negatives on; `paper` must still be the paper's MoCo, and
    `reverse` differ from it by the reversed negatives alone."""
    base = load_config("demo")
    assert base.moco.reverse_negatives
    paper, reverse, mneg = (base.with_overrides(c.overrides) for c in emergence_conditions(["paper", "reverse", "motion_negatives"]))
    assert not paper.moco.reverse_negatives and paper.moco.motion_negatives == 0
    assert reverse.moco.reverse_negatives and reverse.with_overrides(["moco.reverse_negatives=false"]) == paper
    assert mneg.moco.motion_negatives == 4 and not mneg.moco.reverse_negatives


def test_emergence_judges_its_runs_against_the_untrained_range(tmp_path):
    """`--untrained-seeds` in sweep / emergence: the reference's seed-0 network is the run's own
    untrained control (same weights, same measurement), and every row carries its range verdict."""
    base = load_config("smoke", overrides=["optim.max_steps=2"])
    study = run_study("emergence", base, emergence_conditions(["paper"]), tmp_path / "em", seeds=1, progress=False,
                      blocks=["layer3.1"], readout=False, ephys_overrides=FAST, untrained_seeds=2)
    (entry,) = study["conditions"]
    ref = study["untrained_reference"]["blocks"]["layer3.1"]["dsi_median"]
    assert len(ref) == 2 and ref[0] == pytest.approx(entry["metrics"]["layer3.1"]["untrained"]["dsi_median"])
    verdict = entry["range_verdicts"]["layer3.1"]["dsi_median"]
    assert verdict["verdict"] in ("above_range", "below_range", "inside_range") and verdict["range"] == [min(ref), max(ref)]


def test_rows_of_another_clip_size_get_no_range_verdict():
    from stdann.orchestration.runner import _geometry

    base = load_config("smoke")
    paper, frames16 = (base.with_overrides(c.overrides) for c in emergence_conditions(["paper", "frames16"]))
    assert _geometry(paper) == _geometry(base) and _geometry(frames16) != _geometry(base)

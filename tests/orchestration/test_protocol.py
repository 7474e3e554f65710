"""`stdann study`: the whole protocol at smoke scale (shared pretraining, swaps, α runs, spatial only)."""

import json
import math
import subprocess
import sys
import time

import pytest

from stdann.cli.study import background_command
from stdann.config import load_config
from stdann.orchestration.protocol import ProtocolPlan, run_protocol
from stdann.orchestration.recipe import step_split
from stdann.reports.markdown import study_markdown

pytestmark = pytest.mark.heavy  # a shared study fixture of several seconds

SMOKE = ["optim.max_steps=6", "topography.pretrain_fraction=0.5", "train.eval_pairs=8", "ephys.bn_calibration_clips=8"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("study")
    cfg = load_config("smoke", overrides=SMOKE)
    plan = ProtocolPlan(alphas=(0.0, 0.25), seeds=1, spatial_only=True)
    return out, cfg, plan, run_protocol(cfg, out, plan, progress=False, readout=False, log=lambda *_: None)


def test_every_condition_is_measured_beside_the_untrained_network(study):
    out, cfg, plan, s = study
    names = sorted(c["name"] for c in s["conditions"])
    assert names == ["alpha_0", "alpha_0.25", "spatial_only", "untrained"]
    for c in s["conditions"]:
        for block in cfg.ephys.blocks:
            entry = c["metrics"][block]
            assert "trained" in entry and "untrained" in entry
    on_disk = json.loads((out / "study.json").read_text())
    assert sorted(c["name"] for c in on_disk["conditions"]) == names
    assert (on_disk["protocol"]["pretrain_steps"], on_disk["protocol"]["joint_steps"]) == step_split(cfg) == (3, 3)


def test_pretraining_and_positions_are_shared_by_the_alpha_runs(study):
    out, cfg, plan, s = study
    seed = out / "seed0"
    pre_last = (seed / "pretrain" / "checkpoints" / "last.pt").stat().st_mtime
    for a in ("alpha_0", "alpha_0.25"):
        conf = (seed / a / "config.yaml").read_text()
        assert str(seed / "pretrain") in conf  # train.init_from
        for block in cfg.topography.blocks:
            assert (seed / a / "positions" / f"{block}.npz").read_bytes() == \
                (seed / "swap" / "positions" / f"{block}.npz").read_bytes()
    assert (seed / "pretrain" / "checkpoints" / "last.pt").stat().st_mtime == pre_last
    # the swaps are the recipe's own stage: one swap.json schema, naming the network swapped on
    swap = json.loads((seed / "swap" / "swap.json").read_text())
    assert swap["from"] == str(seed / "pretrain") and set(swap) >= {"steps", "blocks", "history"}
    # one evaluator: condition.json keeps the untrained summaries that study.json leaves out
    cond = json.loads((seed / "alpha_0.25" / "condition.json").read_text())
    assert cond["complete"] and cond["untrained_summary"] and "untrained_summary" not in s["conditions"][0]
    # the untrained network of every run of the seed is the pretraining's step-0 network
    init = (seed / "pretrain" / "checkpoints" / "init.pt")
    assert init.is_file() and (seed / "alpha_0.25" / "checkpoints" / "init.pt").is_file()


def test_task_is_reported_against_chance(study):
    out, cfg, plan, s = study
    task = next(c for c in s["conditions"] if c["name"] == "alpha_0.25")["task"]
    assert task["chance_infonce"] == pytest.approx(math.log(cfg.moco.queue_size + 1))
    assert task["nats_below_chance"] == pytest.approx(task["chance_infonce"] - task["final_infonce"])
    assert 0.0 <= task["heldout_top1"] <= 1.0
    assert task["heldout_chance_infonce"] == pytest.approx(math.log(8))


def test_running_again_continues_without_training_anew(study):
    out, cfg, plan, s = study
    before = {p: p.stat().st_mtime for p in out.glob("seed0/*/checkpoints/last.pt")}
    again = run_protocol(cfg, out, plan, progress=False, readout=False, log=lambda *_: None)
    assert {p: p.stat().st_mtime for p in out.glob("seed0/*/checkpoints/last.pt")} == before
    key = lambda c: (c["name"], c["seed"])  # noqa: E731
    assert sorted(map(key, again["conditions"])) == sorted(map(key, s["conditions"]))


def test_a_damaged_condition_record_is_measured_again(study):
    """condition.json caches a condition's measurements: cut short (a full disk, a killed copy), the next
    run measures that condition again instead of stopping on it, and trains nothing anew."""
    out, cfg, plan, s = study
    record = out / "seed0" / "alpha_0" / "condition.json"
    before = {p: p.stat().st_mtime for p in out.glob("seed0/*/checkpoints/last.pt")}
    record.write_text(record.read_text()[:40])
    again = run_protocol(cfg, out, plan, progress=False, readout=False, log=lambda *_: None)
    assert json.loads(record.read_text())["complete"] is True
    assert {p: p.stat().st_mtime for p in out.glob("seed0/*/checkpoints/last.pt")} == before
    assert sorted(c["name"] for c in again["conditions"]) == sorted(c["name"] for c in s["conditions"])


def test_plan_is_validated():
    with pytest.raises(ValueError, match="α values"):
        ProtocolPlan(alphas=(-1.0,))
    with pytest.raises(ValueError, match="seeds"):
        ProtocolPlan(seeds=0)
    with pytest.raises(ValueError, match="pretrain_fraction"):
        step_split(load_config("smoke", overrides=["topography.pretrain_fraction=1.0"]))


def test_background_command_drops_the_flag_and_the_progress_bars():
    cmd = background_command(["study", "--out", "x", "--background", "--seeds", "1"])
    assert cmd[:3] == [sys.executable, "-m", "stdann"]
    assert "--background" not in cmd and "--no-progress" in cmd and cmd[3:7] == ["study", "--out", "x", "--seeds"]


@pytest.mark.slow
def test_background_study_runs_to_its_end(tmp_path):
    out = tmp_path / "bg"
    args = ["study", "--preset", "smoke", "--out", str(out), "--seeds", "1", "--alphas", "0", "--no-spatial-only",
            "--no-readout", "--background"] + [x for o in SMOKE for x in ("--set", o)]
    res = subprocess.run([sys.executable, "-m", "stdann", *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "background" in res.stdout
    deadline = time.time() + 600
    while time.time() < deadline and not (out / "report.html").is_file():
        time.sleep(2)
    assert (out / "report.html").is_file(), (out / "study.log").read_text()[-2000:]


def test_the_untrained_reference_range_judges_every_condition(tmp_path):
    """--untrained-seeds: the networks seeds 0 and 1 start from, measured as the controls are, written
    once (a resumed study reads them back) and used for a range verdict on every row."""
    cfg = load_config("smoke", overrides=SMOKE)
    plan = ProtocolPlan(alphas=(0.0,), seeds=1, spatial_only=False, untrained_seeds=2, blocks=["layer3.1"])
    s = run_protocol(cfg, tmp_path, plan, progress=False, readout=False, log=lambda *_: None)
    ref = s["untrained_reference"]
    values = ref["blocks"]["layer3.1"]["vector_strength_blank_median"]
    assert ref["seeds"] == 2 and len(values) == 2 and all(v is not None for v in values)
    alpha0 = next(c for c in s["conditions"] if c["name"] == "alpha_0")
    untrained = next(c for c in s["conditions"] if c["name"] == "untrained")
    # seed 0's untrained network is one of the reference: it lies inside the range
    assert untrained["metrics"]["layer3.1"]["trained"]["vector_strength_blank_median"] == pytest.approx(values[0])
    verdict = untrained["range_verdicts"]["layer3.1"]["vector_strength_blank_median"]
    assert verdict["verdict"] == "inside_range" and verdict["range"] == [min(values), max(values)]
    assert alpha0["range_verdicts"]["layer3.1"]["dsi_median"]["verdict"] in ("above_range", "below_range", "inside_range")
    written = json.loads((tmp_path / "untrained_reference.json").read_text())
    assert written["blocks"] == ref["blocks"]
    (tmp_path / "untrained_reference.json").write_text(json.dumps({**written, "blocks": {"layer3.1": {
        k: [9.0, 9.5] for k in written["blocks"]["layer3.1"]}}}))  # a resumed study reads the file back
    again = run_protocol(cfg, tmp_path, plan, progress=False, readout=False, log=lambda *_: None)
    assert again["untrained_reference"]["blocks"]["layer3.1"]["dsi_median"] == [9.0, 9.5]
    assert next(c for c in again["conditions"] if c["name"] == "alpha_0")["range_verdicts"]["layer3.1"][
        "dsi_median"]["verdict"] == "below_range"
    text = study_markdown(again)
    assert "against 2 untrained networks" in text and "below the range" in text

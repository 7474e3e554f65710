"""The training loop: run folder, resume equivalence, refusals, divergence, signals, DDP."""

import csv
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from stdann.config import load_config
from stdann.models.moco import build_moco
from stdann.runs.checkpoint import CheckpointError, load_backbone, safe_load
from stdann.runs.errors import RunExistsError
from stdann.training.schedule import lr_at
from stdann.training.trainer import TrainingDiverged, train

SMOKE = ["train.log_every=1", "train.ckpt_every=3", "optim.max_steps=6", "train.deterministic=true"]


def cfg_for(*extra):
    return load_config("smoke", overrides=SMOKE + list(extra))


def losses(run):
    with open(Path(run) / "logs" / "train.csv") as f:
        return [(int(float(r["step"])), float(r["loss"]), float(r["sl_total"])) for r in csv.DictReader(f)]


def test_run_folder_contents_and_backbone(tmp_path):
    res = train(cfg_for("topography.alpha=0.25"), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert res.status == "finished" and res.step == 6
    for rel in ("config.yaml", "run.json", "checkpoints/last.pt", "checkpoints/init.pt", "logs/train.csv",
                "positions/layer3.1.npz"):
        assert (run / rel).is_file(), rel
    rows = losses(run)
    assert [r[0] for r in rows] == list(range(1, 7))
    assert all(r[2] > 0 for r in rows)  # spatial loss logged and active
    model, cfg = load_backbone(run, "last")
    init, _ = load_backbone(run, "init")
    assert cfg.model.width == 8 and not model.training
    assert not torch.equal(model.stem[0].weight, init.stem[0].weight)  # training changed the weights


def test_resume_after_stop_repeats_the_uninterrupted_run(tmp_path):
    train(cfg_for("topography.alpha=0.25"), tmp_path / "full", progress=False)
    part = train(cfg_for("topography.alpha=0.25"), tmp_path / "split", progress=False, stop_at_step=4)
    assert part.status == "stopped" and part.step == 4
    assert safe_load(tmp_path / "split" / "checkpoints" / "last.pt")["step"] == 4
    train(cfg_for("topography.alpha=0.25"), tmp_path / "split", resume=True, progress=False)
    a, b = losses(tmp_path / "full"), losses(tmp_path / "split")
    assert [r[0] for r in b] == list(range(1, 7))
    for (sa, la, sla), (sb, lb, slb) in zip(a, b):
        assert sa == sb and la == pytest.approx(lb, abs=1e-5) and sla == pytest.approx(slb, abs=1e-5)


def test_refuses_existing_run_unless_resume_or_overwrite(tmp_path):
    train(cfg_for("topography.alpha=0"), tmp_path / "r", progress=False)
    with pytest.raises(RunExistsError, match="--resume.*--overwrite"):
        train(cfg_for("topography.alpha=0"), tmp_path / "r", progress=False)
    res = train(cfg_for("topography.alpha=0", "optim.max_steps=2"), tmp_path / "r", overwrite=True, progress=False)
    assert res.step == 2


def test_incompatible_checkpoint_says_what_differs(tmp_path):
    train(cfg_for("optim.max_steps=3"), tmp_path / "r", progress=False, stop_at_step=2)
    with pytest.raises(CheckpointError, match="model.width: checkpoint 8, now 16"):
        train(cfg_for("model.width=16"), tmp_path / "r", resume=True, progress=False)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    def poison(blocks, step):
        return {"poison": torch.tensor(float("nan")) if step == 4 else torch.zeros(())}

    with pytest.raises(TrainingDiverged, match="at step 5"):
        train(cfg_for("topography.alpha=0"), tmp_path / "r", progress=False, extra_losses=[poison])
    assert safe_load(tmp_path / "r" / "checkpoints" / "last.pt")["step"] == 3


def test_checkpoint_loading_is_safe(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    bad = tmp_path / "evil.pt"
    with open(bad, "wb") as f:
        pickle.dump({"model": Evil()}, f)
    with pytest.raises(CheckpointError, match="weights_only"):
        safe_load(bad)
    (tmp_path / "trunc.pt").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(CheckpointError, match="truncated"):
        safe_load(tmp_path / "trunc.pt")


def _cli(*args, **kw):
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "stdann", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, **kw)


@pytest.mark.heavy
def test_sigterm_checkpoints_then_resume_finishes(tmp_path):
    run = tmp_path / "r"
    p = _cli("train", "--preset", "smoke", "--steps", "400", "--out", str(run), "--no-progress",
             "--set", "train.ckpt_every=1000", "--set", "train.log_every=1")
    log = run / "logs" / "train.csv"
    deadline = time.time() + 120
    while time.time() < deadline and (not log.is_file() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.2)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGTERM, out  # scripts can tell an interrupted run from a finished one
    assert "interrupted" in out
    step = safe_load(run / "checkpoints" / "last.pt")["step"]
    assert 2 <= step < 400
    q = _cli("train", "--out", str(run), "--resume", "--no-progress", "--set", "optim.max_steps=" + str(step + 2))
    out, _ = q.communicate(timeout=120)
    assert q.returncode == 0, out
    assert f"finished at step {step + 2}" in out


@pytest.mark.heavy
def test_cli_refuses_existing_out_with_clear_error(tmp_path):
    run = tmp_path / "r"
    assert _cli("train", "--preset", "smoke", "--steps", "1", "--out", str(run), "--no-progress").wait(timeout=120) == 0
    p = _cli("train", "--preset", "smoke", "--steps", "1", "--out", str(run), "--no-progress")
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 2 and "already holds a run" in out and "Traceback" not in out
    p = _cli("train", "--preset", "smoke", "--out", str(tmp_path / "x"), "--set", "optim.batchsize=4")
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 2 and "optim.batch_size" in out


@pytest.mark.heavy
def test_ddp_two_cpu_processes(tmp_path):
    run = tmp_path / "ddp"
    import socket

    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
                "--master-port", str(port)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(torchrun + ["-m", "stdann", "train", "--preset", "smoke", "--steps", "3", "--out", str(run),
                                   "--no-progress", "--set", "topography.alpha=0.25", "--set", "train.log_every=1"],
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    import json

    info = json.loads((run / "run.json").read_text())
    assert info["world_size"] == 2 and info["status"] == "finished" and info["step"] == 3
    ck = safe_load(run / "checkpoints" / "last.pt")
    # the queue received both views' keys from both ranks: 3 steps x 2 views x global batch 8
    assert int(ck["model"]["queue_ptr"]) == (3 * 2 * 8) % ck["model"]["queue"].shape[1]
    assert len(losses(run)) == 3  # rank 0 logs alone


def test_log_lines_carry_interval_means_and_the_heldout_check(tmp_path):
    cfg = load_config("smoke", overrides=["train.log_every=3", "train.ckpt_every=6", "optim.max_steps=6",
                                          "train.eval_every=6", "train.eval_pairs=8"])
    train(cfg, tmp_path / "run", progress=False)
    with open(tmp_path / "run" / "logs" / "train.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [3, 6]
    assert rows[0]["heldout_top1"] == "" or rows[0]["heldout_top1"] == "nan"  # no check at step 3
    last = rows[-1]
    assert 0.0 <= float(last["heldout_top1"]) <= 1.0
    assert float(last["heldout_chance_infonce"]) == pytest.approx(math.log(8))
    assert float(last["loss_task_chance"]) == pytest.approx(math.log(cfg.moco.queue_size + 1))


def test_schedule_decays_to_its_floor():
    assert lr_at(0, 100, 1.0, 0) == pytest.approx(1.0)
    assert lr_at(100, 100, 1.0, 0, final_fraction=0.1) == pytest.approx(0.1)
    assert lr_at(50, 100, 1.0, 0, final_fraction=0.1) == pytest.approx(0.55)
    assert all(lr_at(s, 100, 0.3, 10, final_fraction=1.0) == pytest.approx(0.3) for s in range(10, 101))


def test_head_batchnorm_is_a_structural_choice():
    m = build_moco(load_config("smoke", overrides=["moco.head_bn=true"]))
    assert any(isinstance(x, torch.nn.BatchNorm1d) for x in m.encoder_q.head)
    assert not any(isinstance(x, torch.nn.BatchNorm1d) for x in build_moco(load_config("smoke")).encoder_q.head)


def test_checkpoints_by_the_clock_between_step_checkpoints(tmp_path):
    """train.ckpt_minutes: a checkpoint when that much time has passed, whatever train.ckpt_every says
    (a preempted job loses minutes, not up to ckpt_every steps)."""
    def poison(blocks, step):
        return {"poison": torch.tensor(float("nan")) if step == 4 else torch.zeros(())}

    with pytest.raises(TrainingDiverged):
        train(cfg_for("train.ckpt_every=1000", "train.ckpt_minutes=0.00001", "topography.alpha=0"),
              tmp_path / "clock", progress=False, extra_losses=[poison])
    assert safe_load(tmp_path / "clock" / "checkpoints" / "last.pt")["step"] == 4
    with pytest.raises(TrainingDiverged):
        train(cfg_for("train.ckpt_every=1000", "topography.alpha=0"), tmp_path / "steps", progress=False,
              extra_losses=[poison])
    assert not (tmp_path / "steps" / "checkpoints" / "last.pt").exists()


def test_resume_on_another_number_of_processes_is_refused(tmp_path):
    run = tmp_path / "r"
    train(cfg_for("optim.max_steps=2"), run, progress=False)
    ckpt = safe_load(run / "checkpoints" / "last.pt")
    ckpt["world_size"] = 2
    torch.save(ckpt, run / "checkpoints" / "last.pt")
    with pytest.raises(CheckpointError, match="trained on 2.*nproc-per-node 2"):
        train(cfg_for("optim.max_steps=4"), run, resume=True, progress=False)

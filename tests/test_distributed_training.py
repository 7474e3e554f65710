"""Two ranks (gloo) training together:

* a stop asked for by one rank only, a non-finite loss on one rank only and a failed checkpoint write
  on the main process each stop *both* ranks at the same step (before, one rank left the loop and the
  other waited in the next collective);
* spatial-only training (task loss off) runs under DDP and keeps the ranks' weights identical;
* the spatial loss of two ranks is the loss of their global batch, with its gradient.
"""

import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from stdann import distributed
from stdann.config import load_config
from stdann.data.loader import build_pair_source
from stdann.runs.checkpoint import safe_load
from stdann.runs.folder import RunFolder
from stdann.topography import SpatialLoss, init_positions
from stdann.training.benchmark import make_positions
from stdann.training.step import build_step
from stdann.training.setup import step_settings
from stdann.training.trainer import train

WORLD = 2
SMOKE = ["train.log_every=1", "optim.max_steps=6", "topography.alpha=0.25", "train.threads=1"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _join(rank: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(WORLD),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    distributed.init_distributed("cpu")


def _spawn(worker, *args, timeout: float = 600) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=worker, args=(r, port, q, *args)) for r in range(WORLD)]
    for p in procs:
        p.start()
    try:
        results = dict(q.get(timeout=timeout) for _ in procs)
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    return results


def _outcome(fn):
    try:
        res = fn()
        return (res.status, res.step)
    except Exception as e:  # noqa: BLE001 - the test compares what each rank saw
        return (type(e).__name__, str(e))


def _stop_worker(rank, port, q, root):
    _join(rank, port)
    root = Path(root)
    out = {}
    cfg = load_config("smoke", overrides=SMOKE + ["train.ckpt_every=100"])
    # rank 1 alone asks to stop after step 3 (as a SIGTERM or its own time budget would)
    out["stop"] = _outcome(lambda: train(cfg, root / "stop", progress=False, stop_at_step=3 if rank == 1 else None))

    def poison(blocks, step):  # the loss of rank 1 alone becomes NaN at step 4
        return {"poison": torch.tensor(float("nan") if rank == 1 and step == 3 else 0.0)}

    cfg2 = load_config("smoke", overrides=SMOKE + ["train.ckpt_every=2"])
    out["nan"] = _outcome(lambda: train(cfg2, root / "nan", progress=False, extra_losses=[poison]))

    real_save = RunFolder.save_checkpoint

    def failing_save(self, which, ckpt):  # the main process cannot write its checkpoint
        if which == "last":
            raise OSError("No space left on device (planted)")
        return real_save(self, which, ckpt)

    if rank == 0:
        RunFolder.save_checkpoint = failing_save
    out["save"] = _outcome(lambda: train(cfg2, root / "save", progress=False))
    RunFolder.save_checkpoint = real_save
    q.put((rank, out))


@pytest.mark.heavy
def test_stop_decisions_are_taken_by_both_ranks_at_the_same_step(tmp_path):
    r = _spawn(_stop_worker, str(tmp_path))
    assert r[0]["stop"] == r[1]["stop"] == ("stopped", 3)
    assert safe_load(tmp_path / "stop" / "checkpoints" / "last.pt")["step"] == 3  # written at the agreed step

    assert [r[k]["nan"][0] for k in (0, 1)] == ["TrainingDiverged", "TrainingDiverged"]
    assert "at step 4" in r[0]["nan"][1] and "at step 4" in r[1]["nan"][1]
    assert safe_load(tmp_path / "nan" / "checkpoints" / "last.pt")["step"] == 2  # the last good one is kept

    assert r[0]["save"] == ("OSError", "No space left on device (planted)")
    assert r[1]["save"][0] == "RuntimeError" and "rank 0" in r[1]["save"][1]


def _mismatch_worker(rank, port, q, root):
    """Rank 1 cannot see the positions that rank 0 reads from the run folder (as on a node without
    the shared filesystem): it makes its own, and both ranks must refuse before the first step."""
    _join(rank, port)
    cfg = load_config("smoke", overrides=SMOKE)
    if rank == 1:
        RunFolder.load_positions = lambda self, *a, **k: None
    out = {"train": _outcome(lambda: train(cfg, Path(root) / "run", progress=False))}
    q.put((rank, out))


@pytest.mark.heavy
def test_ranks_that_read_different_positions_refuse_to_train(tmp_path):
    from stdann.topography import init_model_positions, sheets_from_config

    cfg = load_config("smoke", overrides=SMOKE)
    other = init_model_positions(width=cfg.model.width, frames=cfg.data.frames, size=cfg.data.size,
                                 blocks=list(cfg.topography.blocks), sheets=sheets_from_config(cfg.topography),
                                 seed=cfg.topography.position_seed + 1, n_windows=cfg.topography.n_windows)
    folder = RunFolder(tmp_path / "run")
    with folder.hold():
        folder.ensure_run().save_positions(other)  # as `stdann positions optimize` leaves them
    r = _spawn(_mismatch_worker, str(tmp_path))
    for rank in (0, 1):
        kind, msg = r[rank]["train"]
        assert kind == "RankMismatchError", (rank, r[rank])
        assert "the positions on rank 1" in msg and "filesystem that every node mounts" in msg
    assert not (tmp_path / "run" / "checkpoints" / "last.pt").exists()  # no step was taken


def _ddp_worker(rank, port, q, root):
    _join(rank, port)
    out = {}
    # 1. spatial-only training (task loss off) through the trainer, to its end
    cfg = load_config("smoke", overrides=SMOKE + ["topography.spatial_only=true", "topography.alpha=1.0",
                                                   "train.ckpt_every=3", "optim.max_steps=4"])
    out["spatial_only_train"] = _outcome(lambda: train(cfg, Path(root) / "spatial", progress=False))

    # 2. the same step, built as the trainer builds it: the ranks' weights stay identical, the head is untouched
    device = torch.device("cpu")
    source = build_pair_source(cfg.data, cfg.optim.batch_size // WORLD, device, seed=1, rank=rank, world_size=WORLD)
    step = build_step(cfg, device, step_settings(cfg, device), source, positions=make_positions(cfg))
    head0 = [p.detach().clone() for p in step.model.encoder_q.head.parameters()]
    back0 = torch.cat([p.detach().flatten() for p in step.model.encoder_q.backbone.parameters()])
    for s in range(3):
        step(s)
    back = torch.cat([p.detach().flatten() for p in step.model.encoder_q.backbone.parameters()])
    both = distributed.all_gather_cat(back[None])
    out["weights_equal_across_ranks"] = bool(torch.equal(both[0], both[1]))
    out["backbone_trained"] = not torch.equal(back, back0)
    out["head_untouched"] = all(torch.equal(a, b) for a, b in zip(head0, step.model.encoder_q.head.parameters()))

    # 3. the spatial loss over the global batch: two ranks with half a batch each == one process with all of it
    torch.manual_seed(0)
    conv = torch.nn.Conv3d(3, 4, kernel_size=1)
    ref = copy.deepcopy(conv)
    pos = {"layer4.1": init_positions("layer4.1", (4, 6, 6), rng=3, n_windows=300)}
    x = torch.randn(8, 3, 2, 6, 6)  # the global batch (the same on both ranks: same seed)
    ddp = torch.nn.parallel.DistributedDataParallel(conv)
    loss = SpatialLoss(pos, neighborhoods_per_step=3, gather=distributed.gather_samples)(
        {"layer4.1": ddp(x[rank * 4:(rank + 1) * 4])}, torch.Generator().manual_seed(5))["layer4.1"]
    loss.backward()
    ref_loss = SpatialLoss(pos, neighborhoods_per_step=3)({"layer4.1": ref(x)}, torch.Generator().manual_seed(5))["layer4.1"]
    ref_loss.backward()
    out["loss"] = (float(loss), float(ref_loss))
    out["grad_error"] = float((conv.weight.grad - ref.weight.grad).norm() / ref.weight.grad.norm())
    q.put((rank, out))


@pytest.mark.slow
def test_spatial_only_and_the_global_spatial_loss_under_ddp(tmp_path):
    r = _spawn(_ddp_worker, str(tmp_path))
    for rank in (0, 1):
        assert r[rank]["spatial_only_train"] == ("finished", 4)
        assert r[rank]["weights_equal_across_ranks"] and r[rank]["backbone_trained"] and r[rank]["head_untouched"]
        local, whole = r[rank]["loss"]
        assert local == pytest.approx(whole, rel=1e-6)
        assert r[rank]["grad_error"] < 1e-5


def _torchrun(*args, timeout: float = 1800) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(WORLD), "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), "-m", "stdann", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=dict(os.environ, OMP_NUM_THREADS="1"))


@pytest.mark.slow
def test_demo_and_a_study_run_under_torchrun(tmp_path):
    """Every rank trains; rank 0 alone locks, swaps, writes and analyses while the other waits
    (before: the second rank found the folder locked, or swapped and wrote positions too)."""
    small = ["--set", "optim.max_steps=4", "--set", "topography.swap_steps=2", "--set", "train.threads=1"]
    r = _torchrun("demo", "--preset", "smoke", "--out", str(tmp_path / "demo"), "--no-progress", *small)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    demo = tmp_path / "demo"
    for rel in ("metrics.json", "report.html", "swap.json", "positions/layer3.1.npz"):
        assert (demo / rel).is_file(), rel
    for run in (demo, demo / "pretrain"):
        info = json.loads((run / "run.json").read_text())
        assert info["world_size"] == WORLD and info["status"] == "finished"
    assert r.stdout.count("[stdann demo] done") == 1  # the analysis ran once, on rank 0

    r = _torchrun("emergence", "--preset", "smoke", "--variants", "paper", "--seeds", "1", "--snapshots", "1",
                  "--no-readout", "--out", str(tmp_path / "study"), "--no-progress", *small)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    study = json.loads((tmp_path / "study" / "study.json").read_text())
    assert [c["name"] for c in study["conditions"]] == ["paper"]
    info = json.loads((tmp_path / "study" / "paper" / "seed0" / "run.json").read_text())
    assert info["world_size"] == WORLD and info["status"] == "finished"


def test_the_ranks_compare_the_configuration_without_per_process_settings():
    from stdann.training.setup import shared_config

    base = load_config("smoke")
    own = load_config("smoke", overrides=["train.max_minutes=3", "train.threads=1", "data.root=/mnt/node2/videos"])
    assert shared_config(base) == shared_config(own)  # a node's own budget, threads and mount point
    for change in ("topography.alpha=0.7", "optim.lr=0.1", "train.log_every=3", "moco.symmetric=false"):
        assert shared_config(base) != shared_config(load_config("smoke", overrides=[change])), change


@pytest.mark.slow
def test_an_elastic_restart_after_a_killed_worker_resumes_and_logs_every_step_once(tmp_path):
    """torchrun --max-restarts: a worker killed with SIGKILL after the first checkpoints makes torchrun
    start every worker again with the same command line; `--resume auto` continues from the last
    checkpoint and the job finishes with each step in train.csv once."""
    import csv
    import signal
    import time

    run = tmp_path / "run"
    steps = 150
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(WORLD), "--max-restarts", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()), "-m", "stdann", "train",
           "--preset", "smoke", "--out", str(run), "--resume", "auto", "--no-progress",
           "--set", f"optim.max_steps={steps}", "--set", "train.ckpt_every=5", "--set", "train.log_every=1",
           "--set", "train.threads=1"]
    job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env=dict(os.environ, OMP_NUM_THREADS="1"))
    killed = None
    deadline = time.time() + 600
    while killed is None and time.time() < deadline and job.poll() is None:
        if (run / "checkpoints" / "last.pt").is_file() and safe_load(run / "checkpoints" / "last.pt")["step"] >= 10:
            workers = subprocess.run(["pgrep", "-P", str(job.pid)], capture_output=True, text=True).stdout.split()
            if workers:
                killed = int(workers[-1])
                os.kill(killed, signal.SIGKILL)
        time.sleep(0.2)
    out, _ = job.communicate(timeout=900)
    assert killed is not None, "the job ended before a worker could be killed: " + out[-2000:]
    assert job.returncode == 0, out[-3000:]
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["step"] == steps
    with open(run / "logs" / "train.csv") as f:
        logged = [int(row["step"]) for row in csv.DictReader(f)]
    assert logged == sorted(set(logged)) and logged[-1] == steps, logged  # each step once, in order

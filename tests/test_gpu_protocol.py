"""The first GPU session's protocol (benchmarks/gpu_paper_scale.sh session), dry-run on the CPU with
the smoke preset: every stage runs and everything comes back as one tar."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.heavy
def test_the_gpu_session_runs_every_stage_and_packs_one_tar(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "SMOKE": "1", "OUT": str(out), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1",
           "BENCH_STEPS": "1", "BENCH_WARMUP": "1"}
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_paper_scale.sh"), "session", str(tmp_path / "run")],
                       env=env, capture_output=True, text=True, timeout=800)
    assert r.returncode == 0, r.stderr[-3000:]
    assert [p.name for p in out.iterdir()] == ["gpu_session.tar.gz"]  # one file for the device tool to bring back
    with tarfile.open(out / "gpu_session.tar.gz") as tar:
        names = {n.lstrip("./") for n in tar.getnames()}
        assert {"positions.txt", "train_b8.json", "train_b4_baseline.json", "profile.txt", "status.txt",
                "session/train.csv", "session/run.json"} <= names
        fast = json.load(tar.extractfile("./train_b8.json"))
        slow = json.load(tar.extractfile("./train_b4_baseline.json"))
        profile = tar.extractfile("./profile.txt").read().decode()
        run = json.load(tar.extractfile("./session/run.json"))
    assert "baseline" not in fast["variants"] and fast["variants"]["no_spatial"]["pairs_per_s"] > 0
    assert "speedup_vs_baseline" in slow
    assert "aten::" in profile
    assert run["status"] == "finished"

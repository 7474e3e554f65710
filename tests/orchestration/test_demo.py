"""`stdann demo --preset smoke`: the README's main command at seconds scale, end to end."""

import pytest
import json
import subprocess
import sys

import torch

from stdann.runs.folder import RunFolder

from stdann.runs.layout import BOOKKEEPING

REQUIRED = ("dsi_median", "cv_direction_median", "fraction_direction_selective", "pinwheel_density",
            "column_spacing_mm", "smoothness")


@pytest.mark.heavy
def test_smoke_demo_writes_report_and_metrics(tmp_path):
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "stdann", "demo", "--preset", "smoke", "--out", str(out), "--no-progress",
                        "--set", "topography.swap_steps=5"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["model"]["width"] == 8
    for block in metrics["config"]["ephys"]["blocks"]:
        entry = metrics["blocks"][block]
        for key in REQUIRED:
            assert key in entry, (block, key)
        assert "untrained" in entry and "dsi_median" in entry["untrained"]
    html = (out / "report.html").read_text()
    assert "<img" in html and "data:image/png;base64," in html
    assert (out / "swap.json").is_file() and (out / "pretrain" / "checkpoints" / "last.pt").is_file()
    assert "DSI trained" in r.stdout  # the summary table printed at the end
    # the untrained control of the topographic run is the pretraining run's step-0 network
    a = torch.load(out / "checkpoints" / "init.pt", weights_only=True)["backbone"]["stem.0.weight"]
    b = torch.load(out / "pretrain" / "checkpoints" / "init.pt", weights_only=True)["backbone"]["stem.0.weight"]
    assert torch.equal(a, b)
    # every file the demo wrote is in its run folder's manifest (so --overwrite can remove exactly those):
    # clearing the manifest's files leaves nothing but the bookkeeping files of the two run folders
    run = RunFolder(out)
    with run.hold():
        run.clear()
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert left == [f"{d}{name}" for d in ("", "pretrain/") for name in sorted(BOOKKEEPING)], left

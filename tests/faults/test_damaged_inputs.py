"""Damaged checkpoints, configs, positions and logs fed to every command, and pickles that would run code.

A cell holds when the command either does its work (it does not need the damaged file, or rewrites it) or
refuses with one line that names the damaged file — never a traceback — and when no pickle ever runs."""

from __future__ import annotations

import builtins
import os
import pickle
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from fault_helpers import CORRUPTIONS, FAST, corrupt, run_main, sets

pytestmark = pytest.mark.slow

FILES = ("checkpoints/last.pt", "checkpoints/init.pt", "positions/layer3.1.npz", "config.yaml", "logs/train.csv",
         "run.json", "metrics.json", "swap.json", "pretrain/checkpoints/last.pt")
DAMAGE = CORRUPTIONS



def commands(run: Path, work: Path) -> dict[str, list[str]]:
    return {
        "train --resume": ["train", "--out", str(run), "--resume", "--steps", "12", "--no-progress"],
        "analyze": ["analyze", str(run), "--no-progress", "--no-figures"],
        "report": ["report", str(run), "--out", str(work / "r.html")],
        "positions optimize --from": ["positions", "optimize", str(work / "opt"), "--from", str(run), "--steps", "2",
                                      "--no-progress"],
        "positions plot": ["positions", "plot", str(run), "--block", "layer3.1", "--out", str(work / "p.png")],
        "demo (continue)": ["demo", "--preset", "smoke", "--out", str(run), "--no-progress", *sets(FAST),
                            "--set", "optim.max_steps=10"],
    }



@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "demo"
    rc, err, tb = run_main(commands(out, out.parent)["demo (continue)"])
    assert rc == 0 and not tb, err + tb
    return out


def test_damaged_run_files_fed_to_every_command(demo_run, tmp_path, ledger):
    row = ledger("damaged run files (9 files x 4 damages) fed to 6 commands")
    seed = 0
    for rel in FILES:
        for kind in DAMAGE:
            for name in commands(demo_run, tmp_path):
                seed += 1
                work = tmp_path / f"c{seed}"
                run = work / "run"
                work.mkdir()
                subprocess.run(["cp", "-a", str(demo_run), str(run)], check=True)
                corrupt(run / rel, kind, seed)
                rc, err, tb = run_main(commands(run, work)[name])
                lines = [line for line in err.strip().splitlines() if line.startswith("stdann ")]
                named = len(lines) == 1 and (Path(rel).name in lines[0] or str(Path(rel).parent) in lines[0])
                ok = not tb and (rc == 0 or (rc == 2 and named))
                row.trial(ok, f"{name} with {rel} {kind}: exit {rc}, {tb or err.strip()[-300:]}")
                shutil.rmtree(work, ignore_errors=True)
    row.check(9 * 4 * 6)


# -- pickles that run code ------------------------------------------------------------------------------------------
class _Payload:
    """Unpickling this calls ``func(*args)``: what a malicious checkpoint would do."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(marker: Path) -> list[object]:
    touch = f"touch {marker}"
    return [
        _Payload(os.system, (touch,)),
        _Payload(subprocess.call, (["touch", str(marker)],)),
        _Payload(subprocess.Popen, (["touch", str(marker)],)),
        _Payload(eval, (f"__import__('os').system('{touch}')",)),
        _Payload(exec, (f"open('{marker}', 'w').write('x')",)),
        _Payload(builtins.open, (str(marker), "w")),
        _Payload(Path.touch, (marker,)),
        _Payload(shutil.copy, (__file__, str(marker))),
    ]


def _evil_files(folder: Path, marker: Path) -> list[Path]:
    """Checkpoints and positions whose loading would run code: torch.save'd objects, raw pickles, a
    crafted data.pkl inside a real checkpoint's zip, pickled object arrays in an .npz."""
    out = []
    for i, payload in enumerate(_payloads(marker)):
        for how in ("torch", "raw", "in-dict", "zip"):
            p = folder / f"{how}{i}.pt"
            if how == "torch":
                torch.save(payload, p)
            elif how == "raw":
                p.write_bytes(pickle.dumps(payload, protocol=2))
            elif how == "in-dict":
                torch.save({"format": "stdann-checkpoint-v1", "step": 1, "config": "model: {width: 8}\n",
                            "model": {"w": payload}, "backbone": {"w": payload}}, p)
            else:
                good = folder / "good.pt"
                torch.save({"format": "stdann-checkpoint-v1", "step": 1}, good)
                with zipfile.ZipFile(good) as z, zipfile.ZipFile(p, "w") as w:
                    for info in z.infolist():
                        data = z.read(info.filename)
                        if info.filename.endswith("data.pkl"):
                            data = pickle.dumps({"format": "stdann-checkpoint-v1", "x": payload}, protocol=2)
                        w.writestr(info, data)
            out.append(p)
    npz = folder / "objects.npz"
    np.savez(npz, name=np.array(["layer3.1"], dtype=object), dims=np.array([_Payload(print, ("x",))], dtype=object),
             coordinates=np.zeros((2, 2)), neighborhood_indices=np.zeros((1, 2), int), neighborhood_width=1.0,
             sheet_side=1.0)
    out.append(npz)
    return out


def test_pickles_that_run_code_execute_nothing(demo_run, tmp_path, ledger):
    row = ledger("checkpoints and positions holding pickles that run code, loaded by every command")
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil"
    evil.mkdir()
    for i, f in enumerate(_evil_files(evil, marker)):
        work = tmp_path / f"e{i}"
        run = work / "run"
        work.mkdir()
        subprocess.run(["cp", "-a", str(demo_run), str(run)], check=True)
        targets = ["positions/layer3.1.npz"] if f.suffix == ".npz" else ["checkpoints/last.pt", "checkpoints/init.pt"]
        for t in targets:
            shutil.copy(f, run / t)
        for name, argv in commands(run, work).items():
            if name == "report" or (name == "positions plot" and f.suffix == ".pt"):
                continue  # reads neither checkpoints nor positions / no checkpoint
            rc, err, tb = run_main(argv)
            lines = [line for line in err.strip().splitlines() if line.startswith("stdann ")]
            ok = not marker.exists() and not tb and rc in (0, 2) and (rc == 0 or len(lines) == 1)
            row.trial(ok, f"{f.name} via {name}: exit {rc}, ran code: {marker.exists()}, {tb or err.strip()[-200:]}")
            marker.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    row.check(20)

"""Two processes on one run folder, and --overwrite / --resume on folders that hold a user's own files.

Two processes: the second is refused with one line naming the holder, the first finishes as if alone.
User files: whatever stdann is asked to do, every file it did not write is still there, byte for byte."""

from __future__ import annotations

import random
import time

import pytest

from fault_helpers import FAST, one_line_error, put_user_files, sets, start, stdann
from stdann.runs.checkpoint import safe_load

pytestmark = pytest.mark.slow

SMOKE = ["--preset", "smoke", "--no-progress", *sets(FAST)]
LONG = [*SMOKE, "--set", "optim.max_steps=60", "--set", "train.log_every=1", "--set", "train.ckpt_every=20"]


def _wait_for(path, timeout=600):
    deadline = time.time() + timeout
    while not path.exists():
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def test_two_processes_on_one_run_folder(tmp_path, ledger):
    row = ledger("two processes on one run folder (first: train or demo; second: 6 commands)")
    seconds = {
        "train": lambda d: ["train", "--out", str(d), *SMOKE],
        "train --resume": lambda d: ["train", "--out", str(d), "--resume", "--no-progress"],
        "train --overwrite": lambda d: ["train", "--out", str(d), "--overwrite", *SMOKE],
        "demo": lambda d: ["demo", "--out", str(d), *SMOKE],
        "demo --overwrite": lambda d: ["demo", "--out", str(d), "--overwrite", *SMOKE],
        "positions init --force": lambda d: ["positions", "init", str(d), "--preset", "smoke", "--force"],
    }
    for first_name, first_argv, ready in (
        ("train", lambda d: ["train", "--out", str(d), *LONG], lambda d: d / "logs" / "train.csv"),
        ("demo", lambda d: ["demo", "--out", str(d), *LONG], lambda d: d / "pretrain" / "logs" / "train.csv"),
    ):
        for name, argv in seconds.items():
            d = tmp_path / f"{first_name}-{name.replace(' ', '_')}"
            first = start(*first_argv(d))
            _wait_for(ready(d))
            second = stdann(*argv(d))
            out, err = first.communicate(timeout=1800)
            lines = (d / "logs" / "train.csv").read_text().splitlines()[1:] if first_name == "train" else []
            steps = [int(float(line.split(",")[0])) for line in lines]
            first_ok = first.returncode == 0 and (first_name != "train" or (
                steps == list(range(1, 61)) and safe_load(d / "checkpoints" / "last.pt")["step"] == 60))
            ok = one_line_error(second, "in use by another stdann process", str(first.pid)) and first_ok
            row.trial(ok, f"{first_name} then {name}: second exit {second.returncode} {second.stderr.strip()[-200:]}; "
                          f"first exit {first.returncode} {err.strip()[-200:]}")
    row.check(12)


USER_FILES = ("thesis.tex", "mydocs/chapter1.tex", "config.yaml", "logs/train.csv", "logs/notes.txt",
              "checkpoints/mine.pt", "checkpoints/last.pt", "figures/plot.png", "tables/mine.csv", "metrics.json",
              "report.html", "positions/README.txt", "run.json", "swap.json", "pretrain/notes.md")



def _intact(files) -> bool:
    return all(p.is_file() and p.read_bytes() == b for p, b in files.items())


def test_overwrite_and_resume_on_folders_with_user_files(tmp_path, ledger):
    row = ledger("--overwrite / --resume / a new run on folders holding a user's files (random sets of 15 names, "
                 "some where stdann writes)")
    rng = random.Random(7)
    commands = {
        "train --overwrite": lambda d: ["train", "--out", str(d), "--overwrite", *SMOKE],
        "train --resume": lambda d: ["train", "--out", str(d), "--resume", "--no-progress"],
        "train (new)": lambda d: ["train", "--out", str(d), *SMOKE],
        "demo --overwrite": lambda d: ["demo", "--out", str(d), "--overwrite", *SMOKE],
        "demo": lambda d: ["demo", "--out", str(d), *SMOKE],
        "positions init --force": lambda d: ["positions", "init", str(d), "--preset", "smoke", "--force"],
    }
    for kind in ("plain folder", "stdann run + user files"):
        for name, argv in commands.items():
            for trial in range(2):
                d = tmp_path / f"{kind[:5]}-{name.replace(' ', '_')}-{trial}"
                if kind != "plain folder":
                    r = stdann("demo", "--out", str(d), *SMOKE, "--set", "optim.max_steps=4")
                    assert r.returncode == 0, r.stderr
                taken = {p.relative_to(d).as_posix() for p in d.rglob("*")} if d.exists() else set()
                names = [n for n in rng.sample(USER_FILES, 8) if n not in taken]
                mine = put_user_files(d, names)
                r = stdann(*argv(d))
                ok = _intact(mine) and (r.returncode == 0 or one_line_error(r))
                row.trial(ok, f"{kind}, {name}: exit {r.returncode} {r.stderr.strip()[-200:]}, "
                              f"user files intact: {_intact(mine)}")
    row.check(20)

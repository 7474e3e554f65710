"""A full disk (small tmpfs file systems, remounted larger to "free space") and read-only output folders.

A trial holds when the command either finishes or stops with one line naming the file and the problem,
leaves no temporary file, never leaves run.json saying "running", and — once space is freed — the same
command (train: --resume) completes without any manual clean-up. On a read-only folder every command
refuses with one line and changes nothing."""

from __future__ import annotations

import json
import shutil

import pytest

from disk_helpers import remount, small_tmpfs
from fault_helpers import FAST, one_line_error, sets, stdann, temp_files

pytestmark = pytest.mark.slow

SIZES = ("8k", "48k", "200k", "600k", "1500k", "3m", "6m", "12m")
SMOKE = ["--preset", "smoke", "--no-progress", *sets(FAST), "--set", "optim.max_steps=6", "--set", "train.ckpt_every=2"]


def _status(run) -> str:
    try:
        return json.loads((run / "run.json").read_text())["status"]
    except (OSError, ValueError, KeyError):
        return "none"


def _snapshot(root) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("done") / "demo"
    r = stdann("demo", "--out", str(run), *SMOKE, "--set", "optim.max_steps=4")
    assert r.returncode == 0, r.stderr
    return run


def test_full_disk_then_free_space(tmp_path, finished_run, ledger):
    row = ledger("disk full (tmpfs of 8 KiB to 12 MiB) during 5 commands, then space freed and the same command")
    cases = {
        "train": (lambda d: ["train", "--out", str(d / "run"), *SMOKE],
                  lambda d: ["train", "--out", str(d / "run"), "--resume", "--no-progress"]),
        "demo": (lambda d: ["demo", "--out", str(d / "demo"), *SMOKE], None),
        "analyze --out": (lambda d: ["analyze", str(finished_run), "--out", str(d / "a"), "--no-progress"], None),
        "report --out": (lambda d: ["report", str(finished_run), "--out", str(d / "report.html")], None),
        "positions init": (lambda d: ["positions", "init", str(d / "p"), "--preset", "smoke"], None),
    }
    for name, (argv, again) in cases.items():
        for i, size in enumerate(SIZES):
            with small_tmpfs(tmp_path / f"{name.split()[0]}{i}", size) as disk:
                first = stdann(*argv(disk))
                stopped_well = first.returncode == 0 or one_line_error(first, "the disk is full")
                clean = not temp_files(disk)
                not_running = all(_status(p.parent) != "running" for p in disk.rglob("run.json"))
                remount(disk, "size=64m")  # space freed
                second = stdann(*(again or argv)(disk))
                if second.returncode == 2 and "no checkpoint to resume" in second.stderr:
                    second = stdann(*argv(disk)[:3], "--overwrite", *argv(disk)[3:])  # the fix the error names
                # after a first run that fit, running it again may be refused as already done (one line naming --force)
                again_ok = second.returncode == 0 or (first.returncode == 0 and one_line_error(second, "--force"))
                ok = stopped_well and clean and not_running and again_ok and not temp_files(disk)
                row.trial(ok, f"{name} on {size}: first exit {first.returncode} ({first.stderr.strip()[-250:]}), "
                              f"temporary files {temp_files(disk)}, running {not not_running}, then exit "
                              f"{second.returncode} ({second.stderr.strip()[-250:]})")
    row.check(len(cases) * len(SIZES))


def test_read_only_output(tmp_path, finished_run, ledger):
    row = ledger("read-only output folder (ro tmpfs) for 9 commands")
    with small_tmpfs(tmp_path / "ro", "64m") as disk:
        shutil.copytree(finished_run, disk / "run")
        (disk / "empty").mkdir()
        remount(disk, "ro")
        before = _snapshot(disk)
        run = str(disk / "run")
        cases = {
            "train (new)": ["train", "--out", str(disk / "new"), *SMOKE],
            "train (into an empty folder)": ["train", "--out", str(disk / "empty"), *SMOKE],
            "train --resume": ["train", "--out", run, "--resume", "--steps", "8", "--no-progress"],
            "demo (continue)": ["demo", "--out", run, *SMOKE, "--set", "optim.max_steps=4"],
            "analyze": ["analyze", run, "--no-progress", "--no-figures"],
            "report": ["report", run],
            "positions init": ["positions", "init", str(disk / "p"), "--preset", "smoke"],
            "positions optimize": ["positions", "optimize", str(disk / "opt"), "--from", run, "--steps", "2",
                                   "--no-progress"],
            "positions plot": ["positions", "plot", run, "--block", "layer3.1"],
        }
        for name, argv in cases.items():
            r = stdann(*argv)
            ok = one_line_error(r) and ("read-only" in r.stderr or "cannot" in r.stderr) and _snapshot(disk) == before
            row.trial(ok, f"{name}: exit {r.returncode}, {r.stderr.strip()[-300:]}")
    row.check(len(cases))

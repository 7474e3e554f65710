"""Run folders never lose a user's data: --overwrite, --resume and the demo on
folders that hold a user's own files, a foreign train.csv, a missing positions file, a truncated
config.yaml, a typo in --out, two processes on one folder, interrupted commands, and run folders made
before the marker existed."""

import ast
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import fault_helpers
import stdann.runs
from lock_helpers import hold_in_other_process
from stdann.cli.main import main
from stdann.config import load_config
from stdann.orchestration.run_analysis import analyze_run
from stdann.runs.checkpoint import CheckpointError, load_backbone, safe_load
from stdann.runs.errors import FolderInUse, RunFolderError
from stdann.runs.folder import RunFolder
from stdann.runs.layout import MARKER
from stdann.runs.manifest import MANIFEST
from stdann.topography.positions import LayerPositions
from stdann.training.trainer import TrainingDiverged, train

SMOKE = ["train.log_every=1", "train.ckpt_every=2", "optim.max_steps=2", "train.deterministic=true",
         "topography.n_windows=300"]
USER_FILES = ("mydocs/thesis.tex", "notes.md", "logs/notes.txt", "checkpoints/mine.pt", "figures/plot.png",
              "tables/mine.csv", "positions/README.txt")


def cfg_for(*extra):
    return load_config("smoke", overrides=SMOKE + list(extra))


def put_user_files(root: Path, names=USER_FILES) -> dict[Path, bytes]:
    return fault_helpers.put_user_files(root, names)


def assert_intact(files: dict[Path, bytes]) -> None:
    for p, data in files.items():
        assert p.is_file() and p.read_bytes() == data, p


def log_steps(run: Path) -> list[int]:
    lines = (run / "logs" / "train.csv").read_text().splitlines()
    return [int(float(line.split(",")[0])) for line in lines[1:]]


def one_line_error(err: str, *words: str) -> None:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])


def make_legacy(run: Path) -> None:
    """What a run folder of the previous version looks like: the same files, no marker, no manifest."""
    (run / MARKER).unlink()
    (run / MANIFEST).unlink()


# -- --overwrite ----------------------------------------------------------------------------------------------
def test_demo_overwrite_refuses_a_folder_that_is_not_a_stdann_run(tmp_path, capsys):
    mine = put_user_files(tmp_path / "d", ["mydocs/thesis.tex"])
    rc = main(["demo", "--preset", "smoke", "--out", str(tmp_path / "d"), "--overwrite", "--no-progress"])
    assert rc == 2
    one_line_error(capsys.readouterr().err, "not a stdann run folder", "mydocs/")
    assert_intact(mine)


def test_demo_overwrite_deletes_only_what_stdann_wrote(tmp_path, monkeypatch):
    import stdann.orchestration.demo as demo

    out = RunFolder(tmp_path / "d")
    with out.hold():
        out.ensure_run()
        pre = out.adopt_child("pretrain")
        train(cfg_for(), pre.root, progress=False)
        train(cfg_for(), out.root, progress=False)
        out.write_json("metrics.json", {"blocks": {}})
    mine = put_user_files(out.root) | put_user_files(pre.root, ["logs/mine.txt", "checkpoints/keep.pt"])
    ran = []
    monkeypatch.setattr(demo, "demo_stages", lambda cfg, run, **k: ran.append(run.root) or 0)  # the demo's work itself
    assert main(["demo", "--preset", "smoke", "--out", str(out.root), "--overwrite", "--no-progress"]) == 0
    assert ran == [out.root]
    assert_intact(mine)
    for rel in ("config.yaml", "run.json", "checkpoints/last.pt", "checkpoints/init.pt", "logs/train.csv",
                "positions/layer3.1.npz", "metrics.json", "pretrain/checkpoints/last.pt", "pretrain/logs/train.csv"):
        assert not (out.root / rel).exists(), rel
    assert out.is_marked() and pre.is_marked()


def test_train_overwrite_keeps_the_users_files(tmp_path):
    run = tmp_path / "r"
    train(cfg_for(), run, progress=False)
    mine = put_user_files(run)
    res = train(cfg_for("optim.max_steps=1"), run, overwrite=True, progress=False)
    assert res.status == "finished" and res.step == 1
    assert_intact(mine)
    assert log_steps(run) == [1]  # the old run's rows went with its log, the user's notes beside it stayed


@pytest.mark.heavy  # an analysis (~10 s)
def test_an_analysis_goes_with_the_run_it_described(tmp_path):
    """`stdann analyze RUN` enters metrics.json, tables/ and figures/ in the run's manifest: after
    `train --overwrite` no stale analysis of the old network is left to be reported as the new one's;
    the user's own files in those folders stay."""
    run = tmp_path / "r"
    train(cfg_for(), run, progress=False)
    mine = put_user_files(run)
    analyze_run(run, blocks=["layer4.1"], progress=False)
    written = RunFolder(run).written()
    assert "metrics.json" in written and "tables/ephys_summary.csv" in written
    assert "figures/direction_map_layer4.1.png" in written
    assert not {"figures/plot.png", "tables/mine.csv"} & written
    with hold_in_other_process(run) as holder:  # not while another process has the folder
        with pytest.raises(FolderInUse, match=f"process {holder.pid}"):
            analyze_run(run, blocks=["layer4.1"], progress=False, figures=False)
    train(cfg_for("optim.max_steps=1"), run, overwrite=True, progress=False)
    assert not (run / "metrics.json").exists() and not (run / "tables" / "ephys_summary.csv").exists()
    assert not (run / "figures" / "direction_map_layer4.1.png").exists()
    assert_intact(mine)


# -- --resume -----------------------------------------------------------------------------------------------------
def test_resume_without_a_checkpoint_is_refused_and_deletes_nothing(tmp_path, capsys):
    run = tmp_path / "r"
    train(cfg_for(), run, progress=False)
    (run / "checkpoints" / "last.pt").unlink()  # stopped before its first checkpoint, or removed
    stdann_files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    mine = put_user_files(run, ["figures/fig.png", "metrics.json", "report.html", "mydocs/thesis.tex"])
    with pytest.raises(RunFolderError, match="no checkpoint to resume"):
        train(cfg_for(), run, resume=True, progress=False)
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 2
    one_line_error(capsys.readouterr().err, "no checkpoint to resume", "--overwrite")
    assert_intact(mine)
    assert_intact({p: b for p, b in stdann_files.items() if p.name != ".stdann.lock"})


def test_resume_of_a_folder_that_does_not_exist_is_an_error_naming_it(tmp_path, capsys):
    typo = tmp_path / "tpyo"
    assert main(["train", "--out", str(typo), "--resume", "--steps", "1", "--no-progress"]) == 2
    one_line_error(capsys.readouterr().err, str(typo), "does not exist")
    assert not typo.exists()


def test_resume_refuses_a_truncated_config_and_never_fills_defaults(tmp_path, capsys):
    run = tmp_path / "r"
    train(cfg_for("optim.max_steps=3"), run, progress=False, stop_at_step=1)
    config = run / "config.yaml"
    lines = config.read_text().splitlines(keepends=True)
    config.write_text("".join(lines[: len(lines) // 3]))  # a disk-full or killed editor's leftover
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 2
    one_line_error(capsys.readouterr().err, "config.yaml", "truncated")
    assert safe_load(run / "checkpoints" / "last.pt")["step"] == 1
    config.unlink()  # the fix the message names: resume with the configuration stored in the checkpoint
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 0
    assert "finished at step 3/3" in capsys.readouterr().out
    assert load_config(None, config).optim.max_steps == 3  # config.yaml written again, complete


def test_truncated_config_without_checkpoint_is_refused(tmp_path, capsys):
    run = tmp_path / "r"
    train(cfg_for(), run, progress=False)
    (run / "checkpoints" / "last.pt").unlink()
    (run / "config.yaml").write_text("model:\n  width: 8\n")
    assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 2
    one_line_error(capsys.readouterr().err, "no checkpoint to resume")
    assert not (run / "checkpoints" / "last.pt").exists()


def test_one_missing_positions_file_on_resume_is_refused_and_the_others_are_kept(tmp_path):
    run = tmp_path / "r"
    train(cfg_for("optim.max_steps=4"), run, progress=False, stop_at_step=2)
    optimised = LayerPositions.load(run / "positions" / "layer4.1.npz")
    optimised.coordinates = optimised.coordinates[::-1].copy()  # stands for swap-optimised positions
    optimised.save(run / "positions" / "layer4.1.npz")
    (run / "positions" / "layer3.1.npz").unlink()
    before = {p: p.read_bytes() for p in (run / "positions").glob("*.npz")}
    with pytest.raises(RunFolderError, match="layer3.1.npz"):
        train(cfg_for("optim.max_steps=4"), run, resume=True, progress=False)
    assert_intact(before)
    assert not (run / "positions" / "layer3.1.npz").exists()
    assert safe_load(run / "checkpoints" / "last.pt")["step"] == 2


def test_stage_stopped_before_its_first_checkpoint_starts_again_keeping_user_files(tmp_path):
    run = tmp_path / "r"
    train(cfg_for(), run, progress=False)
    (run / "checkpoints" / "last.pt").unlink()
    mine = put_user_files(run)
    res = train(cfg_for(), run, resume="auto", progress=False)  # what the recipe's stages do
    assert res.status == "finished" and res.step == 2
    assert log_steps(run) == [1, 2]
    assert_intact(mine)


# -- foreign files ---------------------------------------------------------------------------------------------
def test_new_run_refuses_a_foreign_train_csv(tmp_path):
    mine = put_user_files(tmp_path / "d", ["logs/train.csv", "mydocs/thesis.tex"])
    with pytest.raises(RunFolderError, match="train.csv exists and was not written by stdann"):
        train(cfg_for(), tmp_path / "d", progress=False)
    assert_intact(mine)
    assert not (tmp_path / "d" / "checkpoints").exists()  # refused before any work


def test_new_run_beside_user_files_and_a_foreign_config(tmp_path):
    mine = put_user_files(tmp_path / "d", ["mydocs/thesis.tex", "config.yaml"])
    with pytest.raises(RunFolderError, match="config.yaml exists and was not written by stdann"):
        train(cfg_for(), tmp_path / "d", progress=False)
    (tmp_path / "d" / "config.yaml").unlink()
    del mine[tmp_path / "d" / "config.yaml"]
    assert train(cfg_for(), tmp_path / "d", progress=False).status == "finished"  # beside the user's files
    assert_intact(mine)


@pytest.mark.parametrize("bad", ["../precious.txt", "/etc/hostname", "a\x00b", "x" * 5000, "a/" + "y" * 300])
def test_a_damaged_manifest_deletes_nothing_and_names_the_line(tmp_path, bad):
    outside = put_user_files(tmp_path, ["precious.txt"])
    run = RunFolder(tmp_path / "r")
    with run.hold():
        run.ensure_run().write_text("swap.json", "{}")
        with open(run.root / MANIFEST, "a") as f:
            f.write(bad + "\n")
        with pytest.raises(RunFolderError, match=r"\.stdann-files is damaged \(line 2 .*delete or replace nothing"):
            run.clear()
        with pytest.raises(RunFolderError, match="damaged"):
            run.write_text("swap.json", "{}")
    assert_intact(outside)
    assert (run.root / "swap.json").read_text() == "{}"


def test_nothing_is_deleted_or_written_through_a_symbolic_link(tmp_path):
    user = tmp_path / "user"
    mine = put_user_files(user, ["precious.txt", "figures/plot.png", "unit_map_layer3.1.png"])
    run = RunFolder(tmp_path / "r")
    with run.hold():
        run.ensure_run().write_text("swap.json", "{}")
        (run.root / "notes").mkdir()
        (run.root / "notes" / "link").symlink_to(user)
        (run.root / "figures").symlink_to(user)
        with open(run.root / MANIFEST, "a") as f:
            f.write("notes/link/precious.txt\nfigures/unit_map_layer3.1.png\n")
        with pytest.raises(RunFolderError, match="symbolic link.*will not delete"):
            run.clear()
        with pytest.raises(RunFolderError, match="symbolic link.*will not write"):
            run.write_text("figures/unit_map_layer3.1.png", "x")
        with pytest.raises(RunFolderError, match="symbolic link"):
            run.adopt_child("notes/link")
    assert_intact(mine)
    assert (run.root / "swap.json").exists()  # refused before anything was deleted


def test_a_symlinked_lock_or_manifest_is_never_written_through(tmp_path):
    mine = put_user_files(tmp_path, ["precious.txt"])
    for name in (".stdann.lock", ".stdann-files"):
        run = tmp_path / name.strip(".")
        run.mkdir()
        (run / name).symlink_to(tmp_path / "precious.txt")
        with pytest.raises(RunFolderError, match="symbolic link"):
            with RunFolder(run).hold() as r:
                r.ensure_run().write_text("swap.json", "{}")
    assert_intact(mine)


# -- one process per folder ------------------------------------------------------------------------------------
def test_a_folder_held_by_another_process_is_refused_with_one_line(tmp_path, capsys):
    run = tmp_path / "r"
    with hold_in_other_process(run) as holder:
        with pytest.raises(FolderInUse, match=f"in use by another stdann process \\(process {holder.pid}"):
            train(cfg_for(), run, progress=False)
        for cmd in (["train", "--preset", "smoke", "--out", str(run), "--no-progress"],
                    ["demo", "--preset", "smoke", "--out", str(run), "--no-progress"],
                    ["positions", "init", str(run), "--preset", "smoke"]):
            assert main(cmd) == 2
            one_line_error(capsys.readouterr().err, "in use by another stdann process")
    assert not (run / "checkpoints").exists() and not (run / "positions").exists()


def _cli(*args):
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    # SIGINT as a terminal's Ctrl-C sends it: a process started with SIGINT ignored (pytest run as a
    # background job) keeps ignoring it, by design
    return subprocess.Popen([sys.executable, "-m", "stdann", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(predicate, what: str, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.slow  # two real processes (~10 s); the fast tier checks the same refusal against a held lock
def test_two_train_processes_on_one_folder_then_ctrl_c(tmp_path):
    run = tmp_path / "r"
    first = _cli("train", "--preset", "smoke", "--steps", "400", "--out", str(run), "--no-progress",
                 "--set", "train.log_every=1", "--set", "train.ckpt_every=1000")
    _wait_for(lambda: (run / "logs" / "train.csv").is_file() and len(log_steps(run)) >= 2, "the first run's steps")
    second = _cli("train", "--preset", "smoke", "--steps", "400", "--out", str(run), "--resume", "--no-progress")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 2
    one_line_error(err, "in use by another stdann process", str(first.pid))
    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 128 + signal.SIGINT, out + err  # interrupted, not finished
    steps = log_steps(run)
    assert steps == list(range(1, len(steps) + 1))  # one writer: no duplicated rows
    assert safe_load(run / "checkpoints" / "last.pt")["step"] == steps[-1]


@pytest.mark.slow  # two real demos (~15 s)
def test_two_demos_on_one_folder_then_sigterm(tmp_path):
    out_dir = tmp_path / "demo"
    first = _cli("demo", "--preset", "smoke", "--out", str(out_dir), "--no-progress", "--set", "optim.max_steps=2000")
    _wait_for(lambda: (out_dir / "pretrain" / "logs" / "train.csv").is_file(), "the first demo's training")
    second = _cli("demo", "--preset", "smoke", "--out", str(out_dir), "--no-progress")
    _, err = second.communicate(timeout=120)
    assert second.returncode == 2
    one_line_error(err, "in use by another stdann process")
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 128 + signal.SIGTERM, err
    one_line_error(err, "run the same command again")


# -- folders without the marker ------------------------------------------------------------------------------------
def test_a_folder_without_the_marker_is_never_taken_for_a_run(tmp_path):
    """A run folder of a version before the marker, or a user's copy of a stdann config.yaml and
    checkpoint: either way stdann cannot prove it wrote them, so it neither resumes nor replaces them."""
    run = tmp_path / "old"
    train(cfg_for("optim.max_steps=3"), run, progress=False, stop_at_step=1)
    make_legacy(run)
    with open(run / "config.yaml", "a") as f:
        f.write("# my notes on this run\n")
    mine = put_user_files(run, ["thesis.tex", "mydocs/chapter1.tex"]) | {
        p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".stdann.lock"}
    with pytest.raises(RunFolderError, match="not a stdann run folder"):
        train(cfg_for(), run, overwrite=True, progress=False)
    with pytest.raises(RunFolderError, match="not a stdann run folder"):
        train(cfg_for(), run, resume=True, progress=False)
    with pytest.raises(RunFolderError, match="config.yaml exists and was not written by stdann"):
        train(cfg_for(), run, progress=False)
    assert not (run / MARKER).exists()
    assert_intact(mine)
    model, cfg = load_backbone(run, "last")  # still analysable as it is
    assert cfg.model.width == 8


def test_an_emptied_manifest_is_neither_resumed_nor_overwritten(tmp_path):
    run = tmp_path / "r"
    train(cfg_for("optim.max_steps=2"), run, progress=False)
    (run / MANIFEST).write_text("")
    mine = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name not in (MANIFEST, ".stdann.lock")}
    with pytest.raises(RunFolderError, match="not in .*stdann-files"):
        train(cfg_for(), run, resume=True, progress=False)
    with pytest.raises(RunFolderError, match="exists and was not written by stdann"):
        train(cfg_for(), run, overwrite=True, progress=False)
    assert_intact(mine)


# -- checkpoints ---------------------------------------------------------------------------------------------------
def test_checkpoint_format_is_checked_on_load(tmp_path):
    torch.save({"format": "someone-elses-v9", "model": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="someone-elses-v9"):
        safe_load(tmp_path / "other.pt")
    (tmp_path / "empty.pt").write_bytes(b"")  # a zero-byte last.pt (disk full)
    with pytest.raises(CheckpointError, match="empty.pt"):
        safe_load(tmp_path / "empty.pt")


def test_divergence_before_the_first_checkpoint_promises_none(tmp_path):
    def poison(blocks, step):
        return {"poison": torch.tensor(float("nan")) if step == 0 else torch.zeros(())}

    with pytest.raises(TrainingDiverged) as e:
        train(cfg_for("train.ckpt_every=5", "optim.max_steps=6"), tmp_path / "r", progress=False, extra_losses=[poison])
    assert "No checkpoint" in str(e.value) and "was kept" not in str(e.value)
    assert not (tmp_path / "r" / "checkpoints" / "last.pt").exists()


def test_tensorboard_events_are_recorded(tmp_path):
    pytest.importorskip("torch.utils.tensorboard")
    run = tmp_path / "r"
    train(cfg_for("train.tensorboard=true", "optim.max_steps=1"), run, progress=False)
    events = [p.relative_to(run).as_posix() for p in (run / "logs" / "tb").rglob("*") if p.is_file()]
    assert events and set(events) <= RunFolder(run).written()


def test_runs_imports_only_the_layers_below_it():
    """stdann.runs may import config, models, topography, data, fileio and errors — never training, ephys, reports
    or cli (so that analysis can read run folders without importing training)."""
    allowed = ("stdann.config", "stdann.models", "stdann.topography", "stdann.data", "stdann.fileio", "stdann.runs",
               "stdann.errors")
    for path in Path(stdann.runs.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            for name in names:
                if name == "stdann" or name.startswith("stdann."):
                    assert name == "stdann" or name.startswith(allowed), (path.name, name)


def test_resume_auto_starts_then_continues_one_command_line(tmp_path, capsys):
    """`train --resume auto`: the one command line of an elastic job — it starts a run that is not
    there and continues one that has a checkpoint, every step logged once."""
    run = tmp_path / "r"
    argv = ["train", "--out", str(run), "--resume", "auto", "--preset", "smoke", "--no-progress",
            "--set", "train.log_every=1", "--set", "train.threads=1", "--set", "train.tensorboard=false"]
    assert main([*argv, "--set", "optim.max_steps=2"]) == 0
    assert main([*argv, "--set", "optim.max_steps=4"]) == 0
    assert log_steps(run) == [1, 2, 3, 4]
    with pytest.raises(SystemExit):
        main(["train", "--out", str(run), "--resume", "sometimes"])
    assert "'auto'" in capsys.readouterr().err


def test_a_file_system_without_flock_gets_an_owner_file_lock(tmp_path, monkeypatch, capsys):
    """Lustre without -o flock or NFSv3 without lockd (ENOLCK): the lock is a file created atomically,
    named in one line; a live owner refuses, a dead owner on this host is taken over, another host's
    owner is refused with the way to remove it."""
    import errno
    import json as _json
    import os
    import socket

    import filelock._native._unix as native

    def no_flock(fd):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(native, "lock_fd_nonblocking", no_flock)
    run = RunFolder(tmp_path / "r")
    with run.hold():
        run.ensure_run().write_text("swap.json", "{}")
        assert (run.root / ".stdann.lock.owner").is_file()
    assert not (run.root / ".stdann.lock.owner").exists()
    assert "without flock" in capsys.readouterr().err
    owner = run.root / ".stdann.lock.owner"
    for pid, host, words in ((os.getppid(), socket.gethostname(), "in use by another stdann process"),
                             (os.getpid() + 10 ** 7, "another-node", "delete")):
        owner.write_text(_json.dumps({"pid": pid, "host": host, "since": "now", "command": "stdann train"}))
        with pytest.raises(FolderInUse, match=words):
            with run.hold():
                pass
        assert owner.exists()
    owner.write_text(_json.dumps({"pid": 2 ** 22 + 7, "host": socket.gethostname(), "since": "then", "command": "x"}))
    with run.hold():  # its owner died on this host: taken over
        assert _json.loads(owner.read_text())["pid"] == os.getpid()
    assert not owner.exists()

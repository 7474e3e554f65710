"""Damaged run files and unlucky disks: each is a one-line error naming the file and the fix,
no temporary file is left behind, run.json never goes on saying "running", and an interrupted write of
positions leaves the previous ones whole."""

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stdann.cli.main import main
from stdann.config import load_config
from stdann.errors import StorageError
from disk_helpers import small_tmpfs
from fault_helpers import CORRUPTIONS, corrupt
from stdann.fileio import atomic_write, read_json_cache, read_json_object, remove_stale_temps
from stdann.runs.checkpoint import FORMAT, CheckpointError, atomic_save, safe_load
from stdann.runs.folder import RunFolder
from stdann.topography import init_model_positions, sheets_from_config
from stdann.topography.positions import LayerPositions, PositionsError
from stdann.runs.errors import RunFolderError
from stdann.runs.trainlog import read_rows
from stdann.training.logger import RunLogger
from stdann.training.trainer import train

SMOKE = ["train.log_every=1", "train.ckpt_every=2", "optim.max_steps=2", "topography.n_windows=300",
         "topography.blocks=layer3.1,layer4.1"]



def one_line(err: str, *words: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def no_temp_files(root: Path) -> None:
    left = [p for p in root.rglob("*") if ".tmp-" in p.name]
    assert not left, left


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    train(load_config("smoke", overrides=SMOKE), run, progress=False)
    return run


def copy_run(src: Path, dst: Path) -> Path:
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)
    return dst


# -- positions ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def positions_file(tmp_path_factory):
    cfg = load_config("smoke")
    pos = init_model_positions(cfg.model.width, cfg.data.frames, cfg.data.size, ["layer4.1"],
                               sheets_from_config(cfg.topography), n_windows=200)["layer4.1"]
    p = tmp_path_factory.mktemp("pos") / "layer4.1.npz"
    pos.save(p)
    return p


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_a_damaged_positions_file_is_an_error_naming_it(positions_file, tmp_path, kind):
    p = tmp_path / "layer4.1.npz"
    p.write_bytes(positions_file.read_bytes())
    corrupt(p, kind)
    with pytest.raises(PositionsError) as e:
        LayerPositions.load(p)
    assert str(p) in str(e.value) and "positions init" in str(e.value)


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_commands_name_a_damaged_positions_file(trained, tmp_path, capsys, kind):
    run = copy_run(trained, tmp_path / "run")
    corrupt(run / "positions" / "layer3.1.npz", kind)
    assert main(["positions", "plot", str(run), "--block", "layer3.1", "--out", str(tmp_path / "p.png")]) == 2
    one_line(capsys.readouterr().err, "layer3.1.npz", "positions init")
    assert main(["train", "--out", str(run), "--resume", "--steps", "3", "--no-progress"]) == 2
    one_line(capsys.readouterr().err, "layer3.1.npz")


# -- checkpoints --------------------------------------------------------------------------------------------------
def test_flipped_bytes_in_a_checkpoint_are_found(tmp_path):
    """torch.load does not check the zip's CRC-32: flipped bits loaded as silently different weights."""
    p = tmp_path / "last.pt"
    atomic_save({"format": FORMAT, "step": 1, "w": torch.arange(100_000, dtype=torch.float32)}, p)
    assert safe_load(p)["step"] == 1
    corrupt(p, "flipped")
    with pytest.raises(CheckpointError, match="damaged .*checksum"):
        safe_load(p)


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_commands_name_a_damaged_checkpoint(trained, tmp_path, capsys, kind):
    run = copy_run(trained, tmp_path / "run")
    corrupt(run / "checkpoints" / "last.pt", kind)
    for argv in (["train", "--out", str(run), "--resume", "--steps", "3", "--no-progress"],
                 ["analyze", str(run), "--no-progress", "--no-figures"],
                 ["positions", "optimize", str(tmp_path / "opt"), "--from", str(run), "--steps", "1", "--no-progress"]):
        assert main(argv) == 2, argv
        one_line(capsys.readouterr().err, "last.pt")


# -- logs and configs ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["random", "flipped", "text"])
def test_a_damaged_train_csv_is_refused_on_resume_naming_it(trained, tmp_path, capsys, kind):
    run = copy_run(trained, tmp_path / "run")
    log = run / "logs" / "train.csv"
    if kind == "text":
        log.write_text("these are not the logs you are looking for\n1,2,3\n")
    else:
        corrupt(log, kind)
    assert main(["train", "--out", str(run), "--resume", "--steps", "3", "--no-progress"]) == 2
    one_line(capsys.readouterr().err, "train.csv", "is damaged", "move it away")
    log.rename(tmp_path / "old.csv")  # the fix the message names
    assert main(["train", "--out", str(run), "--resume", "--steps", "3", "--no-progress"]) == 0
    assert [r.split(",")[0] for r in log.read_text().splitlines()[1:]] == ["3"]


LOG = "step,epoch,lr,loss\r\n10,0.5,0.05,3.25\r\n20,1.0,0.05,nan\r\n"


@pytest.mark.parametrize("damage, why", [
    (lambda t: t.replace("3.25", "3.2\x7f"), "row 2: loss is '3.2\\x7f', not a number"),   # a byte flipped in a value
    (lambda t: t.replace("nan", "4an"), "row 3: loss is '4an', not a number"),              # 'n' ^ 0x5A is '4'
    (lambda t: t.replace("0.5,0.05", "0.5v0.05"), "row 2 does not have the header's 4 cells"),  # ',' ^ 0x5A
    (lambda t: t.replace("\r\n20", "\rP20"), "not CSV"),                                  # a newline flipped
])
def test_a_training_log_with_any_cell_damaged_is_refused(tmp_path, damage, why):
    # every cell is checked, not only the step: which cell the damage lands in must not matter
    path = tmp_path / "train.csv"
    path.write_bytes(LOG.encode())
    assert read_rows(path)[0] == ["step", "epoch", "lr", "loss"]
    path.write_bytes(damage(LOG).encode())
    with pytest.raises(RunFolderError) as e:
        read_rows(path)
    assert why in str(e.value) and "move it away" in str(e.value)


@pytest.mark.parametrize("cut", [LOG + "30,1.5,0.0", LOG + "30", "step,epoch,lr,loss"])
def test_a_log_row_cut_short_by_a_crash_is_dropped_on_resume(tmp_path, cut):
    path = tmp_path / "train.csv"
    path.write_bytes(cut.encode())
    full = cut.startswith(LOG)
    assert [r["step"] for r in read_rows(path)[1]] == (["10", "20"] if full else [])
    logger = RunLogger(path)
    logger.truncate_after(20)
    logger.log({"step": 30, "epoch": 1.5, "lr": 0.05, "loss": 2.0})
    header, rows = read_rows(path)
    assert header == ["step", "epoch", "lr", "loss"]
    assert [r["step"] for r in rows] == (["10", "20", "30"] if full else ["30"])


def test_a_binary_config_file_is_one_line(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(bytes(range(256)) * 4)
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    one_line(capsys.readouterr().err, str(cfg), "not a text file")
    assert not (tmp_path / "r").exists()


# -- the disk ------------------------------------------------------------------------------------------------------
def test_json_readers_name_the_damaged_file_or_make_it_again(tmp_path):
    """One reader for JSON a user must fix (one line: the file, why, the fix) and one for JSON that can
    be made again (a cached measurement: {} so the caller measures again)."""
    good = tmp_path / "good.json"
    good.write_text('{"a": 1}')
    assert read_json_object(good, StorageError, "fix") == {"a": 1} == read_json_cache(good)
    for name, content in [("cut.json", b'{"a": '), ("binary.json", b"\x00\xff\xfe"), ("list.json", b"[1, 2]"),
                          ("empty.json", b"")]:
        p = tmp_path / name
        p.write_bytes(content)
        with pytest.raises(StorageError) as e:
            read_json_object(p, StorageError, "restore it from a copy")
        line = str(e.value)
        assert "\n" not in line and line.startswith(f"cannot read {p} (") and line.endswith(
            "the file is damaged; restore it from a copy"), line
        assert read_json_cache(p) == {}
    assert read_json_cache(tmp_path / "absent.json") == {}
    with pytest.raises(StorageError, match="absent.json"):
        read_json_object(tmp_path / "absent.json", StorageError, "fix")


def test_atomic_writes_report_a_full_disk_and_leave_no_temporary_file(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def full(f):
        f.write(b"x" * 100)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(StorageError, match="f.bin: the disk is full"):
        atomic_write(target, full)
    assert target.read_bytes() == b"old"
    no_temp_files(tmp_path)

    with pytest.raises(OSError):
        atomic_write(tmp_path / "plain", lambda f: (_ for _ in ()).throw(OSError(errno.EINVAL, "a bug, not the disk")))
    no_temp_files(tmp_path)


def test_torch_save_on_a_full_disk_is_a_storage_error(tmp_path):
    """torch.save hides the OSError of a full disk behind a RuntimeError about inline_container.cc."""
    with small_tmpfs(tmp_path / "disk", "64k") as disk:
        (disk / "last.pt").write_bytes(b"the previous checkpoint")
        with pytest.raises(StorageError, match="last.pt: the disk is full"):
            atomic_save({"format": FORMAT, "w": torch.zeros(100_000)}, disk / "last.pt")
        assert (disk / "last.pt").read_bytes() == b"the previous checkpoint"
        no_temp_files(disk)


def test_a_stale_temporary_file_of_a_killed_process_is_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".last.pt.tmp-{pid}"
    stale.write_bytes(b"half a checkpoint")
    live = tmp_path / f".last.pt.tmp-{os.getppid()}"  # a live process's write in progress
    live.write_bytes(b"being written")
    other = tmp_path / f".notes.tmp-{pid}"  # not the temporary file of a file stdann wrote here
    other.write_bytes(b"user")
    assert remove_stale_temps(tmp_path, ["last.pt"]) == [stale]
    assert not stale.exists() and live.exists() and other.exists()


def test_an_interrupted_write_of_positions_leaves_the_old_set_whole(trained, tmp_path, monkeypatch):
    run = RunFolder(copy_run(trained, tmp_path / "run"))
    before = {p.name: p.read_bytes() for p in (run.root / "positions").glob("*.npz")}
    pos = {b: LayerPositions.load(run.positions_file(b)) for b in ("layer3.1", "layer4.1")}
    calls = []
    real = LayerPositions.write_to

    def dies_on_the_second(self, f):
        calls.append(self.name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C (or a kill) while the second file is written
        real(self, f)

    monkeypatch.setattr(LayerPositions, "write_to", dies_on_the_second)
    with run.hold(), pytest.raises(KeyboardInterrupt):
        run.save_positions({b: p for b, p in pos.items()}, ("swap.json", {"steps": 1}))
    assert {p.name: p.read_bytes() for p in (run.root / "positions").glob("*.npz")} == before
    assert not (run.root / "swap.json").exists()
    no_temp_files(run.root)


def test_run_json_does_not_stay_running_after_an_error(tmp_path):
    def disk_full(blocks, step):
        if step == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return {}

    run = tmp_path / "r"
    with pytest.raises(OSError):
        train(load_config("smoke", overrides=SMOKE + ["optim.max_steps=4"]), run, progress=False,
              extra_losses=[disk_full])
    status = json.loads((run / "run.json").read_text())
    assert status["status"] == "failed" and "No space left" in status["error"]


def test_report_out_a_folder_is_one_line_and_writes_nothing(trained, tmp_path, capsys):
    out = tmp_path / "reports"
    out.mkdir()
    assert main(["report", str(trained), "--out", str(out)]) == 2
    one_line(capsys.readouterr().err, str(out), "is a folder", "report.html")
    assert list(out.iterdir()) == [] and not list(tmp_path.glob(".*tmp-*"))


def test_an_interrupted_positions_optimize_runs_again(trained, tmp_path, capsys):
    """`positions optimize` killed while writing could once not be rerun until positions/ was deleted."""
    src = copy_run(trained, tmp_path / "pre")
    dst = RunFolder(tmp_path / "topo")
    with dst.hold():  # what a kill between two renames of the set leaves: one block written, no swap.json
        dst.ensure_run().save_positions({"layer3.1": LayerPositions.load(src / "positions" / "layer3.1.npz")})
    argv = ["positions", "optimize", str(dst.root), "--from", str(src), "--steps", "2", "--no-progress"]
    assert main(argv) == 0
    assert "interrupted optimisation" in capsys.readouterr().out
    assert dst.has("swap.json") and dst.has("positions/layer4.1.npz")
    no_temp_files(dst.root)

"""Hostile input, round 3: links, outputs over a user's files, damaged bookkeeping, bombs.

Each test is one row of docs/reliability.md. A trial holds when the command either did its work or
refused with one line (exit 2, no traceback), and every file the user owns is still there byte for
byte (and nothing outside the folders the command was given changed). Commands run in-process on
one smoke run trained once per module, so the rows run in the default tier; the rows that need a
whole demo or a running study are marked slow.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from fault_helpers import FAST, one_line_error, put_user_files, run_main, sets, start
from stdann.runs.checkpoint import safe_load

pytestmark = pytest.mark.heavy

SMOKE = ["--preset", "smoke", "--no-progress", *sets(FAST), "--set", "train.threads=1"]
ANALYZE = ["--no-progress", "--no-figures", "--set", "n_directions=4", "--set", "spatial_frequencies=[0.08]",
           "--set", "temporal_frequencies=[0.125]", "--set", "n_phases=2", "--set", "bn_calibration_clips=0"]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A finished 4-step smoke run (made once; every trial works on a copy)."""
    root = tmp_path_factory.mktemp("hostile") / "base"
    rc, err, tb = run_main(["train", "--out", str(root), *SMOKE, "--set", "optim.max_steps=4"])
    assert rc == 0 and not tb, err + tb
    return root


def copy_of(base: Path, where: Path, name: str = "run") -> Path:
    dest = where / name
    shutil.copytree(base, dest, symlinks=True)
    (dest / ".stdann.lock").unlink(missing_ok=True)
    return dest


def snapshot(*folders: Path) -> dict[Path, bytes]:
    """Every plain file under ``folders`` (links not followed), with its bytes."""
    out = {}
    for f in folders:
        for dirpath, _, files in os.walk(f):
            for n in files:
                p = Path(dirpath) / n
                if p.is_file() and not p.is_symlink() and n != ".stdann.lock":
                    out[p] = p.read_bytes()
    return out


def intact(files: dict[Path, bytes]) -> bool:
    return all(p.is_file() and p.read_bytes() == data for p, data in files.items())


def held(result, files: dict[Path, bytes], *words: str, done_ok: bool = False) -> bool:
    """One-line refusal naming ``words`` (or, with ``done_ok``, success) and every file kept."""
    rc, err, tb = result
    if tb:
        return False
    ok = (done_ok and rc == 0) or one_line_error((rc, err), *words)
    return ok and intact(files)


# -- lost data: links, outputs over a user's files, legacy adoption, a damaged manifest, advice, YAML ------------
def test_nothing_is_deleted_or_written_through_links(base, tmp_path, ledger):
    row = ledger("links: manifest lines, figures/, pretrain/, lock file and manifest through symbolic links")
    user = tmp_path / "user"
    mine = put_user_files(user, ["precious.txt", "unit_map_layer3.1.png", "notes.md"])
    # a manifest line through a link, then --overwrite
    run = copy_of(base, tmp_path, "a")
    (run / "notes").mkdir()
    (run / "notes" / "link").symlink_to(user)
    with open(run / ".stdann-files", "a") as f:
        f.write("notes/link/precious.txt\n")
    keep = snapshot(run)
    r = run_main(["train", "--out", str(run), *SMOKE, "--overwrite", "--set", "optim.max_steps=4"])
    row.trial(held(r, mine | keep, "symbolic link"), f"manifest line through a link: {r}")
    # figures/ a link to the user's folder, then analyze
    run = copy_of(base, tmp_path, "b")
    (run / "figures").symlink_to(user)
    r = run_main(["analyze", str(run), "--no-progress", "--set", "n_directions=4", "--set", "n_phases=2"])
    row.trial(held(r, mine, "symbolic link"), f"figures/ a link: {r}")
    # pretrain/ a link to another run, then --overwrite of a run that recorded it as its child
    other = copy_of(base, tmp_path, "other")
    theirs = snapshot(other)
    run = copy_of(base, tmp_path, "c")
    (run / "pretrain").symlink_to(other)
    with open(run / ".stdann-files", "a") as f:
        f.write("pretrain/.stdann-run\n")
    r = run_main(["demo", "--out", str(run), *SMOKE, "--overwrite", "--set", "optim.max_steps=4"])
    row.trial(held(r, theirs, "symbolic link"), f"demo --overwrite, pretrain/ a link: {r}")
    r = run_main(["train", "--out", str(run), *SMOKE, "--overwrite", "--set", "optim.max_steps=4"])
    row.trial(held(r, theirs, done_ok=True), f"train --overwrite (keeps pretrain/), pretrain/ a link: {r}")
    # the lock file and the manifest as links to a user's file
    for name in (".stdann.lock", ".stdann-files"):
        run = copy_of(base, tmp_path, f"d{name}")
        (run / name).unlink(missing_ok=True)
        (run / name).symlink_to(user / "precious.txt")
        r = run_main(["train", "--out", str(run), *SMOKE, "--resume"])
        row.trial(held(r, mine, "symbolic link"), f"{name} a link: {r}")
    row.check(6)


def test_outputs_never_replace_a_users_file(base, tmp_path, ledger):
    row = ledger("outputs over a user's file: analyze, report, demo, sweep, study, data cache, preview")
    # analyze: a user's metrics.json in the run folder, and --out a user's folder holding one
    run = copy_of(base, tmp_path, "a")
    mine = put_user_files(run, ["metrics.json", "figures/my_plot.png"])
    r = run_main(["analyze", str(run), *ANALYZE])
    row.trial(held(r, mine, "metrics.json", "not written by stdann"), f"analyze over metrics.json: {r}")
    userdir = tmp_path / "userdir"
    mine = put_user_files(userdir, ["metrics.json", "thesis.tex"])
    r = run_main(["analyze", str(base), "--out", str(userdir), *ANALYZE])
    row.trial(held(r, mine, "metrics.json"), f"analyze --out a user's folder: {r}")
    # a user's file in figures/ beside a real analysis stays theirs through --overwrite
    run = copy_of(base, tmp_path, "b")
    mine = put_user_files(run, ["figures/my_plot.png", "tables/mine.csv"])
    r = run_main(["analyze", str(run), *ANALYZE])
    ok = r[0] == 0 and "figures/my_plot.png" not in (run / ".stdann-files").read_text()
    r = run_main(["train", "--out", str(run), *SMOKE, "--overwrite", "--set", "optim.max_steps=2"])
    row.trial(ok and held(r, mine, done_ok=True), f"user file beside an analysis, then --overwrite: {r}")
    # report: over a user's report.html, over the run's config.yaml, over a user's page elsewhere
    run = copy_of(base, tmp_path, "c")
    mine = put_user_files(run, ["report.html"]) | snapshot(run)
    row.trial(held(run_main(["report", str(run)]), mine, "report.html"), "report over report.html")
    row.trial(held(run_main(["report", str(run), "--out", str(run / "config.yaml")]), mine, ".html"),
              "report --out config.yaml")
    page = put_user_files(tmp_path / "pages", ["mine.html"])
    row.trial(held(run_main(["report", str(run), "--out", str(tmp_path / "pages" / "mine.html")]), page,
                   "not a stdann report"), "report --out a user's page")
    # demo into a folder holding a user's report.html, or a user's edited copy of a stdann config.yaml
    for name, files in (("report", {"report.html": b"<html>mine</html>"}),
                        ("config", {"config.yaml": (base / "config.yaml").read_bytes() + b"# my notes\n"})):
        out = tmp_path / f"demo-{name}"
        out.mkdir()
        for rel, data in files.items():
            (out / rel).write_bytes(data)
        mine = snapshot(out)
        r = run_main(["demo", "--out", str(out), *SMOKE, "--set", "optim.max_steps=4"])
        row.trial(held(r, mine, "not written by stdann"), f"demo over a user's {name}: {r}")
    # sweep / study into a folder holding a user's study.json
    for cmd in (["sweep", "--alphas", "0"], ["study", "--alphas", "0", "--seeds", "1"]):
        out = tmp_path / f"{cmd[0]}-out"
        mine = put_user_files(out, ["study.json"])
        r = run_main([*cmd, "--out", str(out), *SMOKE, "--set", "optim.max_steps=4"])
        row.trial(held(r, mine, "study.json"), f"{cmd[0]} over study.json: {r}")
    # data cache into a folder holding a user's index.json; data preview over a user's contact sheet
    out = tmp_path / "cache"
    mine = put_user_files(out, ["index.json"])
    (tmp_path / "novideos").mkdir()
    r = run_main(["data", "cache", str(tmp_path / "novideos"), "--out", str(out), "-q"])
    row.trial(held(r, mine, "index.json"), f"data cache over index.json: {r}")
    out = tmp_path / "preview"
    mine = put_user_files(out, ["contact_sheet.png"])
    r = run_main(["data", "preview", "--out", str(out), "--clips", "2", "--stats-clips", "0", "--preset", "smoke"])
    row.trial(held(r, mine, "contact_sheet.png"), f"data preview over contact_sheet.png: {r}")
    row.check(12)


def test_damaged_bookkeeping_deletes_nothing(base, tmp_path, ledger):
    row = ledger("damaged manifest or run files: NUL byte, random bytes, emptied, 10 MB line, config.yaml a folder")
    damages = {
        "NUL byte": lambda p: open(p, "ab").write(b"checkpoints/\x00last.pt\n"),
        "random bytes": lambda p: p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes()),
        "10 MB line": lambda p: open(p, "a").write("a" * (10 << 20) + "\n"),
        "emptied": lambda p: p.write_text(""),
    }
    for name, damage in damages.items():
        for cmd in ("--overwrite", "--resume"):
            run = copy_of(base, tmp_path, f"{name.replace(' ', '_')}{cmd}")
            damage(run / ".stdann-files")
            keep = snapshot(run)
            del keep[run / ".stdann-files"]
            r = run_main(["train", "--out", str(run), *SMOKE, cmd, "--set", "optim.max_steps=6"] if cmd == "--overwrite"
                         else ["train", "--out", str(run), "--resume", "--no-progress"])
            words = ("not in",) if name == "emptied" and cmd == "--resume" else ()
            words = ("not written by stdann",) if name == "emptied" and cmd == "--overwrite" else words
            ok = held(r, keep, *(words or (".stdann-files", "damaged")))
            sends_back = cmd == "--resume" and "with --overwrite" in r[1]  # a damaged record is not fixed by deleting
            row.trial(ok and not sends_back, f"{name} {cmd}: {r}")
    run = copy_of(base, tmp_path, "config-folder")
    (run / "config.yaml").unlink()
    (run / "config.yaml").mkdir()
    keep = snapshot(run)
    r = run_main(["train", "--out", str(run), *SMOKE, "--overwrite", "--set", "optim.max_steps=6"])
    row.trial(held(r, keep, "config.yaml", "folder"), f"config.yaml a folder: {r}")
    row.check(9)


def test_advice_never_destroys_and_positions_keep_their_run(base, tmp_path, ledger):
    row = ledger("advice: resume with another preset, positions init --force on a trained run")
    run = copy_of(base, tmp_path)
    keep = snapshot(run)
    r = run_main(["train", "--out", str(run), "--resume", "--preset", "demo", "--no-progress"])
    row.trial(held(r, keep) or (held(r, keep, "") and "--force" not in r[1]), f"resume --preset demo: {r}")
    row.trial("positions init" not in r[1] or "replaces" in r[1], f"advice: {r[1]}")
    r = run_main(["positions", "init", str(run), "--preset", "demo", "--force"])
    row.trial(held(r, keep, "impossible to resume"), f"positions init --force, other preset: {r}")
    r = run_main(["train", "--out", str(run), "--resume", "--no-progress", "--set", "optim.max_steps=6"])
    row.trial(r[0] == 0 and not r[2], f"the run still resumes: {r}")
    row.check(4)


def _alias_bomb() -> str:
    lines = ['l0: &l0 ["x","x","x","x","x","x","x","x","x"]']
    lines += [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    return "\n".join(lines) + "\noptim: {lr: [" + ",".join(["*l8"] * 9) + "]}\n"


def test_yaml_bombs_are_refused_at_once(base, tmp_path, ledger):
    row = ledger("YAML alias bombs: --config, a run's config.yaml on --resume")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_alias_bomb())
    t0 = time.perf_counter()
    r = run_main(["train", "--out", str(tmp_path / "new"), "--preset", "smoke", "--config", str(bomb)])
    row.trial(held(r, {}, "alias") and time.perf_counter() - t0 < 60 and not (tmp_path / "new").exists(), f"--config: {r}")
    run = copy_of(base, tmp_path)
    (run / "config.yaml").write_text(_alias_bomb())
    keep = snapshot(run)
    r = run_main(["train", "--out", str(run), "--resume", "--no-progress"])
    row.trial(held(r, keep, "alias"), f"config.yaml on --resume: {r}")
    row.check(2)


# -- weak: sizes, damaged checkpoints and positions, JSON, reports -------------------------------------------------
def test_sizes_a_user_can_set_are_refused_before_allocating(base, tmp_path, ledger):
    row = ledger("sizes: queue, windows, analysis grids, directions, phases")
    out = tmp_path / "new"
    for key, value in (("moco.queue_size", "400000000"), ("topography.n_windows", "1000000000"),
                       ("optim.batch_size", "9" * 400)):
        r = run_main(["train", "--out", str(out), *SMOKE, "--set", f"{key}={value}"])
        row.trial(held(r, {}, key.split(".")[-1]) and len(r[1]) < 600, f"{key}: {r}")
    for key, value in (("n_phases", "100000"), ("n_directions", "100000"), ("map_pixels_per_window", "1e9"),
                       ("map_window_mm", "1e-9")):
        r = run_main(["analyze", str(base), "--no-progress", "--set", f"{key}={value}"])
        row.trial(held(r, {}, key) or held(r, {}, "map"), f"analyze {key}: {r}")
    r = run_main(["positions", "init", str(tmp_path / "pos"), "--preset", "smoke", "--set", "topography.n_windows=1000000000"])
    row.trial(held(r, {}, "n_windows"), f"positions init n_windows: {r}")
    row.check(8)


def test_damaged_checkpoints_and_positions_are_one_line(base, tmp_path, ledger):
    row = ledger("checkpoint fields (step, optimiser, RNG) and a positions zip bomb")
    for name, change in (("step 'abc'", {"step": "abc"}), ("step -5", {"step": -5}), ("step 1e18", {"step": 10 ** 18}),
                         ("optimizer", {"optimizer": {"state": {}, "param_groups": [{"lr": 1}]}}),
                         ("rng", {"rng": {"torch": torch.zeros(3)}})):
        run = copy_of(base, tmp_path, name.replace(" ", "_").replace("'", ""))
        ckpt = safe_load(run / "checkpoints" / "last.pt")
        ckpt.update(change)
        torch.save(ckpt, run / "checkpoints" / "last.pt")
        keep = snapshot(run)
        r = run_main(["train", "--out", str(run), "--resume", "--no-progress"])
        row.trial(held(r, keep, "last.pt", "damaged"), f"{name}: {r}")
    run = copy_of(base, tmp_path, "bomb")
    p = run / "positions" / "layer3.1.npz"
    p.unlink()
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("coordinates.npy", b"\0" * (64 << 20))
    keep = snapshot(run)
    r = run_main(["train", "--out", str(run), "--resume", "--no-progress"])
    row.trial(held(r, keep, "layer3.1.npz", "expand"), f"zip bomb: {r}")
    row.check(6)


def test_damaged_json_and_broken_links_are_one_line(base, tmp_path, ledger):
    row = ledger("JSON 10^6 deep / 400-digit numbers / NaN in run files; figures/ a loop or dangling link")
    run = copy_of(base, tmp_path, "analysed")
    assert run_main(["analyze", str(run), *ANALYZE])[0] == 0
    for name, text in (("deep", "[" * 1_000_000 + "]" * 1_000_000), ("digits", '{"step": ' + "9" * 400 + "}"),
                       ("nan", '{"status": "finished", "step": NaN}')):
        for rel in ("metrics.json", "run.json"):
            work = copy_of(run, tmp_path, f"{name}-{rel}")
            (work / rel).write_text(text)
            keep = snapshot(work)
            r = run_main(["report", str(work)])
            row.trial(held(r, keep, rel, done_ok=(rel == "run.json")), f"{name} {rel}: {r}")
    for name, target in (("loop", "figures"), ("dangling", "nowhere")):
        work = copy_of(base, tmp_path, f"link-{name}")
        (work / "figures").symlink_to(work / target)
        r = run_main(["analyze", str(work), *ANALYZE[:1], "--set", "n_directions=4", "--set", "n_phases=2"])
        row.trial(held(r, {}, "figures", "symbolic link"), f"figures/ {name}: {r}")
    run_json = json.loads((run / "run.json").read_text())
    row.trial(all(isinstance(v, (str, int, float, list, dict, type(None))) for v in run_json.values()), "run.json is JSON")
    row.check(9)


def test_report_takes_the_lock_and_records_its_page(base, tmp_path, ledger):
    row = ledger("report: holds the folder, enters report.html in the manifest")
    run = copy_of(base, tmp_path)
    r = run_main(["report", str(run)])
    row.trial(r[0] == 0 and "report.html" in (run / ".stdann-files").read_text(), f"report recorded: {r}")
    proc = start("train", "--out", str(run), "--resume", "--no-progress", "--set", "optim.max_steps=400",
                 "--set", "train.log_every=1")
    try:
        deadline = time.time() + 300
        while not (run / "logs" / "train.csv").read_text().count("\n") > 5 and time.time() < deadline:
            time.sleep(0.2)
        keep = {run / "report.html": (run / "report.html").read_bytes()}
        r = run_main(["report", str(run)])
        row.trial(held(r, keep, "in use by another stdann process"), f"report while training: {r}")
    finally:
        proc.kill()
        proc.communicate()
    row.check(2)


@pytest.mark.slow
def test_a_running_study_protects_its_conditions(tmp_path, ledger):
    row = ledger("train --overwrite / analyze on a condition while its sweep runs")
    out = tmp_path / "sweep"
    proc = start("sweep", "--alphas", "0,0.25", "--out", str(out), *SMOKE, "--set", "optim.max_steps=30")
    try:
        cond = out / "alpha_0" / "seed0"
        deadline = time.time() + 1200
        while not (cond / "condition.json").exists() and time.time() < deadline:
            time.sleep(0.5)
        keep = snapshot(cond)
        for argv in (["train", "--out", str(cond), *SMOKE, "--overwrite"], ["analyze", str(cond), *ANALYZE]):
            r = run_main(argv)
            row.trial(held(r, keep, "another stdann process"), f"{argv[0]}: {r}")
    finally:
        proc.kill()
        proc.communicate()
    row.check(2)


def _videos(root: Path, n: int = 3, frames: int = 40) -> Path:
    from stdann_data_videos import encode_video  # tests/data helpers (PyAV)

    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        encode_video(root / f"v{i}.mp4", frames=frames, seed=i)
    return root


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def test_data_cache_leaves_no_orphans_or_temporary_shards(tmp_path, ledger):
    pytest.importorskip("av")
    row = ledger("data cache: kill -9 of the parent, stale temporary shards, a damaged index.json")
    root = _videos(tmp_path / "videos", n=6, frames=120)
    out = tmp_path / "cache"
    proc = start("data", "cache", str(root), "--out", str(out), "--preset", "smoke", "--workers", "2", "-q")
    deadline = time.time() + 120
    workers: list[int] = []
    while time.time() < deadline and proc.poll() is None and not workers:
        workers = _children(proc.pid)
        time.sleep(0.05)
    proc.kill()
    proc.communicate()
    time.sleep(2.0)
    alive = [w for w in workers if Path(f"/proc/{w}").exists() and "Z" not in Path(f"/proc/{w}/stat").read_text().split()[2]]
    row.trial(bool(workers) and not alive, f"workers {workers} still alive after the parent's kill -9: {alive}")
    (out / "shards").mkdir(parents=True, exist_ok=True)
    stale = out / "shards" / f".{'a' * 20}.{2 ** 22 + 12345}.tmp.npy"  # a pid above the kernel's default pid_max
    stale.write_bytes(b"\0" * 1024)
    r = run_main(["data", "cache", str(root), "--out", str(out), "--preset", "smoke", "--workers", "1", "-q"])
    row.trial(r[0] == 0 and not stale.exists() and not list((out / "shards").glob(".*.tmp.npy")), f"rerun: {r}")
    index = json.loads((out / "index.json").read_text())
    for name, change in (("no windows", lambda d: d.pop("windows")), ("no valid", lambda d: d["windows"][0].pop("valid"))):
        d = json.loads(json.dumps(index))
        change(d)
        (out / "index.json").write_text(json.dumps(d))
        r = run_main(["train", "--out", str(tmp_path / f"t-{name}"), *SMOKE, "--set", "data.source=cache",
                      "--set", f"data.root={out}"])
        row.trial(held(r, {}, "index.json", "damaged"), f"index.json {name}: {r}")
    row.check(4)

"""Helpers of the fault-injection suite (tests/faults): stdann commands in subprocesses, kills, the
one-line-error check, and the rows of the summary table (docs/reliability.md)."""

from __future__ import annotations

import contextlib
import io
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from stdann.cli.main import main

# Smoke scale, two topographic blocks, one analysed block: seconds per command.
FAST = ["topography.blocks=[layer3.1, layer4.1]", "ephys.blocks=[layer3.1]", "topography.n_windows=300",
        "train.tensorboard=false", "train.eval_pairs=16"]


def sets(overrides) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def cli_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def stdann(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``python -m stdann ARGS`` to its end."""
    return subprocess.run([sys.executable, "-m", "stdann", *args], capture_output=True, text=True, env=cli_env(),
                          timeout=timeout)


def _default_sigint() -> None:
    # A shell's background job (``cmd &``, nohup, some CI runners) starts with SIGINT ignored, and a child
    # inherits that: a SIGINT would then be lost until stdann's trainer sets its own handler. The suite sends
    # SIGINT as a terminal's Ctrl-C would, to a process that has not chosen to ignore it.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stdann", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=cli_env(), preexec_fn=_default_sigint)


def kill_after(proc: subprocess.Popen, delay: float) -> bool:
    """SIGKILL ``proc`` after ``delay`` seconds; False when it had ended by then (nothing was killed)."""
    deadline = time.time() + delay
    while time.time() < deadline:
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    killed = proc.poll() is None
    if killed:
        proc.kill()
    proc.communicate()
    return killed


def one_line_error(result: subprocess.CompletedProcess | tuple[int, str], *words: str) -> bool:
    """A refusal as the issue asks for: exit status 2, one line on stderr, no traceback, the words in it."""
    rc, err = (result.returncode, result.stderr) if hasattr(result, "returncode") else result
    lines = [line for line in err.strip().splitlines() if line.strip() and "Warning" not in line]
    return rc == 2 and len(lines) == 1 and "Traceback" not in err and all(w in lines[0] for w in words)


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if ".tmp-" in p.name]


@dataclass
class Row:
    name: str
    command: str
    trials: int = 0
    held: int = 0
    failures: list[str] = field(default_factory=list)
    note: str = ""

    def trial(self, ok: bool, what: str = "") -> bool:
        self.trials += 1
        self.held += bool(ok)
        if not ok:
            self.failures.append(what)
        return ok

    def check(self, minimum: int) -> None:
        assert self.trials >= minimum, f"{self.name}: only {self.trials} trials"
        assert not self.failures, f"{self.name}: {len(self.failures)} of {self.trials} failed:\n" + "\n".join(
            self.failures[:10])


ROWS: list[Row] = []  # every row of this session, in order




CORRUPTIONS = ("zero", "truncated", "random", "flipped")


def corrupt(path: Path, kind: str, seed: int = 0) -> None:
    """Damage a file as a full disk, a killed copy or a failing disk would: emptied, cut in half,
    replaced by random bytes, or a few bytes flipped in the middle (the size stays right)."""
    rng = random.Random(seed)
    data = path.read_bytes()
    if kind == "zero":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "random":
        path.write_bytes(bytes(rng.getrandbits(8) for _ in range(max(64, len(data) // 4))))
    else:
        b = bytearray(data)
        for i in rng.sample(range(len(b) // 4, 3 * len(b) // 4), min(8, len(b) // 2)):
            b[i] ^= 0x5A
        path.write_bytes(bytes(b))


def run_main(argv: list[str]) -> tuple[int | None, str, str]:
    """(exit status, stderr, traceback text or "") of one in-process ``stdann`` command."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = main(argv)
        return rc, err.getvalue(), ""
    except SystemExit as e:
        return int(e.code or 0), err.getvalue(), ""
    except BaseException as e:  # noqa: BLE001 - a traceback: the trial fails
        return None, err.getvalue(), f"{type(e).__name__}: {e}"


def put_user_files(root: Path, names) -> dict[Path, bytes]:
    """Write a user's own files (not stdann's) under ``root``; returns {path: content} to check later."""
    files = {}
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(f"the user's own {name}\n".encode())
        files[p] = p.read_bytes()
    return files

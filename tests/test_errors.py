"""One base class for every error a user can cause (stdann.errors.StdannError), the CLI's single catch on it,
storage errors of the operating system as one line, --debug, Ctrl-C and SIGTERM at start-up, and help texts."""

import argparse
import errno
import os
import signal

import pytest

import stdann.cli.common as common
import stdann.cli.main as cli_main
from stdann.cli.main import build_parser, main
from stdann.cli.study import _detach
from stdann.config import ConfigError
from stdann.cpu import choose_threads, configure, inherited_env
from stdann.data.folder import DataError
from stdann.ephys.errors import EphysError
from stdann.errors import (
    MissingFileError,
    StdannError,
    StorageError,
    UsageError,
    as_user_error,
    storage_error,
)
from stdann.orchestration.recipe import RecipeInterrupted
from stdann.reports.view import ReportError
from stdann.runs.checkpoint import CheckpointError
from stdann.runs.errors import FolderInUse, RunExistsError, RunFolderError
from stdann.topography.positions import PositionsError
from stdann.training.trainer import TrainingDiverged


def test_every_user_facing_error_derives_from_one_base():
    for cls in (ConfigError, DataError, EphysError, ReportError, CheckpointError, RunFolderError, FolderInUse,
                RunExistsError, PositionsError, RecipeInterrupted, TrainingDiverged, MissingFileError, StorageError,
                UsageError):
        assert issubclass(cls, StdannError), cls
    assert not hasattr(common, "USER_ERRORS")  # no hand-kept tuple beside the base class
    # the builtin bases stay, so `except FileNotFoundError` / `except ValueError` callers keep working
    assert issubclass(MissingFileError, FileNotFoundError) and issubclass(ConfigError, ValueError)
    assert RecipeInterrupted("x", signal.SIGTERM).exit_code == 143 and ConfigError("x").exit_code == 2


def _parser_with(func):
    parser = argparse.ArgumentParser(prog="stdann")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("boom")
    p.add_argument("--debug", action="store_true")
    p.set_defaults(func=func)
    return parser


def test_the_cli_prints_a_user_error_as_one_line_and_keeps_bugs(monkeypatch, capsys):
    def user_error(args):
        raise PositionsError("positions/layer3.1.npz is damaged;\nrestore it")

    monkeypatch.setattr(cli_main, "build_parser", lambda: _parser_with(user_error))
    assert main(["boom"]) == 2
    assert capsys.readouterr().err.strip() == ("stdann boom: error: positions/layer3.1.npz is damaged; restore it")
    with pytest.raises(PositionsError):  # --debug shows the traceback
        main(["boom", "--debug"])
    monkeypatch.setenv("STDANN_DEBUG", "1")
    with pytest.raises(PositionsError):
        main(["boom"])
    monkeypatch.delenv("STDANN_DEBUG")

    def bug(args):
        return 1 / 0

    monkeypatch.setattr(cli_main, "build_parser", lambda: _parser_with(bug))
    with pytest.raises(ZeroDivisionError):  # not a user error: its traceback is kept
        main(["boom"])


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only"),
                                         (errno.EACCES, "permission denied")])
def test_storage_errors_of_the_system_are_one_line(monkeypatch, capsys, code, words):
    def write(args):
        raise OSError(code, os.strerror(code), "/runs/r/checkpoints/.last.pt.tmp-12")

    monkeypatch.setattr(cli_main, "build_parser", lambda: _parser_with(write))
    assert main(["boom"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err and "/runs/r/checkpoints" in err, err
    assert as_user_error(ValueError("a bug")) is None and storage_error(OSError(errno.EINVAL, "x")) is None


def test_ctrl_c_and_sigterm_during_start_up_give_no_traceback(monkeypatch, capsys):
    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main, "build_parser", interrupted)  # while torch and the commands are imported
    assert main(["train", "--help"]) == 130
    assert "Traceback" not in capsys.readouterr().err

    def terminated():
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM was not delivered")

    monkeypatch.setattr(cli_main, "build_parser", terminated)
    assert main(["train"]) == 143
    assert "terminated" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored


def _leaves(parser, path=()):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
    for a in subs:
        for name, child in a.choices.items():
            yield from _leaves(child, path + (name,))


def test_every_command_has_debug():
    leaves = list(_leaves(build_parser()))
    assert len(leaves) >= 14
    for path, p in leaves:
        assert "--debug" in p._option_string_actions, path


def test_data_help_is_a_real_help_text(capsys):
    with pytest.raises(SystemExit):
        main(["data", "--help"])
    out = capsys.readouterr().out
    assert "preview" in out and "index" in out and "cache" in out and "skipped" in out
    assert "integrator" not in out and "register" not in out


def test_count_arguments_are_refused_at_parse_time(capsys, tmp_path):
    for argv in (["positions", "optimize", str(tmp_path), "--from", str(tmp_path), "--steps", "-1"],
                 ["sweep", "--out", str(tmp_path), "--seeds", "0"], ["bench", "train", "--steps", "0"],
                 ["analyze", str(tmp_path), "--blocks", "layer9.9"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        assert "Traceback" not in capsys.readouterr().err


def test_threads_when_other_processes_share_the_cores():
    assert choose_threads(2, 0) == 2 and choose_threads(2, 1) == 1 and choose_threads(2, 5) == 1
    assert choose_threads(16, 3) == 13
    env = {}
    note = configure(env, busy=1.0)
    n = int(env.get("OMP_NUM_THREADS", 0)) or None
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"
    if note:  # (this machine has more than one core)
        assert n is not None and "other process" in note and "train.threads" in note
    env = {"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE"}
    assert configure(env, busy=10.0) is None and env == {"OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "ACTIVE"}
    env = {}
    assert configure(env, busy=0.0) is None and env == {}  # quiet: OpenMP's defaults (spinning is faster)


def test_a_child_that_stdann_starts_keeps_its_parents_thread_choice(monkeypatch, tmp_path):
    """`stdann study --background`: the launcher is still running while its child starts, so a child
    that measured the machine again would count its own parent as busy and train on half the cores
    for the whole study (seen: 1 thread, 1.6 s per step instead of 0.87 s)."""

    child = inherited_env({"PATH": "/bin"})
    assert child == {"PATH": "/bin", "STDANN_CPU_CONFIGURED": "1"}
    assert configure(child, busy=5.0) is None and child == {"PATH": "/bin", "STDANN_CPU_CONFIGURED": "1"}
    env = {"STDANN_CPU_CONFIGURED": "0"}  # only the exact mark counts
    configure(env, busy=5.0)
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"

    seen = {}

    class Proc:
        pid = 4242

    def fake_popen(cmd, **kw):
        seen.update(kw)
        return Proc()

    monkeypatch.setattr("stdann.cli.study.subprocess.Popen", fake_popen)
    args = build_parser().parse_args(["study", "--out", str(tmp_path / "s"), "--background"])
    assert _detach(tmp_path / "s", args) == 0
    assert seen["env"]["STDANN_CPU_CONFIGURED"] == "1" and seen["env"].get("PATH") == os.environ.get("PATH")


def test_ctrl_c_while_the_command_loads_exits_130(monkeypatch, capsys):
    """`python -m stdann`: a Ctrl-C before stdann.cli.main has loaded is exit 130 and one line, not a traceback
    (the fault suite's SIGINT trials hit this window on a busy machine)."""
    import importlib.abc
    import runpy
    import sys

    class Interrupt(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "stdann.cli.main":
                raise KeyboardInterrupt
            return None

    monkeypatch.delitem(sys.modules, "stdann.cli.main", raising=False)
    monkeypatch.delitem(sys.modules, "stdann.__main__", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Interrupt(), *sys.meta_path])
    with pytest.raises(SystemExit) as e:
        runpy.run_module("stdann", run_name="__main__")
    assert e.value.code == 130
    assert capsys.readouterr().err.strip() == "[stdann] interrupted (Ctrl-C)"


def test_a_run_started_with_sigint_ignored_keeps_ignoring_it():
    """`nohup stdann train ...` or `stdann train ... &` in a script starts with SIGINT ignored: the
    trainer's clean-stop handler must not take SIGINT over (a Ctrl-C meant for the shell would stop
    the run), while SIGTERM still asks for a clean stop; both handlers are restored afterwards."""
    from stdann.training.stopper import StopRequest

    old_int, old_term = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        stop = StopRequest()
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) == stop._handle
        stop.close()
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

        signal.signal(signal.SIGINT, signal.default_int_handler)  # an interactive run: Ctrl-C stops cleanly
        stop = StopRequest()
        assert signal.getsignal(signal.SIGINT) == stop._handle
        stop.close()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)

"""The `stdann` command: help for every command, positions, clear errors."""

import subprocess
import sys

import pytest

from stdann.cli.main import build_parser, main

COMMANDS = ["train", "positions", "data", "import", "analyze", "demo", "sweep", "emergence", "report", "bench"]


def test_every_command_has_help(capsys):
    parser = build_parser()
    text = parser.format_help()
    for c in COMMANDS:
        assert c in text, c
    for c in COMMANDS:
        with pytest.raises(SystemExit) as e:
            main([c, "--help"])
        assert e.value.code == 0
        assert "usage: stdann " + c in capsys.readouterr().out


def test_every_option_is_explained():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.dest in ("help",) or action.help == "==SUPPRESS==":
                continue
            if action.__class__.__name__ == "_SubParsersAction":
                for q in action.choices.values():
                    for a in q._actions:
                        assert a.help, (name, q.prog, a.dest)
                continue
            assert action.help, (name, action.dest)


@pytest.mark.heavy
def test_positions_init_and_plot(tmp_path):
    run = tmp_path / "r"
    assert main(["positions", "init", str(run), "--preset", "smoke", "--set", "topography.blocks=layer3.1,layer4.1"]) == 0
    assert (run / "positions" / "layer3.1.npz").is_file()
    assert main(["positions", "plot", str(run), "--block", "layer4.1"]) == 0
    assert (run / "figures" / "positions_layer4.1.png").stat().st_size > 1000
    # refusing to overwrite is a one-line error, not a traceback
    r = subprocess.run([sys.executable, "-m", "stdann", "positions", "init", str(run), "--preset", "smoke"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "--force" in r.stderr and "Traceback" not in r.stderr


def test_positions_optimize_lowers_spatial_loss(tmp_path):
    from stdann.config import load_config
    from stdann.training.trainer import train

    pre = tmp_path / "pre"
    train(load_config("smoke", overrides=["optim.max_steps=2", "topography.alpha=0",
                                          "topography.blocks=layer3.1,layer4.1"]), pre, progress=False)
    run = tmp_path / "topo"
    assert main(["positions", "optimize", str(run), "--from", str(pre), "--steps", "20", "--no-progress"]) == 0
    import json

    swap = json.loads((run / "swap.json").read_text())
    for block, s in swap["blocks"].items():
        assert s["sl_last"] < s["sl_first"], block
    assert (run / "positions" / "layer3.1.npz").is_file() and (run / "figures" / "positions_layer3.1.png").is_file()


@pytest.mark.heavy
def test_missing_run_folder_is_a_clear_error():
    r = subprocess.run([sys.executable, "-m", "stdann", "analyze", "/nonexistent/run"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "/nonexistent/run" in r.stderr

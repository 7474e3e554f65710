"""Bring your own network: `stdann import` of a torchvision-format r3d_18 state dict, then `stdann analyze`."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from stdann.cli.main import main
from stdann.models.r3d import r3d_18
from stdann.orchestration.imported import read_state_dict
from stdann.runs.checkpoint import load_backbone

pytestmark = pytest.mark.heavy

SMOKE_ANALYSIS = ["--no-progress", "--no-figures", "--set", "n_directions=4", "--set", "n_phases=2",
                  "--set", "bn_calibration_clips=8"]


def _weights(tmp_path, width=8, wrap=None, prefix=""):
    """A state dict as torchvision saves r3d_18 (with its 400-way fc), from a seeded network."""
    torch.manual_seed(123)
    net = r3d_18(num_classes=400, width=width)
    with torch.no_grad():  # BN statistics that no initialisation gives: the import must keep them
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    state = {prefix + k: v for k, v in net.state_dict().items()}
    path = tmp_path / "weights.pth"
    torch.save({wrap: state} if wrap else state, path)
    return path, net


@pytest.mark.parametrize("wrap,prefix", [(None, ""), ("state_dict", "module.")])
def test_import_keeps_the_weights_and_makes_a_control(tmp_path, wrap, prefix, capsys):
    path, net = _weights(tmp_path, wrap=wrap, prefix=prefix)
    run = tmp_path / "run"
    assert main(["import", str(path), "--out", str(run), "--preset", "smoke"]) == 0
    model, cfg = load_backbone(run, "last")
    control, _ = load_backbone(run, "init")
    assert cfg.model.width == 8 and json.loads((run / "run.json").read_text())["status"] == "imported"
    ours = model.state_dict()
    for k, v in net.state_dict().items():
        if not k.startswith("fc."):
            assert torch.equal(ours[k], v), k
    assert not torch.equal(control.state_dict()["stem.0.weight"], ours["stem.0.weight"])
    x = torch.rand(2, 3, 4, 32, 32)
    net.eval()
    with torch.no_grad():  # the same features as the original network (its fc aside)
        ref = net.avgpool(net.layer4(net.layer3(net.layer2(net.layer1(net.stem(x)))))).flatten(1)
        assert torch.allclose(model(x), ref, atol=1e-5)
    assert main(["analyze", str(run), *SMOKE_ANALYSIS]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["blocks"]["layer3.1"]) >= {"trained", "untrained"}


def test_import_refuses_what_it_cannot_read(tmp_path, capsys):
    bad = tmp_path / "evil.pth"
    bad.write_bytes(pickle.dumps(print))  # a pickle that would call a function: never unpickled
    assert main(["import", str(bad), "--out", str(tmp_path / "a"), "--preset", "smoke"]) == 2
    assert "weights_only" in capsys.readouterr().err
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    assert main(["import", str(tmp_path / "other.pth"), "--out", str(tmp_path / "b"), "--preset", "smoke"]) == 2
    assert "stem.0.weight" in capsys.readouterr().err
    state = read_state_dict(_weights(tmp_path)[0])
    state.pop("layer4.1.conv2.1.running_var")
    torch.save(state, tmp_path / "cut.pth")
    assert main(["import", str(tmp_path / "cut.pth"), "--out", str(tmp_path / "c"), "--preset", "smoke"]) == 2
    assert "1 missing" in capsys.readouterr().err

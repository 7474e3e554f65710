"""The backbone against torchvision's r3d_18: names, shapes, parameter count, and outputs."""

import pytest
import torch
import torch.nn.functional as F

from stdann.models import BLOCK_NAMES, block_output_shapes, normalize, r3d_18


def test_parameter_count_and_names_width64():
    m = r3d_18(num_classes=400)
    sd = m.state_dict()
    assert sum(p.numel() for p in m.parameters()) == 33_371_472  # torchvision r3d_18: 33.37 M
    for key, shape in {
        "stem.0.weight": (64, 3, 3, 7, 7),
        "stem.1.running_var": (64,),
        "layer1.0.conv1.0.weight": (64, 64, 3, 3, 3),
        "layer1.0.conv1.1.weight": (64,),
        "layer1.1.conv2.0.weight": (64, 64, 3, 3, 3),
        "layer2.0.downsample.0.weight": (128, 64, 1, 1, 1),
        "layer2.0.downsample.1.running_var": (128,),
        "layer4.1.conv2.1.num_batches_tracked": (),
        "fc.weight": (400, 512),
        "fc.bias": (400,),
    }.items():
        assert tuple(sd[key].shape) == shape, key
    # 20 convs (1 weight each) + 20 BatchNorms (5 entries each) + fc (2) = 122 entries, as torchvision
    assert len(sd) == 122
    assert not any(k.startswith("layer1.0.downsample") for k in sd)


def test_block_output_shapes_paper_scale():
    expected = {
        "layer1.0": (64, 16, 56, 56),
        "layer1.1": (64, 16, 56, 56),
        "layer2.0": (128, 8, 28, 28),
        "layer2.1": (128, 8, 28, 28),
        "layer3.0": (256, 4, 14, 14),
        "layer3.1": (256, 4, 14, 14),
        "layer4.0": (512, 2, 7, 7),
        "layer4.1": (512, 2, 7, 7),
    }
    assert dict(block_output_shapes(64, 16, 112)) == expected
    # and the real network agrees (meta device: no memory, no compute)
    with torch.device("meta"):
        m = r3d_18(None, 64)
        _, outs = m.forward_blocks(torch.empty(1, 3, 16, 112, 112))
    assert {k: tuple(v.shape[1:]) for k, v in outs.items()} == expected


def test_forward_blocks_matches_forward_and_stops_early():
    torch.manual_seed(0)
    m = r3d_18(10, width=8).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    logits, outs = m.forward_blocks(x)
    assert list(outs) == list(BLOCK_NAMES)
    torch.testing.assert_close(logits, m(x))
    none, some = m.forward_blocks(x, ["layer2.1"], stop_early=True)
    assert none is None and list(some) == ["layer2.1"]
    torch.testing.assert_close(some["layer2.1"], outs["layer2.1"])
    assert all((v >= 0).all() for v in outs.values())  # after the block's final ReLU


def _reference_r3d(sd, x):
    """An independent functional implementation of torchvision's r3d_18 forward (eval mode)."""

    def bn(h, p):
        return F.batch_norm(h, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"], False, 0.0, 1e-5)

    h = F.relu(bn(F.conv3d(x, sd["stem.0.weight"], stride=(1, 2, 2), padding=(1, 3, 3)), "stem.1"))
    for s in range(1, 5):
        for b in range(2):
            p = f"layer{s}.{b}"
            stride = 2 if (s > 1 and b == 0) else 1
            out = F.relu(bn(F.conv3d(h, sd[p + ".conv1.0.weight"], stride=stride, padding=1), p + ".conv1.1"))
            out = bn(F.conv3d(out, sd[p + ".conv2.0.weight"], padding=1), p + ".conv2.1")
            if p + ".downsample.0.weight" in sd:
                h = bn(F.conv3d(h, sd[p + ".downsample.0.weight"], stride=stride), p + ".downsample.1")
            h = F.relu(out + h)
    return F.linear(h.mean(dim=(2, 3, 4)), sd["fc.weight"], sd["fc.bias"])


def test_outputs_match_independent_reference_with_random_bn_stats():
    torch.manual_seed(1)
    m = r3d_18(num_classes=7, width=8)
    sd = m.state_dict()
    for k, v in sd.items():  # non-trivial BN statistics, so eval-mode BN is really exercised
        if k.endswith("running_mean"):
            v.copy_(torch.randn_like(v) * 0.1)
        elif k.endswith("running_var"):
            v.copy_(torch.rand_like(v) + 0.5)
        elif k.endswith(".bias") and "fc" not in k:
            v.copy_(torch.randn_like(v) * 0.1)
    m.load_state_dict(sd, strict=True)
    m.eval()
    x = torch.randn(2, 3, 4, 32, 32)
    torch.testing.assert_close(m(x), _reference_r3d(sd, x), rtol=1e-4, atol=1e-5)


def test_matches_torchvision_golden_outputs():
    """Names, shapes and logits recorded from torchvision's own r3d_18 (scripts/make_torchvision_golden.py)."""
    import json
    from pathlib import Path

    from golden_weights import deterministic_input, fill_deterministic

    golden = json.loads((Path(__file__).parents[1] / "fixtures" / "torchvision_r3d18_golden.json").read_text())
    ours = r3d_18(num_classes=400)
    assert [[k, list(v.shape)] for k, v in ours.state_dict().items()] == golden["state_dict"]
    fill_deterministic(ours)
    ours.eval()
    with torch.no_grad():
        logits = ours(deterministic_input())
    torch.testing.assert_close(logits, torch.tensor(golden["logits"]), rtol=1e-4, atol=1e-4)


def test_torchvision_state_dict_loads_strict_and_matches():
    tv = __import__("pytest").importorskip("torchvision.models.video")
    ref = tv.r3d_18(weights=None).eval()
    ours = r3d_18(num_classes=400).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(1, 3, 8, 64, 64)
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-4, atol=1e-5)


def test_normalize():
    x = torch.full((1, 3, 2, 4, 4), 255, dtype=torch.uint8)
    y = normalize(x)
    torch.testing.assert_close(y[0, :, 0, 0, 0], (1 - torch.tensor([0.43216, 0.394666, 0.37645])) / torch.tensor([0.22803, 0.22145, 0.216989]))
    import pytest

    with pytest.raises(ValueError, match="B, 3, T, H, W"):
        normalize(torch.zeros(3, 4, 4))


def test_the_backbone_is_built_from_model_arch():
    from stdann.config import load_config
    from stdann.models import BACKBONES, build_backbone
    from stdann.models.moco import build_moco

    assert set(BACKBONES) == {"r3d_18"}
    net = build_backbone("r3d_18", width=8)
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in r3d_18(None, 8).parameters())
    with pytest.raises(ValueError, match=r"model.arch must be one of \['r3d_18'\]"):
        build_backbone("r2plus1d_18", width=8)
    moco = build_moco(load_config("smoke"))
    assert isinstance(moco.backbone, type(net))

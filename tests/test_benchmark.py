"""Benchmarks at smoke scale: every phase timed, the baseline computes the same thing, the optimised
step is the trainer's step, the CLI's JSON parses. No timed assertions (speed targets live in
docs/benchmarks.md, not in unit tests)."""

import csv
import json
from pathlib import Path

import pytest
import torch

from stdann.config import ConfigError, load_config
from stdann.training import benchmark as B

SMOKE = ["train.deterministic=true", "train.threads=2"]


def cfg_for(*extra):
    return load_config("smoke", overrides=SMOKE + list(extra))


@pytest.fixture(scope="module")
def result():
    return B.bench_train(cfg_for(), "cpu", steps=2, warmup=1)


def test_every_phase_of_every_variant_is_timed(result):
    assert set(result["variants"]) == {"optimized", "baseline", "no_spatial"}
    for name, v in result["variants"].items():
        phases = v["phases_s"]
        assert set(phases) == set(B.PHASES)
        skip = {"spatial_loss"} if name == "no_spatial" else set()
        assert all(phases[p] > 0 for p in B.PHASES if p not in skip), (name, phases)
        assert v["step_s_median"] > 0 and v["clips_per_s"] > 0 and v["finite"]
        assert sum(phases.values()) == pytest.approx(v["step_s_median"], rel=0.5)
        assert v["peak_memory_mb"] > 0
    assert result["speedup_vs_baseline"] > 0
    assert 0 < result["spatial_loss_share"]["spatial_loss_forward_phase"] < 1
    assert result["peak_bf16_tflops"] is None  # CPU: n/a
    assert result["variants"]["baseline"]["channels_last"] is False
    assert result["config"]["clips_per_step"] == 2 * result["config"]["batch_size_pairs"]


def test_same_clips_same_losses_in_baseline_and_optimised(result):
    # CPU: both fp32, same weights, data and neighborhoods. With the same memory format the two steps
    # agree to rounding over several updates (EMA loop = fused EMA, spatial-loss loop = batched, ...);
    # channels_last only changes the convolutions' rounding (which training then amplifies).
    r = B.bench_train(cfg_for("train.channels_last=false"), "cpu", steps=3, warmup=0, ablation=False)
    a, b = r["variants"]["optimized"]["losses"], r["variants"]["baseline"]["losses"]
    assert a == pytest.approx(b, rel=1e-5, abs=1e-5)
    first = [result["variants"][v]["losses"][0] for v in ("optimized", "baseline")]
    assert first[0] == pytest.approx(first[1], rel=1e-4)


def test_flops_counted_like_torchvision():
    f = B.model_flops_per_clip(load_config("paper"))
    # torchvision documents 40.7 GMACs for r3d_18 at 16x112x112 -> ~81.4 GFLOPs (2 per MAC)
    assert f["forward_per_clip"] / 1e9 == pytest.approx(81.4, rel=0.01)
    assert f["train_per_clip"] > 4 * f["forward_per_clip"]


def test_peak_table():
    assert B.gpu_peak_tflops("NVIDIA H100 80GB HBM3") == (989.4, "H100 SXM")
    assert B.gpu_peak_tflops("NVIDIA H100 PCIe")[1] == "H100 PCIe"
    assert B.gpu_peak_tflops("NVIDIA H200")[1] == "H200"
    assert B.gpu_peak_tflops("NVIDIA A100-SXM4-80GB")[0] == 312.0
    assert B.gpu_peak_tflops("Tesla T4")[0] is None


def test_spatial_loss_loop_equals_batched():
    from stdann.topography import SpatialLoss

    cfg = cfg_for("topography.neighborhoods_per_step=4")
    pos = B.make_positions(cfg)
    fn = SpatialLoss(pos, kind="rel", neighborhoods_per_step=4)
    torch.manual_seed(0)
    from stdann.models.r3d import block_output_shapes

    outs = {b: torch.relu(torch.randn(6, *shape)) for b, shape in block_output_shapes(8, 4, 32).items()}
    batched = fn(outs, torch.Generator().manual_seed(5))
    loop = B.spatial_loss_loop(fn, outs, torch.Generator().manual_seed(5))
    assert set(batched) == set(loop)
    for b in batched:
        assert float(loop[b]) == pytest.approx(float(batched[b]), abs=1e-5)
    # and the gradients agree
    x = {b: v.clone().requires_grad_(True) for b, v in outs.items()}
    torch.stack(list(fn(x, torch.Generator().manual_seed(5)).values())).sum().backward()
    g1 = {b: v.grad.clone() for b, v in x.items()}
    x = {b: v.clone().requires_grad_(True) for b, v in outs.items()}
    torch.stack(list(B.spatial_loss_loop(fn, x, torch.Generator().manual_seed(5)).values())).sum().backward()
    for b in x:
        torch.testing.assert_close(x[b].grad, g1[b], rtol=1e-4, atol=1e-6)


def test_optimised_step_is_the_trainers_step(tmp_path):
    from stdann.training.trainer import train

    cfg = cfg_for("optim.max_steps=2", "train.log_every=1", "train.ckpt_every=2")
    train(cfg, tmp_path / "run", progress=False)
    with open(tmp_path / "run" / "logs" / "train.csv") as f:
        rows = list(csv.DictReader(f))
    step = B.BenchStep(cfg, torch.device("cpu"), "optimized")
    for s in range(2):
        out = step.step(s)
        assert float(out["loss"]) == pytest.approx(float(rows[s]["loss"]), abs=1e-5)
        assert float(out["sl_total"]) == pytest.approx(float(rows[s]["sl_total"]), abs=1e-5)


def test_ema_loop_equals_fused():
    from stdann.models.moco import MoCo

    torch.manual_seed(0)
    a = MoCo(width=4, dim=8, hidden_dim=8, queue_size=16)
    with torch.no_grad():
        for p in a.encoder_q.parameters():
            p.add_(torch.randn_like(p))
    b = MoCo(width=4, dim=8, hidden_dim=8, queue_size=16)
    b.load_state_dict(a.state_dict())
    a.momentum_update()
    B._ema_loop(b)
    for pa, pb in zip(a.encoder_k.parameters(), b.encoder_k.parameters()):
        torch.testing.assert_close(pa, pb)


def test_clear_errors():
    with pytest.raises(ConfigError, match="queue_size"):
        B.bench_train(cfg_for("optim.batch_size=6"), "cpu", steps=1, warmup=0)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            B.resolve_bench_device("cuda")


def test_cli_json(capsys):
    from stdann.cli.main import main

    rc = main(["bench", "train", "--preset", "smoke", "--steps", "1", "--warmup", "0", "--device", "cpu",
               "--no-ablation", "--json", "--set", "train.threads=2"])
    assert rc == 0
    r = json.loads(capsys.readouterr().out)
    assert r["benchmark"] == "train" and set(r["variants"]) == {"optimized", "baseline"}
    rc = main(["bench", "ephys", "--preset", "smoke", "--device", "cpu", "--blocks", "layer1.0,layer4.1",
               "--json", "--set", "ephys.n_bootstrap=50"])
    assert rc == 0
    e = json.loads(capsys.readouterr().out)
    assert e["benchmark"] == "ephys" and set(e["record"]) == {"gratings", "rdk", "plaids"}
    assert set(e["analyse"]) == {"layer1.0", "layer4.1"} and e["total_s"] > 0
    assert e["total_s"] == pytest.approx(e["record_s"] + e["analyse_s"], rel=0.1, abs=0.05)


def test_cli_cuda_without_cuda_is_one_line_error(capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    from stdann.cli.main import main

    rc = main(["bench", "train", "--preset", "smoke", "--device", "cuda", "--json"])
    assert rc == 2
    assert "CUDA is not available" in capsys.readouterr().err

"""Benchmarks at smoke scale: every phase timed, the baseline computes the same thing, the optimised
step is the trainer's step, the CLI's JSON parses. No timed assertions (speed targets live in
docs/benchmarks.md, not in unit tests)."""

import csv
import dataclasses
import json

import pytest
import torch

from stdann.config import ConfigError, load_config
from stdann.devices import resolve_device
from stdann.models.r3d import block_output_shapes
from stdann.topography import SpatialLoss
from stdann.training import benchmark as B
from stdann.training import step as S
from stdann.training.setup import step_settings
from stdann.training.trainer import train

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


F32_EPS = 2.0**-23  # float32 machine epsilon: one rounding of a stored parameter moves it by at most eps/2 x |value|


def _share_state(dst: S.TrainStep, src: S.TrainStep) -> None:
    """Give ``dst`` exactly ``src``'s training state: weights, buffers (queue, BatchNorm statistics,
    key encoder) and the SGD momentum buffers."""
    dst.model.load_state_dict(src.model.state_dict())
    for pd, ps in zip(dst.params, src.params):
        dst.optimizer.state.pop(pd, None)
        if "momentum_buffer" in src.optimizer.state.get(ps, {}):
            dst.optimizer.state[pd]["momentum_buffer"] = src.optimizer.state[ps]["momentum_buffer"].clone()


def _norm(tensors) -> float:
    return float(torch.sqrt(sum((t.detach().double() ** 2).sum() for t in tensors)))


def _distance(xs, ys) -> float:
    return _norm([x.detach().double() - y.detach().double() for x, y in zip(xs, ys)])


def _assert_same_update(before, after_a, after_b, rel: float) -> None:
    """Two updates of the same tensors agree: |Δa − Δb| <= rel·|Δa| + the rounding of storing the new
    values in float32 (eps/2 per element, for each of the two)."""
    delta_a = [a.detach().double() - p for a, p in zip(after_a, before)]
    delta_b = [b.detach().double() - p for b, p in zip(after_b, before)]
    bound = rel * _norm(delta_a) + F32_EPS * _norm(after_a)
    assert _distance(delta_a, delta_b) <= bound


def test_baseline_step_computes_the_optimised_step():
    """Every step of the plain baseline computes what the optimised step computes (so the speed-up compares
    like with like). Each step starts both variants from one shared state, so float32 rounding is never
    amplified by training, and each quantity is checked as tightly as its arithmetic allows:

    * exactly equal (the same code on the same numbers): the clips, the forward pass, the InfoNCE loss, the
      keys pushed into the queue, the BatchNorm statistics, the optimiser's hyper-parameters;
    * equal to float32 rounding (another summation order): the spatial loss (one batched call vs a loop over
      neighborhoods; correlations over <= 500 units, pairwise sums: ~1e-6, checked at 1e-5) and what follows
      from it — gradients, momentum buffers, the updated weights and the EMA key encoder (norm-wise at 1e-4);
    * channels_last only re-rounds the convolutions: its loss from the same state agrees to 1e-4.
    """
    cpu = torch.device("cpu")
    cfg = cfg_for("train.channels_last=false")
    positions, source = B.make_positions(cfg), B.make_source(cfg, cpu)
    opt = B.variant_step(cfg, cpu, "optimized", positions=positions, source=source)
    base = B.variant_step(cfg, cpu, "baseline", positions=positions, source=source)
    cl = B.variant_step(cfg_for("train.channels_last=true"), cpu, "optimized", positions=positions, source=source)
    assert not base.settings.channels_last and not opt.settings.channels_last and cl.settings.channels_last
    for s in range(3):
        _share_state(base, opt)
        _share_state(cl, opt)
        q0 = [p.detach().clone() for p in opt.params]
        k0 = [p.detach().clone() for p in opt.model.encoder_k.parameters()]
        a, b, c = opt(s), base(s), cl(s)

        assert torch.equal(a.task, b.task), s
        assert torch.equal(opt.model.queue, base.model.queue) and torch.equal(opt.model.queue_ptr, base.model.queue_ptr)
        for (name, x), (_, y) in zip(opt.model.named_buffers(), base.model.named_buffers()):
            if "running" in name or "num_batches" in name:
                assert torch.equal(x, y), (s, name)
        hyper = ("lr", "momentum", "weight_decay", "dampening", "nesterov", "maximize")
        assert [opt.optimizer.param_groups[0][h] for h in hyper] == [base.optimizer.param_groups[0][h] for h in hyper]

        assert a.sl and set(a.sl) == set(b.sl)
        for k in a.sl:
            assert float(a.sl[k]) == pytest.approx(float(b.sl[k]), abs=1e-5), (s, k)
        assert float(a.sl_total) == pytest.approx(float(b.sl_total), abs=1e-5), s
        assert float(a.loss) == pytest.approx(float(b.loss), abs=1e-5), s
        ga, gb = [p.grad for p in opt.params], [p.grad for p in base.params]
        assert _distance(ga, gb) <= 1e-4 * _norm(ga), s
        ma = [opt.optimizer.state[p]["momentum_buffer"] for p in opt.params]
        mb = [base.optimizer.state[p]["momentum_buffer"] for p in base.params]
        assert _distance(ma, mb) <= 1e-4 * _norm(ma), s
        _assert_same_update([p.double() for p in q0], opt.params, base.params, rel=1e-4)
        _assert_same_update([p.double() for p in k0], list(opt.model.encoder_k.parameters()),
                            list(base.model.encoder_k.parameters()), rel=1e-4)

        assert float(c.loss) == pytest.approx(float(a.loss), rel=1e-4), s


def test_flops_counted_like_torchvision():
    f = B.model_flops_per_clip(load_config("paper"))
    # torchvision documents 40.7 GMACs for r3d_18 at 16x112x112 -> ~81.4 GFLOPs (2 per MAC)
    assert f["forward_per_clip"] / 1e9 == pytest.approx(81.4, rel=0.01)
    # per pair: a query (3 forwards' worth, with backward) and a key (1 forward) per view that queries,
    # plus the queue's logits; the paper preset's MoCo v2 has one such view, the symmetrised loss two
    fwd, queue = f["forward_per_clip"], 3 * 2.0 * 128 * 65536
    assert f["train_per_pair"] == pytest.approx(4 * fwd + queue)
    assert f["train_per_clip"] == pytest.approx(f["train_per_pair"] / 2)
    sym = B.model_flops_per_clip(load_config("paper", overrides=["moco.symmetric=true"]))
    assert sym["train_per_pair"] == pytest.approx(2 * f["train_per_pair"])


def test_peak_table():
    assert B.gpu_peak_tflops("NVIDIA H100 80GB HBM3") == (989.4, "H100 SXM")
    assert B.gpu_peak_tflops("NVIDIA H100 PCIe")[1] == "H100 PCIe"
    assert B.gpu_peak_tflops("NVIDIA H200")[1] == "H200"
    assert B.gpu_peak_tflops("NVIDIA A100-SXM4-80GB")[0] == 312.0
    assert B.gpu_peak_tflops("Tesla T4")[0] is None


def test_spatial_loss_loop_equals_batched():
    cfg = cfg_for("topography.neighborhoods_per_step=4")
    pos = B.make_positions(cfg)
    fn = SpatialLoss(pos, kind="rel", neighborhoods_per_step=4)
    torch.manual_seed(0)
    outs = {b: torch.relu(torch.randn(6, *shape)) for b, shape in block_output_shapes(8, 4, 32).items()}
    batched = fn(outs, torch.Generator().manual_seed(5))
    nbs = fn.sample(torch.Generator().manual_seed(5), torch.device("cpu"))
    loop = S.spatial_loss_loop(fn, outs, nbs)
    assert set(batched) == set(loop)
    for b in batched:
        assert float(loop[b]) == pytest.approx(float(batched[b]), abs=1e-5)
    # and the gradients agree
    x = {b: v.clone().requires_grad_(True) for b, v in outs.items()}
    torch.stack(list(fn(x, torch.Generator().manual_seed(5)).values())).sum().backward()
    g1 = {b: v.grad.clone() for b, v in x.items()}
    x = {b: v.clone().requires_grad_(True) for b, v in outs.items()}
    torch.stack(list(S.spatial_loss_loop(fn, x, nbs).values())).sum().backward()
    for b in x:
        torch.testing.assert_close(x[b].grad, g1[b], rtol=1e-4, atol=1e-6)


def test_benchmark_times_exactly_the_trainers_step(tmp_path, monkeypatch):
    """The trainer and the benchmark's optimised variant run one function (TrainStep.__call__) with one
    set of settings (cuDNN, NaN check, foreach, memory format, autocast, compile); every phase the
    benchmark times is marked by that call's own hook; and they compute the same numbers."""
    calls = []
    real_call = S.TrainStep.__call__

    def spy(self, step, mark=None):
        out = real_call(self, step, mark)
        calls.append((self, step, mark))
        return out

    monkeypatch.setattr(S.TrainStep, "__call__", spy)
    cfg = cfg_for("optim.max_steps=2", "train.log_every=1", "train.ckpt_every=2")
    train(cfg, tmp_path / "run", progress=False)
    trainer_calls = list(calls)
    calls.clear()
    r = B.bench_train(cfg, "cpu", steps=2, warmup=0, baseline=False, ablation=False)

    assert [c[1] for c in trainer_calls] == [0, 1] and [c[1] for c in calls] == [0, 1]
    trainer_step, bench_step = trainer_calls[0][0], calls[0][0]
    assert type(trainer_step) is type(bench_step) is S.TrainStep
    assert trainer_step.settings == bench_step.settings == step_settings(cfg, torch.device("cpu"))
    assert r["variants"]["optimized"]["settings"] == dataclasses.asdict(trainer_step.settings)
    assert trainer_step.optimizer.defaults == bench_step.optimizer.defaults
    assert trainer_step.schedule == bench_step.schedule and trainer_step.blocks == bench_step.blocks
    assert all(c[2] is None for c in trainer_calls)  # the trainer pays for no timing
    for _, _, marks in calls:  # the benchmark's time points are all set by the step itself
        assert set(marks.points) == {"start", *B._POINTS}
    with open(tmp_path / "run" / "logs" / "train.csv") as f:
        rows = list(csv.DictReader(f))
    for logged, timed in zip(rows, r["variants"]["optimized"]["losses"]):
        assert timed == pytest.approx(float(logged["loss"]), abs=1e-5)


class _NanSource:
    """Clip pairs that are all NaN (a diverged pipeline)."""

    def __init__(self, cfg):
        self.batch_size, self.cfg = cfg.optim.batch_size, cfg

    def batch(self, step):
        shape = (self.batch_size, 3, self.cfg.data.frames, self.cfg.data.size, self.cfg.data.size)
        return torch.full(shape, float("nan")), torch.full(shape, float("nan"))


def test_json_of_a_non_finite_loss_is_written_with_null(monkeypatch, capsys):
    from stdann.cli.main import main

    selected = []
    monkeypatch.setattr(B, "make_source", lambda cfg, device: _NanSource(cfg))
    monkeypatch.setattr(B, "select_device", lambda dev: selected.append(dev) or dev)
    rc = main(["bench", "train", "--preset", "smoke", "--steps", "1", "--warmup", "0", "--device", "cpu",
               "--no-baseline", "--json", "--set", "topography.alpha=0", "--set", "train.threads=2"])
    assert rc == 0
    v = json.loads(capsys.readouterr().out)["variants"]["optimized"]
    assert v["losses"] == [None] and v["finite"] is False
    assert selected == [torch.device("cpu")]  # the benchmark makes its device the current one


def test_select_makes_cuda_n_the_current_device(monkeypatch):
    from stdann import devices

    chosen = []
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: chosen.append(d))
    assert devices.select(torch.device("cuda", 1)) == torch.device("cuda", 1)
    assert devices.select(torch.device("cpu")) == torch.device("cpu")
    assert chosen == [torch.device("cuda", 1)]


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
    S.ema_loop(b)
    for pa, pb in zip(a.encoder_k.parameters(), b.encoder_k.parameters()):
        torch.testing.assert_close(pa, pb)


def test_clear_errors():
    with pytest.raises(ConfigError, match="queue_size"):
        B.bench_train(cfg_for("optim.batch_size=6"), "cpu", steps=1, warmup=0)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device("cuda", "--device", ("cpu", "cuda"))


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
    assert e["benchmark"] == "ephys" and set(e["record"]) == {"blank", "gratings", "rdk", "plaids"}
    assert set(e["analyse"]) == {"layer1.0", "layer4.1"} and e["total_s"] > 0
    assert e["total_s"] == pytest.approx(e["record_s"] + e["analyse_s"], rel=0.1, abs=0.05)


def test_cli_cuda_without_cuda_is_one_line_error(capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    from stdann.cli.main import main

    rc = main(["bench", "train", "--preset", "smoke", "--device", "cuda", "--json"])
    assert rc == 2
    assert "CUDA is not available" in capsys.readouterr().err

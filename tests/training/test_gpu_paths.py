"""The trainer's GPU paths, checked on the CPU: fp32 InfoNCE under bf16 autocast, torch.compile of
the α = 0 step, the benchmark timing the trainer's own CUDA settings, clips counted over both views
and every rank (docs/benchmarks.md maps each GPU finding to its test)."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from stdann.config import load_config
from stdann.models.moco import MoCo
from stdann.training import benchmark as B
from stdann.training import step as S
from stdann.training.logger import Interval
from stdann.training.setup import step_settings


# -- finding 5: InfoNCE logits in fp32 under bf16 autocast -------------------------------------------------
def _bf16_logits(m: MoCo, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """What InfoNCE computed before the fix under bf16 autocast: q @ queue in bf16."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        qn = F.normalize(q, dim=1)
        return torch.cat([(qn * k).sum(dim=1, keepdim=True), qn @ m.queue.clone()], dim=1) / m.temperature


def test_info_nce_is_float32_under_bf16_autocast(monkeypatch):
    import stdann.models.moco as moco_module

    torch.manual_seed(0)
    m = MoCo(width=4, dim=128, hidden_dim=8, queue_size=4096, temperature=0.2)
    q = torch.randn(16, 128, requires_grad=True)
    k = F.normalize(q.detach() + 0.3 * torch.randn(16, 128), dim=1)  # positives close to their queries
    ref, _ = m.info_nce(q, k)  # fp32, no autocast
    seen = []
    real_ce = moco_module.F.cross_entropy
    monkeypatch.setattr(moco_module.F, "cross_entropy", lambda logits, labels: seen.append(logits) or real_ce(logits, labels))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp, acc = m.info_nce(q, k)
    assert [t.dtype for t in seen] == [torch.float32] and seen[0].shape == (16, 4097)
    assert amp.dtype == torch.float32 and acc.dtype == torch.float32
    assert float(amp.detach()) == pytest.approx(float(ref.detach()), abs=1e-6)  # the same number as without autocast
    # the check is sensitive: bf16 logits of the same inputs are off by ~0.01 (vs ~1e-6 in fp32)
    err = (_bf16_logits(m, q, k).float() - seen[0]).abs().max()
    assert float(err) > 1e-3
    amp.backward()
    assert q.grad.dtype == torch.float32 and torch.isfinite(q.grad).all()


# -- finding 8: torch.compile covers contrastive-only training (alpha = 0) ----------------------------------
def test_compile_covers_the_alpha_zero_step(monkeypatch):
    """``compile_encoders`` compiles each encoder's whole forward (backbone + head, with or without
    kept blocks), so the α = 0 step runs compiled code for every query and key pass."""
    calls = []

    def fake_compile(fn, **kwargs):  # a recording stand-in (inductor needs a C++ toolchain on the CPU)
        def compiled(*args, **kw):
            calls.append(len(args[1]) if len(args) > 1 else len(kw.get("blocks", ())))
            return fn(*args, **kw)
        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    cfg = load_config("smoke", overrides=["topography.alpha=0", "train.threads=1"])
    dev = torch.device("cpu")
    settings = dataclasses.replace(step_settings(cfg, dev), compile=True)
    step = S.build_step(cfg, dev, settings, B.make_source(cfg, dev))
    assert step.spatial is None and step.blocks == ()
    out = step(0)
    assert torch.isfinite(out.loss)
    # 2 query passes + 2 views x bn_groups key passes, all through the compiled forward, none with blocks
    assert len(calls) == 2 + 2 * cfg.moco.bn_groups and set(calls) == {0}


# -- finding 3: the benchmark builds the trainer's step with the trainer's CUDA settings --------------------
def test_bench_uses_the_trainers_cuda_settings(monkeypatch):
    """On CUDA the trainer's step turns cuDNN autotuning on, the per-step NaN check off, bf16 autocast
    and foreach SGD on; the benchmark's optimised and α = 0 variants get exactly those settings, its
    baseline the plain ones (no GPU needed: the step's builder is intercepted)."""
    built = {}
    monkeypatch.setattr(B, "build_step", lambda cfg, device, settings, source, positions=None: settings)
    cfg = load_config("smoke")
    cuda = torch.device("cuda", 0)
    for variant in B.VARIANTS:
        built[variant] = B.variant_step(cfg, cuda, variant, positions={}, source=object())
    trainer = step_settings(cfg, cuda)
    assert built["optimized"] == built["no_spatial"] == trainer
    assert trainer.cudnn_benchmark and not trainer.check_finite and trainer.amp_bf16 and trainer.foreach
    assert built["baseline"] == S.plain_settings()
    det = load_config("smoke", overrides=["train.deterministic=true"])
    assert B.variant_step(det, cuda, "optimized", positions={}, source=object()).cudnn_benchmark is False


# -- finding 10: clips_per_s counts clips (both views of every pair, every rank) ---------------------------
def test_logged_clips_count_both_views_of_every_rank():
    cfg = load_config("smoke", overrides=["topography.alpha=0", "train.threads=1"])
    dev = torch.device("cpu")
    step = S.build_step(cfg, dev, step_settings(cfg, dev), B.make_source(cfg, dev))
    out = step(0)
    assert out.clips == 2 * cfg.optim.batch_size
    interval = Interval(dev, now=0.0)
    interval.add(out, world_size=2)  # two ranks, each with this batch
    assert interval.clips == 4 * cfg.optim.batch_size
    assert interval.clips_per_s(now=2.0) == pytest.approx(2 * cfg.optim.batch_size)

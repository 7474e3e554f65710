"""Held-out instance discrimination (stdann.training.evaluation) against closed forms."""

import math

import pytest
import torch
import torch.nn.functional as F

from stdann.config import load_config
from stdann.models.moco import build_moco
from stdann.training.evaluation import heldout_seed, instance_discrimination, similarity_metrics
from stdann.training.step import compile_encoders


def test_orthonormal_pairs_are_perfectly_discriminated():
    n, tau = 8, 0.2
    q = torch.eye(n)
    m = similarity_metrics(q, q.clone(), tau)
    assert m["top1"] == 1.0 and m["top5"] == 1.0
    # own logit 1/τ, the n − 1 others 0: CE = ln(1 + (n − 1) e^{−1/τ})
    assert m["infonce"] == pytest.approx(math.log(1 + (n - 1) * math.exp(-1 / tau)), rel=1e-12)
    assert m["positive_cosine"] == pytest.approx(1.0) and m["negative_cosine"] == pytest.approx(0.0)


def test_a_collapsed_encoder_scores_chance_not_perfect():
    n = 16
    v = F.normalize(torch.ones(n, 4), dim=1)
    m = similarity_metrics(v, v.clone(), 0.2)
    assert m["top1"] == 0.0  # ties count against the query
    assert m["infonce"] == pytest.approx(math.log(n), rel=1e-12) == pytest.approx(m["chance_infonce"])


def test_swapped_keys_are_counted_wrong():
    q = torch.eye(6)
    k = q[[1, 0, 2, 3, 4, 5]]  # the first two queries see each other's key as most similar
    m = similarity_metrics(q, k, 0.1)
    assert m["top1"] == pytest.approx(4 / 6)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="must both be"):
        similarity_metrics(torch.eye(3), torch.eye(4), 0.2)


def test_instance_discrimination_restores_train_mode_and_is_deterministic():
    cfg = load_config("smoke")
    model = build_moco(cfg)
    model.train()
    x = torch.randn(6, 3, cfg.data.frames, cfg.data.size, cfg.data.size)
    a = instance_discrimination(model, x, x, batch_size=4)
    b = instance_discrimination(model, x, x, batch_size=3)
    assert model.training
    assert a["n_pairs"] == 6 and 0.0 <= a["top1"] <= 1.0
    # eval-mode BN: how the clips are batched does not change the embeddings
    assert a["infonce"] == pytest.approx(b["infonce"], rel=1e-3)


def test_the_checks_use_the_eager_forward_of_compiled_encoders(monkeypatch):
    """A compiled training forward would recompile for the checks' eval mode and batch size."""
    cfg = load_config("smoke")
    model = build_moco(cfg)
    x = torch.randn(4, 3, cfg.data.frames, cfg.data.size, cfg.data.size)
    ref = instance_discrimination(model, x, x, batch_size=4)
    monkeypatch.setattr(torch, "compile", lambda fn: (lambda *a, **k: (_ for _ in ()).throw(AssertionError("compiled forward called"))))
    compile_encoders(model)
    with pytest.raises(AssertionError, match="compiled forward"):
        model.encoder_q(x)
    assert instance_discrimination(model, x, x, batch_size=4) == ref


def test_heldout_seed_differs_between_runs():
    assert heldout_seed(0, 0) != heldout_seed(0, 1) != heldout_seed(1, 1)

"""MoCo for video: queue, momentum update, shuffle-BN bookkeeping, InfoNCE, and learning."""

import math

import pytest
import torch
import torch.nn.functional as F

from stdann.models.moco import MoCo


def tiny(**kw):
    torch.manual_seed(0)
    args = dict(width=8, dim=16, hidden_dim=32, queue_size=32, momentum=0.99, temperature=0.2, bn_groups=2)
    args.update(kw)
    return MoCo(**args)


def test_queue_update_wraps_and_checks_multiple():
    m = tiny(queue_size=12)
    k1 = F.normalize(torch.randn(4, 16), dim=1)
    m.enqueue(k1)
    assert int(m.queue_ptr) == 4
    torch.testing.assert_close(m.queue[:, :4], k1.T)
    for _ in range(2):
        m.enqueue(F.normalize(torch.randn(4, 16), dim=1))
    assert int(m.queue_ptr) == 0  # 12 slots filled, wrapped around
    k4 = F.normalize(torch.randn(4, 16), dim=1)
    m.enqueue(k4)
    torch.testing.assert_close(m.queue[:, :4], k4.T)
    with pytest.raises(ValueError, match="multiple"):
        m.enqueue(torch.randn(5, 16))


def test_momentum_update_is_ema():
    m = tiny(momentum=0.9)
    with torch.no_grad():
        for p in m.encoder_q.parameters():
            p.add_(1.0)
    q = [p.detach().clone() for p in m.encoder_q.parameters()]
    k = [p.detach().clone() for p in m.encoder_k.parameters()]
    m.momentum_update()
    for pq, pk, new in zip(q, k, m.encoder_k.parameters()):
        torch.testing.assert_close(new, 0.9 * pk + 0.1 * pq)
    assert not any(p.requires_grad for p in m.encoder_k.parameters())


def test_shuffled_keys_are_unshuffled():
    # With one BN group the shuffle cannot change BN statistics, so keys must equal the plain ones.
    m = tiny(bn_groups=1)
    x = torch.randn(6, 3, 4, 32, 32)
    plain = F.normalize(m.encoder_k(x)[0], dim=1)
    shuffled = m._keys(x, torch.Generator().manual_seed(3))
    torch.testing.assert_close(shuffled, plain, rtol=1e-4, atol=1e-5)
    # With groups, statistics differ per group (that is the point) but every key stays unit-norm.
    m2 = tiny(bn_groups=3)
    k = m2._keys(x, torch.Generator().manual_seed(3))
    torch.testing.assert_close(k.norm(dim=1), torch.ones(6))


def test_info_nce_matches_formula():
    m = tiny(queue_size=8, temperature=0.5)
    q = torch.randn(3, 16)
    k = F.normalize(torch.randn(3, 16), dim=1)
    loss, _ = m.info_nce(q, k)
    qn = F.normalize(q, dim=1)
    expected = 0.0
    for i in range(3):
        pos = math.exp(float(qn[i] @ k[i]) / 0.5)
        neg = sum(math.exp(float(qn[i] @ m.queue[:, j]) / 0.5) for j in range(8))
        expected += -math.log(pos / (pos + neg)) / 3
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_training_steps_lower_the_loss_on_a_tiny_batch():
    # Queue = keys of other clips (hard negatives of the same kind), held fixed while training, so
    # the loss before and after is measured against the same negatives.
    m = tiny(queue_size=16, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    base = torch.randn(4, 3, 4, 32, 32, generator=g)
    x1 = base + 0.5 * torch.randn(base.shape, generator=g)
    x2 = base + 0.5 * torch.randn(base.shape, generator=g)
    with torch.no_grad():
        m.enqueue(m._keys(torch.randn(16, 3, 4, 32, 32, generator=g), torch.Generator().manual_seed(0)))

    def loss_now():
        m.eval()
        with torch.no_grad():
            q1, _ = m.encoder_q(x1)
            k2 = F.normalize(m.encoder_q(x2)[0], dim=1)
        m.train()
        return float(m.info_nce(q1, k2)[0])

    before = loss_now()
    opt = torch.optim.SGD([p for p in m.encoder_q.parameters() if p.requires_grad], lr=0.05, momentum=0.9)
    for step in range(15):
        out = m(x1, x2, generator=torch.Generator().manual_seed(step))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        m.momentum_update()
    after = loss_now()
    assert after < 0.7 * before, (before, after)


def test_forward_returns_block_outputs_of_both_views():
    m = tiny()
    x1, x2 = torch.randn(2, 3, 4, 32, 32), torch.randn(2, 3, 4, 32, 32)
    out = m(x1, x2, blocks=("layer3.1",))
    v1, v2 = out["blocks"]["layer3.1"]  # one output per view
    assert v1.shape == v2.shape == (2, 32, 1, 4, 4)
    assert v1.requires_grad and v2.requires_grad
    assert out["keys"].shape == (4, 16) and not out["keys"].requires_grad


def test_reverse_negatives_add_one_logit_per_query():
    m = tiny(queue_size=8, temperature=0.5, reverse_negatives=True)
    q = torch.randn(3, 16)
    k = F.normalize(torch.randn(3, 16), dim=1)
    r = F.normalize(torch.randn(3, 16), dim=1)
    loss, _ = m.info_nce(q, k, r)
    qn = F.normalize(q, dim=1)
    expected = 0.0
    for i in range(3):
        pos = math.exp(float(qn[i] @ k[i]) / 0.5)
        neg = math.exp(float(qn[i] @ r[i]) / 0.5) + sum(math.exp(float(qn[i] @ m.queue[:, j]) / 0.5) for j in range(8))
        expected += -math.log(pos / (pos + neg)) / 3
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    out = m(torch.randn(2, 3, 4, 32, 32), torch.randn(2, 3, 4, 32, 32))
    assert torch.isfinite(out["loss"])


def test_asymmetric_moco_is_one_query_against_the_other_views_key():
    """moco.symmetric = false: view 1's query against view 2's key (and its reversed clip), one key
    per pair for the queue, and the block outputs of view 1 only."""
    sym = tiny(shuffle_bn=False, reverse_negatives=True)
    asym = tiny(shuffle_bn=False, reverse_negatives=True, symmetric=False)
    asym.load_state_dict(sym.state_dict())
    x1, x2 = torch.randn(2, 3, 4, 32, 32), torch.randn(2, 3, 4, 32, 32)
    out = asym(x1, x2, blocks=("layer3.1",))
    (v1,) = out["blocks"]["layer3.1"]
    assert v1.shape == (2, 32, 1, 4, 4) and v1.requires_grad
    assert out["keys"].shape == (2, 16)
    with torch.no_grad():
        q1 = sym.encoder_q(x1)[0]
        k2 = F.normalize(sym.encoder_k(x2)[0], dim=1)
        r2 = F.normalize(sym.encoder_k(x2.flip(2))[0], dim=1)
        expected, _ = sym.info_nce(q1, k2, r2)
    assert float(out["loss"].detach()) == pytest.approx(float(expected), rel=1e-5)
    assert torch.allclose(out["keys"], k2, atol=1e-6)
    # the symmetrised loss is a different number: the mean over both directions
    assert float(sym(x1, x2)["loss"].detach()) != pytest.approx(float(expected), rel=1e-3)
    asym.enqueue(out["keys"])
    assert int(asym.queue_ptr) == 2


def test_moco_takes_its_query_encoder_as_the_builder_of_moco_does():
    from stdann.models.moco import Encoder
    from stdann.models.r3d import build_backbone

    torch.manual_seed(1)
    enc = Encoder(build_backbone("r3d_18", 2), 8, 16)
    m = MoCo(dim=16, queue_size=32, encoder=enc)
    assert m.encoder_q is enc and m.backbone.num_features == 16  # 8 x width
    k = dict(m.encoder_k.named_parameters())
    for name, p in enc.named_parameters():  # the key encoder starts as a frozen copy
        assert torch.equal(k[name], p) and k[name] is not p and not k[name].requires_grad
    q, _ = m.encoder_q(torch.rand(2, 3, 4, 16, 16))
    assert q.shape == (2, 16)

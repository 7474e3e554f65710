"""The spatial loss taken inside the forward pass (UnitTap): the same loss and gradients as gathering
from the finished block outputs, without a dense block-sized gradient per block at the start of
backward."""

import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from stdann.models.r3d import BLOCK_NAMES, block_output_shapes, r3d_18
from stdann.topography import SpatialLoss, init_model_positions
from stdann.topography.spatial_loss import UnitTap

WIDTH, FRAMES, SIZE = 4, 4, 32


@pytest.fixture(scope="module")
def positions():
    return init_model_positions(width=WIDTH, frames=FRAMES, size=SIZE, n_windows=400, seed=1)


def _net():
    torch.manual_seed(0)
    return r3d_18(None, WIDTH)


def _plain(net, fn, x, blocks, seed, stop_early=False):
    _, outs = net.forward_blocks(x, blocks, stop_early=stop_early)
    return fn(outs, torch.Generator().manual_seed(seed))


def _tapped(net, fn, x, blocks, seed, stop_early=False):
    nb = fn.sample(torch.Generator().manual_seed(seed), x.device)
    tap = UnitTap()
    tap.arm(fn.units(nb))
    net.forward_blocks(x, blocks, stop_early=stop_early, tap=tap)
    return fn.from_samples(tap.take(), nb)


@pytest.mark.parametrize("blocks,stop_early", [(BLOCK_NAMES, False), (("layer1.1", "layer2.1"), True)])
def test_tap_gives_the_losses_and_gradients_of_the_plain_gather(positions, blocks, stop_early):
    """With stop_early the last tapped block feeds nothing downstream: its gradient comes from the
    spatial loss alone."""
    fn = SpatialLoss({b: positions[b] for b in blocks}, neighborhoods_per_step=3)
    x = torch.randn(6, 3, FRAMES, SIZE, SIZE)
    results = []
    for run in (_plain, _tapped):
        net = _net()
        xi = x.clone().requires_grad_(True)
        losses = run(net, fn, xi, blocks, seed=7, stop_early=stop_early)
        total = torch.stack(list(losses.values())).sum()
        total.backward()
        results.append((losses, xi.grad, [p.grad.clone() for p in net.parameters() if p.grad is not None]))
    (la, gxa, gpa), (lb, gxb, gpb) = results
    assert set(la) == set(lb) == set(blocks)
    for b in blocks:
        assert torch.equal(la[b], lb[b]), b  # the same numbers gathered, the same arithmetic
    # another summation order only (the units' gradient enters before or after the rest): norm-wise 1e-5
    assert len(gpa) == len(gpb) > 0
    for a, b in zip([gxa] + gpa, [gxb] + gpb):
        assert float((a - b).norm()) <= 1e-5 * float(a.norm())


class _LiveBlockGradients(TorchDispatchMode):
    """During backward: how many block-output-sized tensors made by backward are alive when the
    first convolution backward runs (before it, only the spatial loss's nodes have run)."""

    def __init__(self, sizes):
        super().__init__()
        self.sizes, self.made, self.at_first_conv = set(sizes), [], None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.at_first_conv is None and func is torch.ops.aten.convolution_backward.default:
            self.at_first_conv = sum(r() is not None for r in self.made)
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.numel() in self.sizes:
                self.made.append(weakref.ref(t))
        return out


def _live_at_first_conv(positions, run):
    fn = SpatialLoss(positions, neighborhoods_per_step=2)
    net = _net()
    x = torch.randn(4, 3, FRAMES, SIZE, SIZE)
    sizes = [x.shape[0] * c * t * h * w for c, t, h, w in block_output_shapes(WIDTH, FRAMES, SIZE).values()]
    losses = run(net, fn, x, BLOCK_NAMES, seed=3)
    mode = _LiveBlockGradients(sizes)
    with mode:
        torch.stack(list(losses.values())).sum().backward()
    return mode.at_first_conv


def test_no_dense_block_gradient_at_the_start_of_backward(positions):
    plain = _live_at_first_conv(positions, _plain)
    tapped = _live_at_first_conv(positions, _tapped)
    assert plain >= len(BLOCK_NAMES) - 1  # the plain gather: one dense gradient per block, all at once
    assert tapped <= 2  # the tap: only the last block's incoming gradient and its sum with the units'

"""Gradients stay finite for units that are (nearly) constant — a dead ReLU unit is common."""

import torch

from stdann.topography.spatial_loss import spatial_loss


def test_gradient_finite_with_near_constant_units():
    torch.manual_seed(0)
    x = torch.rand(16, 10)
    x[:, 0] = 0.0  # silent unit
    x[:, 1] = 0.3 + 1e-16 * torch.arange(16)  # variance far below float32 resolution
    x[:, 2] = 1e-20 * torch.rand(16)  # tiny but not exactly constant
    x.requires_grad_(True)
    pos = torch.rand(10, 2)
    spatial_loss(x, pos).backward()
    assert torch.isfinite(x.grad).all()

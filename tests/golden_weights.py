"""Deterministic weights and input shared by the golden-output test and its generator script."""

import torch


def fill_deterministic(model: torch.nn.Module) -> None:
    """Every state-dict entry drawn from its own seeded generator (independent of module order)."""
    with torch.no_grad():
        for i, (name, t) in enumerate(sorted(model.state_dict().items())):
            if not t.is_floating_point():
                continue
            g = torch.Generator().manual_seed(1000 + i)
            r = torch.randn(t.shape, generator=g)
            if name.endswith("running_var"):
                t.copy_(r.abs() * 0.5 + 0.5)
            elif name.endswith("running_mean") or name.endswith("bias"):
                t.copy_(r * 0.1)
            elif name.endswith("weight") and t.dim() == 1:  # BatchNorm scale
                t.copy_(1.0 + 0.1 * r)
            else:  # conv / linear weights, fan-in scaled
                fan_in = t[0].numel()
                t.copy_(r * (2.0 / fan_in) ** 0.5)


def deterministic_input() -> torch.Tensor:
    return torch.randn(2, 3, 8, 48, 48, generator=torch.Generator().manual_seed(123))

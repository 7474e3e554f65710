"""Record the time-averaged responses of every unit of chosen blocks to a stream of stimuli.

Response of a unit = its block output (after the block's final ReLU) averaged over time frames.
Units are flattened row-major over (C, H, W), the order of ``LayerPositions.coordinates``.
The model runs in eval mode (BatchNorm uses its running statistics) under ``torch.inference_mode``;
clips in [0, 1] are normalised with :func:`stdann.models.normalize`. Batches are streamed and,
with ``groups``, averaged on the fly (e.g. over grating phases), so only (groups × units) float32
values are ever held per block.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

from stdann.models.inputs import normalize


def bn_mode(calibration_clips: int) -> str:
    """How BatchNorm was set during a measurement, in words (metrics.json ``batchnorm``, figure
    footers): re-estimated only when ``calibration_clips`` > 0."""
    if calibration_clips > 0:
        return (f"eval; running statistics re-estimated on the same {calibration_clips} generated naturalistic clips "
                "for every network (trained and untrained) before recording")
    return "eval (running statistics as stored in the checkpoint)"


@torch.no_grad()
def calibrate_batchnorm(model: torch.nn.Module, batches: Iterable[torch.Tensor], device=None,
                        normalize_input: bool = True) -> int:
    """Re-estimate every BatchNorm's running mean/var as the plain average over ``batches``
    (clips in [0, 1]); the model is left in eval mode. Returns the number of clips seen."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all calibration batches
    model.train()
    n = 0
    try:
        for x in batches:
            x = x.to(device) if device is not None else x
            model(normalize(x) if normalize_input else x)
            n += x.shape[0]
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom
        model.eval()
    return n


def record_responses(model, stimulus_batches: Iterable[torch.Tensor], blocks, device=None, groups=None,
                     n_groups: int | None = None, progress=None, normalize_input: bool = True) -> dict[str, np.ndarray]:
    """Run batches of clips (B, 3, T, H, W) in [0, 1] through ``model`` and return, per block,
    float32 responses (n_stimuli, n_units) — or (n_groups, n_units) means when ``groups`` (one
    integer per stimulus, in stream order) is given.

    ``progress``: an optional tqdm-like object whose ``update(n)`` is called per batch.
    """
    blocks = list(blocks)
    if not blocks:
        raise ValueError("no blocks to record")
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    chunks: dict[str, list[np.ndarray]] = {b: [] for b in blocks}
    if groups is not None:
        groups = torch.as_tensor(np.asarray(groups), dtype=torch.long)
        n_groups = int(groups.max()) + 1 if n_groups is None else int(n_groups)
        counts = torch.bincount(groups, minlength=n_groups).to(torch.float64)
    seen = 0
    with torch.inference_mode():
        for x in stimulus_batches:
            x = x.to(device, non_blocking=True)
            if normalize_input:
                x = normalize(x)
            _, outs = model.forward_blocks(x, blocks, stop_early=True)
            b = x.shape[0]
            for name in blocks:
                r = outs[name].float().mean(dim=2).flatten(1)  # (B, C*H*W)
                if groups is None:
                    chunks[name].append(r.cpu().numpy())
                else:
                    g = groups[seen : seen + b].to(device)
                    if name not in sums:
                        sums[name] = torch.zeros(n_groups, r.shape[1], device=device, dtype=torch.float64)
                    sums[name].index_add_(0, g, r.double())
            seen += b
            if progress is not None:
                progress.update(b)
    if groups is not None:
        if seen != groups.numel():
            raise ValueError(f"{seen} stimuli were streamed but {groups.numel()} group labels given")
        return {name: (sums[name].cpu() / counts.clamp(min=1)[:, None]).float().numpy() for name in blocks}
    return {name: np.concatenate(chunks[name], axis=0) for name in blocks}


def record_set(model, stim_set, blocks, batch_size: int = 32, device=None, progress=None) -> dict[str, np.ndarray]:
    """Responses to a :class:`~stdann.ephys.stimuli.StimulusSet`, averaged over its
    ``average_over`` factors and reshaped to (*kept levels, units)."""
    if device is None:
        device = next(model.parameters()).device
    groups, shape = stim_set.groups()
    out = record_responses(model, stim_set.batches(batch_size, device), blocks, device, groups,
                           int(np.prod(shape)), progress)
    return {k: v.reshape(*shape, v.shape[-1]) for k, v in out.items()}

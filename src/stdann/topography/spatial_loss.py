"""The spatial loss of topographic deep networks.

For one neighborhood of M units with responses X (S samples × M units) and positions p (M × 2, mm):

* r_ij = Pearson correlation of units i and j across the S samples; a unit whose responses do not
  vary (e.g. a silent ReLU unit) has r_ij = 0 with every other unit;
* D_ij = 1 / (d_ij + 1), d_ij = ‖p_i − p_j‖ (mm);
* relative spatial loss (Margalit et al. 2024, TDANN):
      SL_rel = (1 − corr(r, D)) / 2,  corr = Pearson correlation over the pairs i < j,
  in [0, 1]: 0 when response similarity is an increasing linear function of proximity, ≈ ½ for
  unstructured responses. When r or D is constant over the pairs, corr is taken as 0 (SL_rel = ½).
* absolute spatial loss (Lee et al. 2020, "Topographic deep artificial neural networks
  reproduce the hallmarks of the primate inferior temporal cortex face processing network"):
      SL_abs = mean over i < j of |r_ij − D_ij|.

The loss is differentiable with respect to the responses only; positions are constants. All
correlation arithmetic runs in float32 with autocast disabled, so the loss is safe inside a bf16
autocast region.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import nn

from stdann.devices import upload
from stdann.topography.positions import LayerPositions, PositionsError

KINDS = ("rel", "abs")
_TINY = 1e-30
_ZERO_VAR_REL = 1e-5  # a unit whose s.d. is below this fraction of its |mean| counts as constant


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"spatial loss kind must be one of {KINDS} (topography.loss), got {kind!r}")


def normalize_responses(x: torch.Tensor) -> torch.Tensor:
    """Centre and scale the responses along dim -2 (samples) so that ``xnᵀ xn`` is the Pearson
    correlation matrix. Constant units (s.d. ≤ 1e-5·|mean|, or exactly 0) become all-zero columns,
    hence r = 0 with every unit. float32 in, float32 out."""
    mean = x.mean(dim=-2, keepdim=True)
    xc = x - mean
    ss = (xc * xc).sum(dim=-2, keepdim=True)
    n = x.shape[-2]
    const = ss <= n * (_ZERO_VAR_REL * mean.abs()) ** 2
    const = const | (ss <= _TINY)
    # Double-where: constant units get a harmless denominator, so neither the value nor the
    # gradient of rsqrt can overflow (0 · inf = NaN in backward otherwise).
    inv = torch.where(const, torch.zeros_like(ss), torch.rsqrt(torch.where(const, torch.ones_like(ss), ss)))
    return xc * inv


def correlation_matrices(x: torch.Tensor) -> torch.Tensor:
    """(..., S, M) responses → (..., M, M) Pearson correlations (constant units: 0)."""
    xn = normalize_responses(x)
    return xn.transpose(-1, -2) @ xn


def proximity(coords: torch.Tensor) -> torch.Tensor:
    """(..., M, 2) positions (mm) → D = 1/(d + 1), (..., M, M)."""
    d = torch.cdist(coords, coords, compute_mode="donot_use_mm_for_euclid_dist")  # exact differences
    return 1.0 / (d + 1.0)


def _pearson_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of a and b along the last dim; 0 where either is constant."""
    ac = a - a.mean(-1, keepdim=True)
    bc = b - b.mean(-1, keepdim=True)
    sa = (ac * ac).sum(-1)
    sb = (bc * bc).sum(-1)
    num = (ac * bc).sum(-1)
    ok = ~((sa <= _TINY) | (sb <= _TINY))  # NaN stays NaN (reported by SpatialLoss)
    one = torch.ones_like(sa)
    den = torch.sqrt(torch.where(ok, sa, one)) * torch.sqrt(torch.where(ok, sb, one))
    return torch.where(ok, num / den, torch.zeros_like(num))


def sl_rel_from_matrices(r: torch.Tensor, dmat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The one SL_rel arithmetic: SL_rel = (1 − corr(r, D)) / 2 over the pairs i<j of (..., M, M)
    symmetric matrices, and the scale ‖r − r̄‖·‖D − D̄‖ over those pairs (the swap
    pre-optimisation's ΔSL_rel divides by it). corr = 0 where r or D is constant.

    Uses the off-diagonal entries of the full matrices (every pair twice, which leaves means,
    variances and hence the Pearson correlation unchanged, and doubles the sums of squares, hence
    the ½ on the scale) — no gather of the upper triangle.
    """
    m = r.shape[-1]
    off = 1.0 - torch.eye(m, device=r.device, dtype=r.dtype)
    n = float(m * (m - 1))
    mr = (r * off).sum((-1, -2), keepdim=True) / n
    md = (dmat * off).sum((-1, -2), keepdim=True) / n
    rc = (r - mr) * off
    dc = (dmat - md) * off
    sa = (rc * rc).sum((-1, -2))
    sb = (dc * dc).sum((-1, -2))
    num = (rc * dc).sum((-1, -2))
    ok = ~((sa <= _TINY) | (sb <= _TINY))  # NaN stays NaN (reported by SpatialLoss)
    den = torch.sqrt(sa.clamp_min(_TINY)) * torch.sqrt(sb.clamp_min(_TINY))
    corr = torch.where(ok, num / den, torch.zeros_like(num))
    return (1.0 - corr) / 2.0, torch.where(ok, den, torch.zeros_like(den)) / 2.0


def _loss_from_matrices(r: torch.Tensor, dmat: torch.Tensor, kind: str) -> torch.Tensor:
    """SL_abs or SL_rel (:func:`sl_rel_from_matrices`) over the pairs i<j of (..., M, M) matrices."""
    if kind == "abs":
        m = r.shape[-1]
        off = 1.0 - torch.eye(m, device=r.device, dtype=r.dtype)
        return ((r - dmat).abs() * off).sum((-1, -2)) / float(m * (m - 1))
    return sl_rel_from_matrices(r, dmat)[0]


def spatial_loss(responses: torch.Tensor, positions: torch.Tensor, kind: str = "rel") -> torch.Tensor:
    """SL_rel or SL_abs of one neighborhood: responses (S × M), positions (M × 2, mm) → scalar.

    Gradients flow to ``responses`` only (positions are detached).
    """
    _check_kind(kind)
    if responses.ndim != 2 or positions.ndim != 2 or positions.shape[1] != 2:
        raise ValueError(f"spatial_loss expects responses (S, M) and positions (M, 2); got {tuple(responses.shape)}, {tuple(positions.shape)}")
    if responses.shape[1] != positions.shape[0]:
        raise ValueError(f"{responses.shape[1]} units in responses but {positions.shape[0]} positions")
    if responses.shape[1] < 2:
        raise ValueError("a neighborhood needs at least 2 units")
    with torch.autocast(device_type=responses.device.type, enabled=False):
        x = responses.float()
        p = torch.as_tensor(positions, device=x.device).detach().float()
        return _loss_from_matrices(correlation_matrices(x), proximity(p), kind)


def batched_spatial_loss(
    responses: torch.Tensor, coords: torch.Tensor, nbhd: torch.Tensor, kind: str = "rel"
) -> torch.Tensor:
    """Spatial loss of K neighborhoods at once, no Python loop.

    responses: (S, N_all) responses of all units of a block; coords: (N_all, 2) positions (mm);
    nbhd: (K, M) unit indices. Returns (K,) losses.
    """
    _check_kind(kind)
    if responses.ndim != 2 or coords.ndim != 2 or coords.shape[1] != 2 or nbhd.ndim != 2:
        raise ValueError(
            f"batched_spatial_loss expects responses (S, N), coords (N, 2), nbhd (K, M); got "
            f"{tuple(responses.shape)}, {tuple(coords.shape)}, {tuple(nbhd.shape)}"
        )
    if responses.shape[1] != coords.shape[0]:
        raise ValueError(f"{responses.shape[1]} units in responses but {coords.shape[0]} coordinates")
    with torch.autocast(device_type=responses.device.type, enabled=False):
        nb = nbhd.to(responses.device, torch.long)
        x = responses.float()[:, nb].permute(1, 0, 2)  # (K, S, M)
        p = coords.detach().to(responses.device, torch.float32)[nb]  # (K, M, 2)
        return neighborhood_losses(x, p, kind)


def neighborhood_losses(x: torch.Tensor, p: torch.Tensor, kind: str = "rel") -> torch.Tensor:
    """Spatial loss of K gathered neighborhoods: x (K, S, M) responses, p (K, M, 2) mm → (K,)."""
    _check_kind(kind)
    with torch.autocast(device_type=x.device.type, enabled=False):
        return _loss_from_matrices(correlation_matrices(x.float()), proximity(p.detach().float()), kind)


def block_responses(output: torch.Tensor) -> torch.Tensor:
    """Block output (B, C, T, H, W) → time-averaged responses (B, C·H·W), row-major (C, H, W)."""
    if output.ndim != 5:
        raise ValueError(f"block outputs must be (B, C, T, H, W), got shape {tuple(output.shape)}")
    return output.mean(dim=2).flatten(1)


class _KeepUnits(torch.autograd.Function):
    """A block output passes through unchanged, and a few of its units are kept, averaged over time.

    ``forward(y (B, C, T, H, W), c, h, w (U,))`` → ``(y, samples (B, U) float32)``.

    Backward adds the kept units' gradient into the gradient that reaches ``y`` from the rest of
    the network, when that gradient is complete (out of place, one block at a time). A plain
    advanced-index gather would instead give autograd a dense, zero-filled gradient the size of
    the whole block output as soon as the spatial loss's backward runs, i.e. at the very start of
    backward, for every block and view at once (≈ 8.7 GB in bf16 at paper scale).
    """

    @staticmethod
    def forward(ctx, y: torch.Tensor, c: torch.Tensor, h: torch.Tensor, w: torch.Tensor):
        ctx.save_for_backward(c, h, w)
        ctx.meta = (y.shape, y.dtype, y.device)
        ctx.set_materialize_grads(False)
        samples = y[:, c, :, h, w].float().mean(-1).T  # (U, B, T) -> (B, U), in any memory format
        return y.view_as(y), samples

    @staticmethod
    def backward(ctx, grad_y: torch.Tensor | None, grad_samples: torch.Tensor | None):
        if grad_samples is None:
            return grad_y, None, None, None
        c, h, w = ctx.saved_tensors
        shape, dtype, device = ctx.meta
        if grad_y is None:  # the output was used by the spatial loss alone
            grad_y = torch.zeros(shape, dtype=dtype, device=device)
        t = shape[2]
        vals = (grad_samples.T / t).unsqueeze(-1).expand(-1, -1, t).to(grad_y.dtype)  # (U, B, T)
        return torch.ops.aten.index_put(grad_y, [None, c, None, h, w], vals, True), None, None, None


class UnitTap:
    """Keeps the sampled units of block outputs inside the forward pass (``tap`` of
    :meth:`stdann.models.r3d.VideoResNet.forward_blocks`): :meth:`arm` with the units of a step,
    run the forward pass(es), then :meth:`take` the samples (see :class:`_KeepUnits`)."""

    def __init__(self) -> None:
        self.units: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        self.samples: dict[str, list[torch.Tensor]] = {}

    def arm(self, units: Mapping[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
        self.units = dict(units)
        self.samples = {b: [] for b in self.units}

    def __call__(self, name: str, y: torch.Tensor) -> torch.Tensor:
        if name not in self.units:
            return y
        y, kept = _KeepUnits.apply(y, *self.units[name])
        self.samples[name].append(kept)
        return y

    def take(self) -> dict[str, torch.Tensor]:
        """{block: (samples of every pass so far, concatenated in order, U)}; disarms the tap."""
        out = {b: torch.cat(v, dim=0) for b, v in self.samples.items() if v}
        self.units, self.samples = {}, {}
        return out


class SpatialLoss(nn.Module):
    """Spatial loss of several blocks, a few sampled neighborhoods per block per step.

    ``loss_fn(block_outputs, generator)`` → ``{block: mean SL over the sampled neighborhoods}``.
    A block's output may also be a tuple of tensors (e.g. MoCo's two views), whose samples are
    pooled after gathering the sampled units, without concatenating the whole outputs.
    Block outputs (B, C, T, H, W) are averaged over T and flattened row-major over (C, H, W)
    (the unit order of ``LayerPositions.coordinates``); samples are the B clips (pass both MoCo
    views concatenated to use every clip). ``neighborhoods_per_step`` rows of each block's
    ``neighborhood_indices`` are drawn with ``generator`` (with replacement) and evaluated as one
    batched operation. The total loss is ``α · Σ_blocks`` of the returned values (the trainer's
    job). With ``check_finite`` a non-finite loss raises PositionsError naming the block
    (one device synchronisation per call).

    The training step takes the units inside the forward pass instead (no dense gradient of a
    whole block output): ``nb = loss_fn.sample(generator, device)``, ``tap.arm(loss_fn.units(nb))``,
    the forward pass with ``tap``, then ``loss_fn.from_samples(tap.take(), nb)``.
    ``gather`` (e.g. :func:`stdann.distributed.gather_samples`) is applied to the sampled
    responses (samples along dim 0) before the correlations: with it, every rank computes the
    loss over the global batch.
    """

    def __init__(
        self,
        positions: Mapping[str, LayerPositions],
        kind: str = "rel",
        neighborhoods_per_step: int = 4,
        check_finite: bool = True,
        gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        _check_kind(kind)
        if neighborhoods_per_step < 1:
            raise ValueError(f"neighborhoods_per_step must be >= 1, got {neighborhoods_per_step}")
        if not positions:
            raise ValueError("SpatialLoss needs the positions of at least one block")
        for b, p in positions.items():
            if p.neighborhood_indices.shape[0] == 0:
                raise PositionsError(f"{b}: positions hold no neighborhoods; re-create them with init_positions")
        self.positions = dict(positions)
        self.kind = kind
        self.neighborhoods_per_step = int(neighborhoods_per_step)
        self.check_finite = check_finite
        self.gather = gather
        self._cache: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def blocks(self) -> list[str]:
        return list(self.positions)

    def _tensors(self, block: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (block, str(device))
        if key not in self._cache:
            p = self.positions[block]
            self._cache[key] = (
                torch.as_tensor(p.coordinates, dtype=torch.float32).to(device),
                torch.as_tensor(p.neighborhood_indices, dtype=torch.long).to(device),
            )
        return self._cache[key]

    def sample_neighborhoods(self, block: str, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
        _, nbhd = self._tensors(block, device)
        gdev = generator.device if generator is not None else device
        rows = torch.randint(nbhd.shape[0], (self.neighborhoods_per_step,), generator=generator, device=gdev)
        return nbhd[upload(rows, device)]  # never a blocking host-to-device copy (stdann.devices)

    def sample(self, generator: torch.Generator | None, device: torch.device) -> dict[str, torch.Tensor]:
        """The neighborhoods of one step: {block: (K, M) unit indices}, drawn block by block."""
        return {b: self.sample_neighborhoods(b, device, generator) for b in self.positions}

    def units(self, neighborhoods: Mapping[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """{block: (channel, row, column) indices of the sampled units, flattened (K·M,)} — what
        :meth:`UnitTap.arm` takes."""
        out = {}
        for b, nb in neighborhoods.items():
            _, h, w = self.positions[b].dims
            flat = nb.reshape(-1)
            rem = flat % (h * w)
            out[b] = (flat // (h * w), rem // w, rem % w)
        return out

    def _check_outputs(self, block_outputs: Mapping[str, torch.Tensor]) -> None:
        missing = [b for b in self.positions if b not in block_outputs]
        if missing:
            raise KeyError(
                f"SpatialLoss: no output for block(s) {missing}; request them in model.forward_blocks(x, blocks)"
            )
        for block, pos in self.positions.items():
            y = block_outputs[block]
            parts = tuple(y) if isinstance(y, (tuple, list)) else (y,)
            if any(p_.ndim != 5 for p_ in parts):
                raise PositionsError(f"{block}: block output must be (B, C, T, H, W), got {tuple(parts[0].shape)}")
            c, h, w = parts[0].shape[1], parts[0].shape[3], parts[0].shape[4]
            if (c, h, w) != tuple(pos.dims):
                raise PositionsError(
                    f"{block}: block output has (C, H, W) = {(c, h, w)} = {c * h * w} units but its positions "
                    f"were made for {tuple(pos.dims)} = {pos.num_units} units; positions belong to another "
                    "width or clip size — re-create them (`stdann positions init`)"
                )

    def forward(
        self, block_outputs: Mapping[str, torch.Tensor], generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        self._check_outputs(block_outputs)
        device = next(iter(block_outputs[b] if torch.is_tensor(block_outputs[b]) else block_outputs[b][0]
                           for b in self.positions)).device
        nbs = self.sample(generator, device)
        samples = {}
        for block, (c, h, w) in self.units(nbs).items():  # loop over ≤ 8 blocks, not over units
            y = block_outputs[block]
            parts = tuple(y) if isinstance(y, (tuple, list)) else (y,)  # per-view outputs, gathered separately
            with torch.autocast(device_type=device.type, enabled=False):
                # gather only the sampled units (any memory format, no copy of the whole block),
                # then average over time: (K·M, B, T) -> (B, K·M) per view
                samples[block] = torch.cat([p_[:, c, :, h, w].float().mean(-1).T for p_ in parts], dim=0)
        return self.from_samples(samples, nbs)

    def from_samples(self, samples: Mapping[str, torch.Tensor], neighborhoods: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """{block: mean loss of its K neighborhoods} from the sampled responses {block: (S, K·M)}
        (row = a clip, column = a unit of the flattened neighborhoods)."""
        blocks = list(self.positions)
        for b in blocks:
            if b not in samples:
                raise KeyError(f"SpatialLoss: no samples for block {b}; arm the tap with every block's units")
        if any(samples[b].shape[0] < 2 for b in blocks) and self.gather is None:
            raise ValueError(f"the spatial loss needs at least 2 samples per batch, got {samples[blocks[0]].shape[0]}")
        if self.gather is not None:  # one collective for all blocks: (S_local, ΣU) -> (S_global, ΣU)
            widths = [samples[b].shape[1] for b in blocks]
            joint = self.gather(torch.cat([samples[b] for b in blocks], dim=1))
            samples = dict(zip(blocks, torch.split(joint, widths, dim=1)))
        out: dict[str, torch.Tensor] = {}
        for b in blocks:
            nb = neighborhoods[b]
            k, m = nb.shape
            coords, _ = self._tensors(b, nb.device)
            x = samples[b].reshape(-1, k, m).transpose(0, 1)  # (K, S, M)
            out[b] = neighborhood_losses(x, coords[nb], self.kind).mean()
        if self.check_finite and out:
            vals = torch.stack([v.detach() for v in out.values()])
            if not bool(torch.isfinite(vals).all()):
                for b, v in out.items():
                    if not torch.isfinite(v):
                        bad = not bool(torch.isfinite(samples[b]).all())
                        why = "its block output contains NaN/Inf" if bad else "the loss itself is not finite"
                        raise PositionsError(
                            f"{b}: spatial loss is {v.item()} — {why}; lower the learning rate, check the "
                            "inputs, or turn off AMP (train.amp=off)"
                        )
        return out

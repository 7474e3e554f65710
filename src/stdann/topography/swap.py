"""Swap pre-optimisation of unit positions (Margalit et al. 2024, TDANN, "position
pre-optimization").

Given the responses of a network trained without the spatial loss (S probe samples × N units of
one block), the units' positions are permuted so that nearby units respond alike: pick a window
(one of the block's neighborhoods), compute the correlations r of the units in it, propose to swap
the positions of two of them, and keep the swap only if that window's SL_rel falls.

Vectorised form used here. Positions are *slots* (fixed points on the sheet, the initial
coordinates); the state is the permutation ``unit_at_slot``. A neighborhood is a set of slots (the
window is a region of the sheet), so whichever units sit in those slots form it. For a window with
correlations R and proximities D = 1/(d+1) (M × M, diagonals zeroed), swapping the units at local
places a and b permutes R against D; the multisets of r and D over the pairs i<j do not change, so
their means and variances do not either and only Σ_{i<j} r_ij D_ij changes, by

    G(a, b) = Σ_j (R_bj − R_aj)(D_aj − D_bj) + 2 R_ab D_ab,

hence ΔSL_rel = −G / (2 ‖r − r̄‖ ‖D − D̄‖) exactly (norms over the pairs). Each step evaluates
``windows_per_step × pairs_per_window`` proposals at once, keeps those with ΔSL_rel < 0, and
resolves conflicts so that a slot (hence a unit) takes part in at most one accepted swap per step:
a proposal is accepted when it has the largest improvement among the remaining proposals touching
either of its slots (a few rounds of this parallel greedy matching). Several accepted swaps in one
window interact only through the few pairs they share, which the per-proposal ΔSL ignores; the
recorded history is computed from the actual state.

After the last step the neighborhoods are mapped to the units now in their slots — exactly the
neighborhoods that recomputing them from the final coordinates with the same windows gives.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from tqdm.auto import tqdm

from stdann.topography.positions import LayerPositions, PositionsError
from stdann.topography.spatial_loss import block_responses, normalize_responses, proximity, sl_rel_from_matrices

_TINY = 1e-30


def _windows(xn: torch.Tensor, slot_xy: torch.Tensor, unit_at_slot: torch.Tensor, slots: torch.Tensor):
    units = unit_at_slot[slots]  # (W, M)
    x = xn[:, units].permute(1, 0, 2)  # (W, S, M)
    r = x.transpose(1, 2) @ x
    dmat = proximity(slot_xy[slots])
    return r, dmat


def mean_window_sl(
    xn: torch.Tensor, slot_xy: torch.Tensor, unit_at_slot: torch.Tensor, slots: torch.Tensor, chunk: int = 64
) -> float:
    vals = []
    for s in range(0, slots.shape[0], chunk):  # memory chunks of windows
        r, dmat = _windows(xn, slot_xy, unit_at_slot, slots[s : s + chunk])
        vals.append(sl_rel_from_matrices(r, dmat)[0])
    return float(torch.cat(vals).mean().item())


def proposal_delta_sl(
    r: torch.Tensor, dmat: torch.Tensor, den: torch.Tensor, a: torch.Tensor, b: torch.Tensor
) -> torch.Tensor:
    """Exact change of SL_rel of each window when swapping the units at local places a and b.

    r, dmat: (W, M, M) correlations and proximities with zeroed diagonals; den: (W,) the scale
    ‖r − r̄‖·‖D − D̄‖ over pairs; a, b: (W, Q) distinct local indices. Returns (W, Q):
    ΔSL_rel = −[Σ_j (R_bj − R_aj)(D_aj − D_bj) + 2 R_ab D_ab] / (2·den).
    """
    wi = torch.arange(r.shape[0], device=r.device)[:, None]
    gain = ((r[wi, b] - r[wi, a]) * (dmat[wi, a] - dmat[wi, b])).sum(-1) + 2 * r[wi, a, b] * dmat[wi, a, b]
    return -gain / (2.0 * den.clamp_min(_TINY))[:, None]


def _match(score: torch.Tensor, sa: torch.Tensor, sb: torch.Tensor, n_slots: int, rounds: int) -> torch.Tensor:
    """Parallel greedy matching: boolean mask of accepted proposals, no slot used twice."""
    q = score.shape[0]
    accepted = torch.zeros(q, dtype=torch.bool, device=score.device)
    if q == 0:
        return accepted
    order = torch.argsort(score, descending=True)
    rank = torch.empty(q, dtype=torch.long, device=score.device)
    rank[order] = torch.arange(q, device=score.device)
    alive = torch.ones(q, dtype=torch.bool, device=score.device)
    big = q + 1
    for _ in range(rounds):  # a few rounds, each fully vectorised
        r = torch.where(alive, rank, torch.full_like(rank, big))
        best = torch.full((n_slots,), big, dtype=torch.long, device=score.device)
        best.scatter_reduce_(0, sa, r, reduce="amin")
        best.scatter_reduce_(0, sb, r, reduce="amin")
        win = alive & (best[sa] == rank) & (best[sb] == rank)
        if not bool(win.any()):
            break
        accepted |= win
        used = torch.zeros(n_slots, dtype=torch.bool, device=score.device)
        used[sa[win]] = True
        used[sb[win]] = True
        alive = alive & ~win & ~used[sa] & ~used[sb]
        if not bool(alive.any()):
            break
    return accepted


def swap_optimize(
    responses: torch.Tensor,
    positions: LayerPositions,
    steps: int,
    windows_per_step: int = 64,
    pairs_per_window: int = 32,
    seed: int = 0,
    progress: bool = True,
    device: str | torch.device | None = None,
    eval_windows: int = 256,
    eval_every: int = 0,
    match_rounds: int = 4,
) -> tuple[LayerPositions, dict]:
    """Swap pre-optimisation of one block's positions.

    responses: (S, N) float responses of the block's N units (row-major (C, H, W)) to S probe
    samples, e.g. from :func:`record_probe_responses`. positions: the block's LayerPositions.
    Returns (new LayerPositions with permuted coordinates and re-mapped neighborhoods, history)
    where history holds ``step``/``sl`` (mean SL_rel of each step's windows before its swaps),
    ``accepted`` (swaps kept per step), and ``eval_step``/``eval_sl`` (mean SL_rel over a fixed
    set of ``eval_windows`` windows at the start, every ``eval_every`` steps and at the end).
    """
    responses = _checked_responses(responses, positions, steps, windows_per_step, pairs_per_window)
    block, n = positions.name, positions.num_units
    device = torch.device(device) if device is not None else responses.device
    gen = torch.Generator(device="cpu").manual_seed(int(seed))

    with torch.no_grad():
        xn = normalize_responses(responses.to(device, torch.float32))
        slot_xy = torch.as_tensor(positions.coordinates, dtype=torch.float32, device=device)
        nbhd = torch.as_tensor(positions.neighborhood_indices, dtype=torch.long, device=device)
        p, m = nbhd.shape
        unit_at_slot = torch.arange(n, device=device)
        ev_rows = torch.randperm(p, generator=gen)[: min(eval_windows, p)].to(device)
        ev_slots = nbhd[ev_rows]
        history: dict[str, list] = {"step": [], "sl": [], "accepted": [], "eval_step": [], "eval_sl": []}

        def evaluate(step: int) -> None:
            history["eval_step"].append(step)
            history["eval_sl"].append(mean_window_sl(xn, slot_xy, unit_at_slot, ev_slots))

        evaluate(0)
        sl_steps, acc_steps = [], []
        bar = tqdm(range(steps), desc=f"swap {block}", disable=not progress, leave=False)
        every = max(1, steps // 100)
        wi = torch.arange(windows_per_step, device=device)[:, None]
        for step in bar:
            sl, acc = _swap_step(xn, slot_xy, unit_at_slot, nbhd, gen, windows_per_step, pairs_per_window, match_rounds, wi)
            sl_steps.append(sl.mean())
            acc_steps.append(acc.sum())
            if progress and (step % every == 0 or step == steps - 1):
                bar.set_postfix(sl_rel=f"{float(sl.mean()):.4f}", kept=int(acc.sum()))
            if eval_every and (step + 1) % eval_every == 0 and step + 1 < steps:
                evaluate(step + 1)
        bar.close()
        if steps:
            history["step"] = list(range(steps))
            history["sl"] = torch.stack(sl_steps).cpu().tolist()
            history["accepted"] = [int(v) for v in torch.stack(acc_steps).cpu().tolist()]
            evaluate(steps)
        new = _permuted(positions, slot_xy, unit_at_slot, nbhd)
    history["total_accepted"] = int(sum(history["accepted"]))
    return new, history


def _checked_responses(responses, positions: LayerPositions, steps: int, windows_per_step: int,
                       pairs_per_window: int) -> torch.Tensor:
    """The probe responses as a (samples, units) tensor, every input of :func:`swap_optimize` checked."""
    if not isinstance(positions, LayerPositions):
        raise TypeError(f"positions must be a LayerPositions, got {type(positions).__name__}")
    block = positions.name
    responses = torch.as_tensor(responses)
    if responses.ndim != 2:
        raise PositionsError(f"{block}: responses must be (samples, units), got shape {tuple(responses.shape)}")
    s, n = responses.shape
    if n != positions.num_units:
        raise PositionsError(
            f"{block}: responses have {n} units but the positions hold {positions.num_units} "
            f"(C,H,W = {positions.dims}); record the responses of the same block, width and clip size"
        )
    if s < 3:
        raise PositionsError(f"{block}: {s} probe samples; at least 3 are needed to correlate units")
    if not bool(torch.isfinite(responses).all()):
        raise PositionsError(f"{block}: probe responses contain NaN or Inf")
    if positions.neighborhood_indices.shape[0] == 0:
        raise PositionsError(f"{block}: positions hold no neighborhoods")
    if steps < 0 or windows_per_step < 1 or pairs_per_window < 1:
        raise ValueError("steps must be >= 0 and windows_per_step, pairs_per_window >= 1")
    return responses


def _swap_step(xn, slot_xy, unit_at_slot, nbhd, gen, windows_per_step: int, pairs_per_window: int, match_rounds: int,
               wi) -> tuple[torch.Tensor, torch.Tensor]:
    """One step: sample windows, propose unit pairs in each, keep a conflict-free set of the swaps that
    lower SL_rel and apply them to ``unit_at_slot`` in place. Returns (SL_rel of each window before the
    step, the kept proposals' mask)."""
    p, m = nbhd.shape
    device = unit_at_slot.device
    rows = torch.randint(p, (windows_per_step,), generator=gen).to(device)
    slots = nbhd[rows]  # (W, M)
    r, dmat = _windows(xn, slot_xy, unit_at_slot, slots)
    sl, den = sl_rel_from_matrices(r, dmat)
    r.diagonal(dim1=1, dim2=2).zero_()
    dmat.diagonal(dim1=1, dim2=2).zero_()
    a = torch.randint(m, (windows_per_step, pairs_per_window), generator=gen).to(device)
    b = (a + torch.randint(1, m, (windows_per_step, pairs_per_window), generator=gen).to(device)) % m
    dsl = proposal_delta_sl(r, dmat, den, a, b)  # (W, Q) change of SL_rel
    good = (dsl < -1e-7) & (den > _TINY)[:, None]
    sa, sb = slots[wi, a][good], slots[wi, b][good]
    acc = _match(-dsl[good], sa, sb, unit_at_slot.numel(), match_rounds)
    sa, sb = sa[acc], sb[acc]
    ua, ub = unit_at_slot[sa], unit_at_slot[sb]
    unit_at_slot[sa] = ub
    unit_at_slot[sb] = ua
    return sl, acc


def _permuted(positions: LayerPositions, slot_xy, unit_at_slot, nbhd) -> LayerPositions:
    """The positions after the swaps: each unit at the slot it ended in, neighbourhoods re-mapped."""
    n = unit_at_slot.numel()
    slot_of_unit = torch.empty_like(unit_at_slot)
    slot_of_unit[unit_at_slot] = torch.arange(n, device=unit_at_slot.device)
    return LayerPositions(
        name=positions.name, dims=positions.dims, coordinates=slot_xy[slot_of_unit].cpu().numpy(),
        neighborhood_indices=unit_at_slot[nbhd].cpu().numpy(), neighborhood_width=positions.neighborhood_width,
        sheet_side=positions.sheet_side,
    )


def record_probe_responses(
    model: torch.nn.Module,
    clips_iterable: Iterable[torch.Tensor],
    blocks: Sequence[str],
    device: str | torch.device | None = None,
    out_device: str | torch.device = "cpu",
) -> dict[str, torch.Tensor]:
    """Time-averaged block outputs to probe clips: {block: (S, C·H·W) float32}.

    clips_iterable yields model-ready (normalised) batches (B, 3, T, H, W). The model runs in eval
    mode (BatchNorm with running statistics) without gradients; its mode is restored afterwards.
    """
    blocks = list(blocks)
    if device is None:
        device = next(model.parameters()).device
    device = torch.device(device)
    was_training = model.training
    model.eval()
    parts: dict[str, list[torch.Tensor]] = {b: [] for b in blocks}
    try:
        with torch.inference_mode():
            for x in clips_iterable:
                _, outs = model.forward_blocks(x.to(device), blocks, stop_early=True)
                for b in blocks:
                    parts[b].append(block_responses(outs[b].float()).to(out_device))
    finally:
        model.train(was_training)
    if not parts or not any(parts.values()):
        raise ValueError("record_probe_responses: the clip iterable yielded no batches")
    return {b: torch.cat(v, 0) for b, v in parts.items()}

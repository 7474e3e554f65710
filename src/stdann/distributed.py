"""Distributed helpers: process-group set-up from ``torchrun``'s environment, gathers, shuffle-BN,
and the few collectives that keep the ranks in step outside the model (stop decisions, waiting for
the main process, the spatial loss's global batch).

Launch with ``torchrun --nproc-per-node N -m stdann train ...`` (one node) or add
``--nnodes M --node-rank R --rdzv-backend c10d --rdzv-endpoint HOST:PORT`` for several nodes.
NCCL is used on CUDA, gloo on CPU. A process group made here is destroyed when the process exits
(``destroy_process_group``, registered with :mod:`atexit`).
"""

from __future__ import annotations

import atexit
import datetime
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist

from stdann.devices import upload
from stdann.errors import NETWORK_FIX, DistributedError, StdannError

# How long the other ranks wait for the main process's work between trainings (swap
# pre-optimisation of positions, analyses): far longer than a collective's usual timeout.
HOST_WAIT = datetime.timedelta(hours=24)
_HOST: Any = None  # the host group, made by _host_group()


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launch_rank() -> int:
    """This process's global rank as torchrun set it (0 when not launched by torchrun), readable
    before the process group exists."""
    return int(os.environ.get("RANK", "0"))


def init_distributed(device_kind: str, timeout_minutes: float = 0.0) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); no-op otherwise.
    Idempotent: the recipe, the studies and every training stage in one process share one group.
    ``timeout_minutes`` > 0 is how long a collective waits for the other ranks (``train.collective_minutes``;
    0 = torch's default)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        kwargs = {"timeout": datetime.timedelta(minutes=timeout_minutes)} if timeout_minutes > 0 else {}
        try:
            dist.init_process_group(backend=backend, **kwargs)
        except Exception as e:  # noqa: BLE001 - a rendezvous or network failure becomes one line with the fix
            raise DistributedError(f"could not join the {backend} process group ({type(e).__name__}: "
                                   f"{str(e).splitlines()[0][:200] if str(e) else ''}); {NETWORK_FIX}") from e
        atexit.register(cleanup)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_dist() else 0


def world_size() -> int:
    """The number of processes of the job (1 without a process group)."""
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    """Whether this process is the one that writes (rank 0, or the only process)."""
    return rank() == 0


@torch.no_grad()
def all_gather_cat(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0 (no gradient)."""
    if not is_dist():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


@torch.no_grad()
def shuffle_across_ranks(x: torch.Tensor, generator: torch.Generator,
                         wire_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle-BN (He et al. 2020): gather the key batch, permute it globally, keep this rank's share.

    Returns the local shuffled batch and the permutation needed by :func:`unshuffle_across_ranks`.
    Every rank draws the same permutation (same generator seed), so no broadcast is needed.
    ``wire_dtype`` (e.g. bf16 under bf16 autocast, where the key encoder's first convolution rounds
    its input to bf16 anyway) is the dtype the clips travel in: half the bytes of fp32 and, then, the
    same keys. The batch comes back in ``x``'s memory format (channels_last_3d stays so).
    """
    channels_last = x.dim() == 5 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last_3d)
    sent = x if wire_dtype is None else x.to(wire_dtype)
    gathered = all_gather_cat(sent)
    n = gathered.shape[0]
    perm = upload(torch.randperm(n, generator=generator), x.device)
    r, world = (dist.get_rank(), dist.get_world_size()) if is_dist() else (0, 1)
    local = n // world
    mine = gathered[perm[r * local : (r + 1) * local]]
    if channels_last:
        mine = mine.contiguous(memory_format=torch.channels_last_3d)
    return mine, perm


@torch.no_grad()
def unshuffle_across_ranks(y: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    gathered = all_gather_cat(y)
    inverse = torch.argsort(perm)
    r, world = (dist.get_rank(), dist.get_world_size()) if is_dist() else (0, 1)
    local = gathered.shape[0] // world
    return gathered[inverse[r * local : (r + 1) * local]]


class _GatherSamples(torch.autograd.Function):
    """All-gather along dim 0 whose backward returns ``world_size`` × this rank's slice of the
    incoming gradient, without communication: every rank computes the same loss from the same
    gathered tensor, and DDP averages the parameter gradients over the ranks, which then gives
    exactly the gradient of that one loss."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        world = dist.get_world_size()
        ctx.rank, ctx.world, ctx.n = dist.get_rank(), world, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n] * ctx.world


def gather_samples(x: torch.Tensor) -> torch.Tensor:
    """``x`` (samples along dim 0) of every rank, concatenated in rank order, differentiably (see
    :class:`_GatherSamples`); ``x`` itself without a process group. The spatial loss gathers its
    sampled responses with it, so that its correlations run over the global batch: the same α is
    the same objective on 1 and on N GPUs."""
    if not is_dist():
        return x
    return _GatherSamples.apply(x)


def barrier() -> None:
    if is_dist():
        dist.barrier()


def _flag_device() -> torch.device:
    """Where a collective's tensor must live: the current GPU for NCCL, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def agree(flags: Sequence[bool]) -> list[bool]:
    """Each flag OR-ed over all ranks, by one all-reduce of a few integers (the flags as they are
    without a process group). Every rank gets the same answer, so what is decided on it (stop,
    diverged, a failed save) is decided by all ranks at the same step."""
    if not is_dist():
        return [bool(f) for f in flags]
    t = torch.tensor([int(bool(f)) for f in flags], dtype=torch.int32).to(_flag_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def _host_group():
    """A gloo group over all ranks for host-side coordination: CPU tensors and objects (whatever the
    backend of the default group, and before any rank has chosen its GPU) and a long timeout
    (:data:`HOST_WAIT`), so that ranks can wait for the main process's long work. Made on first use,
    which every rank reaches at the same point (all callers below are collective)."""
    global _HOST
    if _HOST is None:
        _HOST = dist.new_group(backend="gloo", timeout=HOST_WAIT)
    return _HOST


def broadcast_from_main(value: Any) -> Any:
    """The main process's ``value`` (any picklable object) on every rank."""
    if not is_dist():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, group=_host_group())
    return box[0]


def wait_for_main() -> None:
    """Block every rank until all have arrived, for as long as the main process's work takes."""
    if is_dist():
        dist.barrier(group=_host_group())


def on_main(what: str, work: Callable[[], Any]) -> Any:
    """``work()`` on the main process only (its writes: checkpoints, logs, positions, reports), the
    other ranks waiting for it. If it raises, every rank raises — the main process its own error,
    the others a RuntimeError that names it — instead of the others waiting in their next
    collective until a timeout (:func:`on_every_rank`). Returns ``work()``'s result on the main
    process, None elsewhere."""
    return on_every_rank(what, lambda: work() if is_main() else None)


class RankMismatchError(StdannError, RuntimeError):
    """The ranks of one job read different things where they must read the same (a run folder that
    not every node sees, a config changed between the nodes' starts)."""


SHARED_FOLDER_FIX = ("every rank must read the same run folder: put --out on a filesystem that every node mounts "
                     "(or copy the run folder to each node before starting), and start every node with the same "
                     "command line")


def on_every_rank(what: str, work: Callable[[], Any]) -> Any:
    """``work()`` on every rank (local work, no collectives inside); if it raises on any rank, every
    rank raises — that rank its own error, the others a RuntimeError that names the rank and the
    error — instead of the others waiting in their next collective until a timeout."""
    if not is_dist():
        return work()
    result, error = None, None
    try:
        result = work()
    except Exception as e:  # noqa: BLE001 - re-raised below, on every rank
        error = e
    reports: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(reports, None if error is None else f"{type(error).__name__}: {error}", group=_host_group())
    if error is not None:
        raise error
    failed = [(r, m) for r, m in enumerate(reports) if m is not None]
    if failed:
        r, m = failed[0]
        raise RuntimeError(f"{what} failed on {'the main process (rank 0)' if r == 0 else f'rank {r}'}: {m}")
    return result


def same_on_every_rank(values: dict[str, Any], fix: str = SHARED_FOLDER_FIX) -> None:
    """Refuse, on every rank, when any rank's ``values`` (small fingerprints: hashes, steps) differ
    from rank 0's: :class:`RankMismatchError` naming what differs and where, then ``fix``."""
    if not is_dist():
        return
    everyone: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, dict(values), group=_host_group())
    ref = everyone[0]
    diffs = [f"{key} on rank {r} ({theirs.get(key)!r}) is not rank 0's ({ref.get(key)!r})"
             for r, theirs in enumerate(everyone[1:], start=1) for key in ref if theirs.get(key) != ref.get(key)]
    if diffs:
        raise RankMismatchError(f"the processes of this job disagree: {'; '.join(diffs[:4])}"
                                f"{f' (and {len(diffs) - 4} more)' if len(diffs) > 4 else ''}; {fix}")


def cleanup() -> None:
    """Destroy the process group (registered at exit by :func:`init_distributed`; safe to repeat)."""
    global _HOST
    _HOST = None
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

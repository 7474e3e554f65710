"""Distributed helpers: process-group set-up from ``torchrun``'s environment, gathers, shuffle-BN.

Launch with ``torchrun --nproc-per-node N -m stdann train ...`` (one node) or add
``--nnodes M --node-rank R --rdzv-backend c10d --rdzv-endpoint HOST:PORT`` for several nodes.
NCCL is used on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


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


def init_distributed(device_kind: str) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@torch.no_grad()
def all_gather_cat(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0 (no gradient)."""
    if not is_dist():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


@torch.no_grad()
def shuffle_across_ranks(x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle-BN (He et al. 2020): gather the key batch, permute it globally, keep this rank's share.

    Returns the local shuffled batch and the permutation needed by :func:`unshuffle_across_ranks`.
    Every rank draws the same permutation (same generator seed), so no broadcast is needed.
    """
    gathered = all_gather_cat(x)
    n = gathered.shape[0]
    perm = torch.randperm(n, generator=generator).to(x.device)
    rank, world = (dist.get_rank(), dist.get_world_size()) if is_dist() else (0, 1)
    local = n // world
    return gathered[perm[rank * local : (rank + 1) * local]], perm


@torch.no_grad()
def unshuffle_across_ranks(y: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    gathered = all_gather_cat(y)
    inverse = torch.argsort(perm)
    rank, world = (dist.get_rank(), dist.get_world_size()) if is_dist() else (0, 1)
    local = gathered.shape[0] // world
    return gathered[inverse[rank * local : (rank + 1) * local]]


def barrier() -> None:
    if is_dist():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

"""Shuffle-BN bookkeeping across two gloo processes."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(rank, world, port, q):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from stdann import distributed as D

    x = torch.arange(4, dtype=torch.float32).view(4, 1) + 10 * rank  # rank-specific rows
    g = torch.Generator().manual_seed(5)
    xs, perm = D.shuffle_across_ranks(x, g)
    everything = D.all_gather_cat(x)
    ok_local = torch.equal(xs, everything[perm[rank * 4 : (rank + 1) * 4]])
    back = D.unshuffle_across_ranks(xs * 2, perm)
    q.put((rank, ok_local, torch.equal(back, x * 2)))
    dist.destroy_process_group()


def test_shuffle_and_unshuffle_across_ranks():
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = [ctx.Process(target=_worker, args=(r, 2, port, q)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(q.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert results == [(0, True, True), (1, True, True)]

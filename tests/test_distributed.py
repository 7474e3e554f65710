"""Shuffle-BN bookkeeping across two gloo processes."""

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _worker(rank, world, port, q):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    from stdann import distributed

    x = torch.arange(4, dtype=torch.float32).view(4, 1) + 10 * rank  # rank-specific rows
    g = torch.Generator().manual_seed(5)
    xs, perm = distributed.shuffle_across_ranks(x, g)
    everything = distributed.all_gather_cat(x)
    ok_local = torch.equal(xs, everything[perm[rank * 4 : (rank + 1) * 4]])
    back = distributed.unshuffle_across_ranks(xs * 2, perm)
    # clips travel in bf16 when asked (the key encoder rounds them to bf16 under autocast) and keep
    # their channels_last_3d layout
    clips = (torch.randn(4, 3, 2, 4, 4, generator=torch.Generator().manual_seed(rank)) + rank).contiguous(
        memory_format=torch.channels_last_3d)
    cs, cperm = distributed.shuffle_across_ranks(clips, torch.Generator().manual_seed(7), wire_dtype=torch.bfloat16)
    want = distributed.all_gather_cat(clips.to(torch.bfloat16))[cperm[rank * 4 : (rank + 1) * 4]]
    ok_bf16 = cs.dtype == torch.bfloat16 and torch.equal(cs, want) and cs.is_contiguous(memory_format=torch.channels_last_3d)
    q.put((rank, ok_local and ok_bf16, torch.equal(back, x * 2)))
    dist.destroy_process_group()


def _two_ranks(worker) -> list:
    """Run ``worker(rank, 2, port, queue)`` in two spawned processes; what they put, by rank."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = [ctx.Process(target=worker, args=(r, 2, port, q)) for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(q.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        if p.is_alive():
            p.kill()
    return results


def test_shuffle_and_unshuffle_across_ranks():
    assert _two_ranks(_worker) == [(0, True, True), (1, True, True)]


def _timeout_worker(rank, world, port, q):
    import time

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    from stdann import distributed
    from stdann.errors import as_user_error

    distributed.init_distributed("cpu", timeout_minutes=0.05)  # train.collective_minutes: 3 s
    if rank == 1:  # a rank that never joins the collective (hung, or stuck on its own work)
        time.sleep(8)
        q.put((rank, None))
        return
    try:
        dist.all_reduce(torch.ones(1))
        q.put((rank, "no error"))
    except Exception as e:  # noqa: BLE001 - what the command line would show
        user = as_user_error(e)
        q.put((rank, None if user is None else str(user)))


def test_a_collective_that_times_out_names_the_network_settings():
    message = dict(_two_ranks(_timeout_worker))[0]
    assert message is not None and message.startswith("a collective between the ranks failed"), message
    assert "GLOO_SOCKET_IFNAME" in message and "--resume auto" in message

"""Two ranks (gloo), the stop requests of a real run: a SIGTERM delivered to one
rank only and a time budget (``train.max_minutes``) that runs out on one rank only make *both* ranks
leave at the same step, with the last checkpoint written at that step; and the process group made by
``init_distributed`` is destroyed at exit (finding 10). (The ``stop_at_step``, NaN and failed-write
cases: tests/test_distributed_training.py.)
"""

import pytest
import os
import signal
from pathlib import Path

import torch.distributed as dist

from stdann.config import load_config
from stdann.runs.checkpoint import safe_load
from stdann import distributed
from stdann.training.trainer import train
from test_distributed_training import SMOKE, _join, _spawn


def _worker(rank, port, q, root):
    at_exit = []
    distributed.atexit.register = at_exit.append  # what init_distributed registers (this spawned process only)
    _join(rank, port)
    root, out = Path(root), {}

    def sigterm_on_rank1(blocks, step):  # rank 1 alone gets SIGTERM during step 2 (0-based)
        if rank == 1 and step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return {}

    cfg = load_config("smoke", overrides=SMOKE + ["train.ckpt_every=100"])
    res = train(cfg, root / "sigterm", progress=False, extra_losses=[sigterm_on_rank1])
    out["sigterm"] = (res.status, res.step, res.signal)

    # rank 1 alone has a time budget, one that is over after the first step
    budget = ["train.max_minutes=0.000001"] if rank == 1 else []
    res = train(load_config("smoke", overrides=SMOKE + ["train.ckpt_every=100"] + budget), root / "budget", progress=False)
    out["budget"] = (res.status, res.step)

    out["cleanup_registered"] = distributed.cleanup in at_exit
    for fn in at_exit:
        fn()
    out["group_destroyed"] = not dist.is_initialized()
    q.put((rank, out))


@pytest.mark.heavy
def test_sigterm_or_time_budget_on_one_rank_stops_both_with_a_checkpoint(tmp_path):
    r = _spawn(_worker, str(tmp_path))
    assert r[0]["sigterm"][:2] == r[1]["sigterm"][:2] == ("interrupted", 3)
    assert r[1]["sigterm"][2] == signal.SIGTERM and r[0]["sigterm"][2] is None  # only rank 1 got the signal
    assert safe_load(tmp_path / "sigterm" / "checkpoints" / "last.pt")["step"] == 3
    assert r[0]["budget"] == r[1]["budget"] == ("time-budget", 1)
    assert safe_load(tmp_path / "budget" / "checkpoints" / "last.pt")["step"] == 1
    for rank in (0, 1):
        assert r[rank]["cleanup_registered"] and r[rank]["group_destroyed"]

"""No blocking host-to-device copy in a training step's data and random draws .

A plain ``cpu_tensor.to("cuda")`` makes the host wait until the GPU has drained its queue. Every
per-step copy of CPU-drawn parameters must be asked for as non-blocking (from pinned memory on
CUDA, :func:`stdann.devices.upload`). Without a GPU the check runs on the ``meta`` device: every
CPU → meta copy is recorded with its ``non_blocking`` flag.
"""

import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from stdann.config import load_config
from stdann.data.loader import build_pair_source
from stdann.models.inputs import normalize
from stdann.models.moco import build_moco
from stdann.topography import SpatialLoss
from stdann.training.benchmark import make_positions
from stdann.training.step import step_generator

META = torch.device("meta")


class _Copies(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.non_blocking: list[bool] = []
        self.blocking_at: list[str] = []  # where each blocking copy was asked for (stdann frames)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._to_copy.default and args[0].device.type == "cpu" and kwargs.get("device") is not None \
                and torch.device(kwargs["device"]).type != "cpu":
            nb = bool(kwargs.get("non_blocking"))
            self.non_blocking.append(nb)
            if not nb:
                frames = [f for f in traceback.extract_stack() if "/stdann/" in f.filename]
                self.blocking_at.append(" <- ".join(f"{f.filename.rsplit('/stdann/', 1)[1]}:{f.lineno}" for f in frames[::-1][:3]))
        return func(*args, **kwargs)


def test_a_steps_copies_to_the_device_never_block():
    cfg = load_config("smoke", overrides=["data.objects_max=2", "data.object_prob=0.9", "topography.alpha=0.25"])
    source = build_pair_source(cfg.data, 4, META, seed=0)
    moco = build_moco(cfg).to(META)
    spatial = SpatialLoss(make_positions(cfg), neighborhoods_per_step=2, check_finite=False)
    normalize(source.batch(0)[0]), spatial.sample(step_generator(0, 0), META)  # one-off: texture bank, noise, positions, mean/std
    with _Copies() as copies:
        x1, x2 = source.batch(1)
        x1 = normalize(x1)
        gen = step_generator(0, 1)
        spatial.sample(gen, META)
        keys = moco._keys(x1, gen)
    assert x1.device == keys.device == META
    assert copies.non_blocking and not copies.blocking_at, copies.blocking_at

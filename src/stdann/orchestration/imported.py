"""Bring your own network: a run folder made from an r3d_18 state dict in torchvision's format.

``import_network(weights, out, cfg)`` reads a state dict that someone else trained (torchvision's
``r3d_18`` names: ``stem.0.weight``, ``layer1.0.conv1.0.weight``, ... and optionally ``fc.*``,
e.g. the Kinetics-400 weights a user already has), safely (``weights_only=True``: a file holding
a pickle that would run code is refused), and writes a run folder that every analysis reads:

* ``checkpoints/last.pt``: the imported backbone (the classifier head ``fc`` is dropped: the
  units are the eight block outputs);
* ``checkpoints/init.pt``: the untrained control — the same architecture at the same width,
  initialised as stdann initialises every network (``train.seed``);
* ``positions/<block>.npz``: retinotopic positions on the configuration's sheets (no swap
  optimisation: positions are only needed for maps);
* ``config.yaml`` and ``run.json`` (``status = "imported"``, the source file and its SHA-256).

The clip size (``data.frames``, ``data.size``) comes from the configuration (a preset); the
width is read from the weights. Then ``stdann analyze OUT`` measures it beside its control.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from stdann.config import Config
from stdann.errors import MissingFileError
from stdann.models.r3d import r3d_18
from stdann.runs.checkpoint import CheckpointError, backbone_checkpoint, describe_mismatch
from stdann.runs.folder import RunFolder
from stdann.topography import sheets_from_config
from stdann.topography.cache import cached_model_positions

PREFIXES = ("module.", "backbone.", "encoder_q.backbone.", "model.")  # DDP / wrappers around the backbone
WRAPPERS = ("state_dict", "model", "backbone")  # checkpoint dicts that hold the state dict under a key


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The backbone weights of a torchvision-format r3d_18 file: a state dict, or a checkpoint dict
    holding one under ``state_dict`` / ``model`` / ``backbone``; wrapper prefixes (``module.``, ...)
    removed, the classifier ``fc.*`` dropped. Loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"weights file {path} does not exist; give an r3d_18 state dict saved with torch.save")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - one line naming the file and why
        raise CheckpointError(f"cannot read {path} safely as PyTorch weights ({type(e).__name__}: "
                              f"{(str(e).strip().splitlines() or [''])[0][:160]}); stdann loads weights with "
                              "weights_only=True and never unpickles arbitrary objects") from None
    for key in WRAPPERS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict) and "stem.0.weight" not in obj:
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors (got {type(obj).__name__})")
    state = {}
    for k, v in obj.items():
        for p in PREFIXES:
            if k.startswith(p) and k[len(p):].startswith(("stem.", "layer", "fc.")):
                k = k[len(p):]
                break
        if not k.startswith("fc."):
            state[k] = v
    if "stem.0.weight" not in state:
        raise CheckpointError(f"{path} holds no 'stem.0.weight': not an r3d_18 state dict in torchvision's format "
                              f"(first keys: {list(obj)[:4]})")
    return state


def import_network(weights: str | Path, out: str | Path, cfg: Config) -> dict:
    """Write the run folder ``out`` for the r3d_18 weights in ``weights`` (see the module docstring);
    returns the ``run.json`` record. ``cfg`` gives the clip size, sheets and seed; its
    ``model.width`` is replaced by the width of the weights."""
    weights = Path(weights)
    state = read_state_dict(weights)
    width = int(state["stem.0.weight"].shape[0])
    cfg = cfg.with_overrides([f"model.width={width}"]).validate()
    model = r3d_18(None, width=width)
    expected = model.state_dict()
    if set(expected) != set(state) or any(tuple(expected[k].shape) != tuple(state[k].shape) for k in expected):
        raise CheckpointError(f"{weights} is not an r3d_18 of width {width}: {describe_mismatch(expected, state)}")
    model.load_state_dict(state, strict=True)
    torch.manual_seed(cfg.train.seed)
    control = r3d_18(None, width=width)  # the untrained control: stdann's initialisation at this width and seed
    blocks = list(cfg.topography.blocks)
    positions = cached_model_positions(width=width, frames=cfg.data.frames, size=cfg.data.size, blocks=blocks,
                                     sheets=sheets_from_config(cfg.topography), seed=cfg.topography.position_seed,
                                     n_windows=cfg.topography.n_windows)
    run = RunFolder(out)
    record = {"source": str(weights.resolve()), "sha256": _sha256(weights), "width": width,
              "frames": cfg.data.frames, "size": cfg.data.size, "step": 0, "total_steps": 0}
    with run.hold():
        run.check_writable(["config.yaml", "run.json", "checkpoints/last.pt", "checkpoints/init.pt"]
                           + [f"positions/{b}.npz" for b in blocks])
        run.ensure_run()
        if run.started():
            raise CheckpointError(f"{run.root} already holds a run; import into a new folder")
        text = cfg.to_yaml()
        run.write_config(cfg)
        run.save_checkpoint("init", backbone_checkpoint(0, text, control.state_dict()))
        run.save_checkpoint("last", backbone_checkpoint(0, text, model.state_dict()))
        run.save_positions(positions)
        run.write_status("imported", **record)
    return record

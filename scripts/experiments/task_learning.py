"""Why does the contrastive task learn or stall? A bare MoCo loop with diagnostics (docs/emergence.md §2).

    python scripts/experiments/task_learning.py NAME STEPS EVERY [key=value ...]

trains MoCo (α = 0) on the built-in video from the ``demo`` preset with a 32² clip and the given
``--set``-style overrides, and every EVERY steps measures, on 128 fixed held-out pairs (both
encoders in train mode, as during training):

* ``top1_inbatch128``: the query's own key is the most similar of the 128 held-out keys;
* ``pos``, ``same_scene``, ``diff_scene``: mean cosine similarity of a query with its own key,
  with the keys of other clips of the same scene (texture), and with keys of other scenes;
* ``heldout_queue_loss`` / ``_acc``: InfoNCE and top-1 of the held-out queries against their
  keys and the current queue (the training loss's form, without this step's own batch);
* ``queue_erank``: effective rank (exp of the entropy of the normalised squared singular values)
  of the centred queue — how many directions the embeddings use; ``queue_mean_norm``: length of
  the queue's mean key (1 = all keys identical).

``optim.optimizer=adamw`` (a key of this script only) uses AdamW instead of SGD. Writes
``NAME.json`` (the history) and ``runs/NAME/`` (``checkpoints/init.pt`` and ``last.pt`` backbones,
retinotopic positions), so ``stdann analyze runs/NAME`` measures the network beside its
untrained control. Uses one CPU thread unless ``NT`` is set.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from stdann.config import load_config
from stdann.data.loader import build_pair_source
from stdann.models.inputs import normalize
from stdann.models.moco import build_moco
from stdann.runs.checkpoint import backbone_checkpoint
from stdann.runs.folder import RunFolder
from stdann.topography import init_model_positions, sheets_from_config
from stdann.training.schedule import lr_at

BASE = ["model.width=16", "data.frames=8", "data.size=32", "topography.alpha=0"]


def channels_last(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last_3d)


@torch.no_grad()
def diagnostics(model, hx1, hx2, scene, temperature: float) -> dict[str, float]:
    q = F.normalize(model.encoder_q(channels_last(hx1))[0].float(), dim=1)
    k = F.normalize(model.encoder_k(channels_last(hx2))[0].float(), dim=1)
    sim = q @ k.T
    pos = sim.diag()
    same = (scene[:, None] == scene[None, :]) & ~torch.eye(len(scene), dtype=torch.bool)
    diff = scene[:, None] != scene[None, :]
    queue = model.queue.T.float()
    logits = torch.cat([pos[:, None], q @ queue.T], 1) / temperature
    sv = torch.linalg.svdvals(queue - queue.mean(0))
    p = sv**2 / (sv**2).sum()
    return {
        "top1_inbatch128": float((sim.argmax(1) == torch.arange(len(sim))).float().mean()),
        "pos": float(pos.mean()), "same_scene": float(sim[same].mean()), "diff_scene": float(sim[diff].mean()),
        "heldout_queue_loss": float(F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))),
        "heldout_queue_acc": float((logits.argmax(1) == 0).float().mean()),
        "queue_erank": math.exp(float(-(p * torch.log(p + 1e-12)).sum())),
        "queue_mean_norm": float(queue.mean(0).norm()),
    }


def main(argv: list[str]) -> None:
    name, steps, every, overrides = argv[0], int(argv[1]), int(argv[2]), argv[3:]
    optimizer_kind = "sgd"
    for o in list(overrides):
        if o.startswith("optim.optimizer="):
            optimizer_kind = o.split("=", 1)[1]
            overrides.remove(o)
    torch.set_num_threads(int(os.environ.get("NT", "1")))
    cfg = load_config("demo", overrides=BASE + overrides)
    torch.manual_seed(0)
    model = build_moco(cfg).to(memory_format=torch.channels_last_3d)
    params = [p for p in model.encoder_q.parameters() if p.requires_grad]
    if optimizer_kind == "adamw":
        opt = torch.optim.AdamW(params, lr=cfg.optim.scaled_lr(), weight_decay=cfg.optim.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=cfg.optim.scaled_lr(), momentum=cfg.optim.momentum,
                              weight_decay=cfg.optim.weight_decay)
    batch = cfg.optim.batch_size
    source = build_pair_source(cfg.data, batch, "cpu", seed=0)
    hx1, hx2, hm1, _ = build_pair_source(cfg.data, 128, "cpu", seed=999).batch(0, return_motion=True)
    hx1, hx2 = normalize(hx1), normalize(hx2)
    warmup = int(round(cfg.optim.warmup_epochs * cfg.optim.epoch_size / batch))

    run = RunFolder(Path("runs") / name)
    with run.hold():
        run.ensure_run()
        run.write_config(cfg)
        run.save_checkpoint("init", backbone_checkpoint(0, cfg.to_yaml(), model.backbone.state_dict()))
        run.save_positions(init_model_positions(width=cfg.model.width, frames=cfg.data.frames, size=cfg.data.size,
                                                blocks=list(cfg.topography.blocks),
                                                sheets=sheets_from_config(cfg.topography), seed=0,
                                                n_windows=cfg.topography.n_windows))
    t0, history = time.time(), []
    for s in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(s, steps, cfg.optim.scaled_lr(), warmup, cfg.optim.final_lr_fraction)
        x1, x2 = source.batch(s)
        out = model(channels_last(normalize(x1)), channels_last(normalize(x2)), generator=torch.Generator().manual_seed(s))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        model.momentum_update()
        model.enqueue(out["keys"])
        if (s + 1) % every == 0:
            d = diagnostics(model, hx1, hx2, hm1["scene"], cfg.moco.temperature)
            d.update(step=s + 1, train_loss=out["loss"].item(), train_acc=out["acc"].item(), t=time.time() - t0)
            history.append(d)
            print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in d.items()), flush=True)
    Path(f"{name}.json").write_text(json.dumps(history, indent=1))
    with run.hold():
        run.save_checkpoint("last", backbone_checkpoint(steps, cfg.to_yaml(), model.backbone.state_dict()))


if __name__ == "__main__":
    main(sys.argv[1:])

"""The held-out check of a training run: a fixed set of held-out pairs drawn once from the run's own
data source (a seed stream training never draws), and the log columns it fills at the steps
``train.eval_every`` names (:mod:`stdann.training.evaluation` holds the metrics)."""

from __future__ import annotations

import dataclasses

import torch

from stdann.config import Config
from stdann.data.loader import build_pair_source
from stdann.models.inputs import normalize
from stdann.models.moco import MoCo
from stdann.models.motion_classifier import MotionClassifier, motion_targets
from stdann.training.evaluation import heldout_classification, heldout_seed, instance_discrimination
from stdann.training.step import is_supervised

HELDOUT_COLUMNS = ("heldout_top1", "heldout_top5", "heldout_infonce", "heldout_chance_infonce")
# the supervised objective's held-out check: direction top-1 of held-out clips (chance 1/bins), its
# cross-entropy (chance Σ ln(classes)) and, with speed bins, the speed top-1 (chance 1/speed_bins)
SUPERVISED_HELDOUT_COLUMNS = ("heldout_top1", "heldout_chance_top1", "heldout_loss", "heldout_chance_loss")
SPEED_HELDOUT_COLUMNS = ("heldout_speed_top1", "heldout_chance_speed_top1")


def heldout_columns(cfg: Config) -> tuple[str, ...]:
    """The held-out columns of this run's log lines."""
    if not is_supervised(cfg):
        return HELDOUT_COLUMNS
    return SUPERVISED_HELDOUT_COLUMNS + (SPEED_HELDOUT_COLUMNS if cfg.train.objective == "supervised_direction_speed" else ())


def heldout_pairs(cfg: Config, device: torch.device) -> tuple | None:
    """The fixed held-out positive pairs of a run (model-ready), from the run's own data source
    with a seed stream that training never draws (:func:`stdann.training.evaluation.heldout_seed`);
    for the supervised objective the clips of both views and their motion bins instead."""
    n = int(cfg.train.eval_pairs)
    if n < 2:
        return None
    # read once, here: no background workers (a paper run's 8 worker processes for one batch)
    src = build_pair_source(dataclasses.replace(cfg.data, prefetch=0), n, device, seed=heldout_seed(cfg.data.seed, cfg.train.seed))
    try:
        if is_supervised(cfg):
            x1, x2, m1, m2 = src.batch(0, return_motion=True)
        else:
            x1, x2 = src.batch(0)
    finally:
        src.close()
    fmt = torch.channels_last_3d if cfg.train.channels_last else torch.contiguous_format
    if is_supervised(cfg):
        speed = cfg.train.speed_bins if cfg.train.objective == "supervised_direction_speed" else 0
        y = [motion_targets(m, cfg.train.direction_bins, speed, (cfg.data.speed_min, cfg.data.speed_max)) for m in (m1, m2)]
        return normalize(torch.cat([x1, x2])).contiguous(memory_format=fmt), torch.cat(y).to(device)
    return normalize(x1).contiguous(memory_format=fmt), normalize(x2).contiguous(memory_format=fmt)


def heldout_row(model: MoCo | MotionClassifier, heldout, cfg: Config) -> dict[str, float]:
    """The held-out columns of a log line (NaN when no check is due at this step)."""
    if heldout is None:
        return dict.fromkeys(heldout_columns(cfg), float("nan"))
    if isinstance(model, MotionClassifier):
        m = heldout_classification(model, *heldout, batch_size=64)
        row = {"heldout_top1": m["top1"], "heldout_chance_top1": m["chance_top1"], "heldout_loss": m["loss"],
               "heldout_chance_loss": m["chance_loss"]}
        if "speed_top1" in m:
            row.update(heldout_speed_top1=m["speed_top1"], heldout_chance_speed_top1=m["chance_speed_top1"])
        return row
    m = instance_discrimination(model, *heldout, batch_size=64)
    return {"heldout_top1": m["top1"], "heldout_top5": m["top5"], "heldout_infonce": m["infonce"],
            "heldout_chance_infonce": m["chance_infonce"]}

"""One network measured the way every network of stdann is: BatchNorm statistics re-estimated on
the same generated clips (``ephys.bn_calibration_clips``, a fixed seed), then eval mode, then the
blocks recorded (``stdann.ephys.analyze``). Used by ``analyze_run``, the study evaluator and the
untrained reference, so that trained, untrained and reference networks are measured alike.
"""

from __future__ import annotations

import dataclasses

from stdann.data.generator import VideoGenerator
from stdann.ephys.analyze import analyze_network
from stdann.ephys.recording import calibrate_batchnorm
from stdann.ephys.registry import slim

CALIBRATION_SEED = 777_000


def calibration_batches(data_cfg, ecfg, device):
    """The generated naturalistic clips used to re-estimate BatchNorm statistics (fixed seed, so
    every network sees exactly the same clips)."""
    gen = VideoGenerator(data_cfg, device=device)
    total, bs = int(ecfg.bn_calibration_clips), int(ecfg.batch_size)
    for start in range(0, total, bs):
        yield gen.generate(min(bs, total - start), seed=CALIBRATION_SEED + start)


def prepare_network(model, cfg, ecfg, device) -> None:
    """Re-estimate the BatchNorm statistics of ``model`` on the calibration clips (when
    ``ecfg.bn_calibration_clips`` > 0); the model is left in eval mode."""
    if ecfg.bn_calibration_clips > 0:
        calibrate_batchnorm(model, calibration_batches(cfg.data, ecfg, device), device=device)
    model.eval()


def evaluate_network(model, cfg, positions: dict, blocks: list[str], device, ephys_overrides: dict | None = None,
                     stimuli=("gratings",)) -> dict[str, dict]:
    """{block: slim summary (ephys.registry.slim)} of one network, BatchNorm re-estimated on the
    same generated clips as every other network (for studies: many networks, no files)."""
    ecfg = dataclasses.replace(cfg.ephys, **(ephys_overrides or {}))
    prepare_network(model, cfg, ecfg, device)
    res = analyze_network(model, positions, blocks, stimuli, ecfg, cfg.data.frames, cfg.data.size, device)
    return {b: slim(res[b][0]) for b in blocks}

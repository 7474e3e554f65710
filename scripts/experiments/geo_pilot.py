"""Pilot of an MT sheet geometry (docs/results.md §5): reuse a study seed's pretraining, redo the
swap pre-optimisation of the MT block (layer3.1) with another ``topography.sheets``, train the joint
stage for a few steps at α, and print the MT block's column spacing Λ, the map's span in spacings
and its pinwheel density.

    python scripts/experiments/geo_pilot.py runs/study/seed0/pretrain runs/geo/side106 \
        '{layer3.1: {sheet_side: 10.6}}'                      # α 0.25, the study's 350 joint steps
    python scripts/experiments/geo_pilot.py runs/study/seed0/pretrain runs/geo/nbhd07 \
        '{layer3.1: {neighborhood_width: 0.7}}' 0 20          # α 0, 20 steps: the swapped map itself

Resumable (the swap and the joint run are run folders); one CPU thread unless OMP_NUM_THREADS says.
Extra ``--set``-style overrides may follow (e.g. ``data.size=96``) and must match the pretraining's
clip geometry.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch

from stdann.config import load_config
from stdann.orchestration import protocol as P
from stdann.orchestration.conditions import evaluate_condition
from stdann.orchestration.recipe import optimize_positions, swap_summary
from stdann.runs.checkpoint import load_backbone
from stdann.runs.folder import RunFolder
from stdann.runs.layout import SWAP
from stdann.topography import init_model_positions, sheets_from_config

BLOCK = "layer3.1"


def main(pretrain_dir: str, out_dir: str, sheets: str, alpha: str = "0.25", joint_steps: str = "350",
         *overrides: str) -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    base = load_config("study", overrides=[*overrides, f"topography.sheets={sheets}", f"topography.blocks=[{BLOCK}]",
                                           f"ephys.blocks=[{BLOCK}]"])
    pre_steps = P.step_split(base)[0]
    total = pre_steps + int(joint_steps)
    cfg = P.seed_config(base.with_overrides([f"optim.max_steps={total}",
                                             f"topography.pretrain_fraction={pre_steps / total}"]), 0)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pre = RunFolder(pretrain_dir)
    t = time.time()
    swap = RunFolder(out / "swap")
    blocks = list(cfg.topography.blocks)
    with swap.hold():
        swap.ensure_run()
        if not swap.has(SWAP):
            init = init_model_positions(width=cfg.model.width, frames=cfg.data.frames, size=cfg.data.size,
                                        blocks=blocks, sheets=sheets_from_config(cfg.topography),
                                        seed=cfg.topography.position_seed, n_windows=cfg.topography.n_windows)
            print("MT sheet side", init[BLOCK].sheet_side, "neighbourhood", init[BLOCK].neighborhood_width, flush=True)
            model, _ = load_backbone(pre.root, "last")
            final, hist = optimize_positions(model, cfg, init, cfg.topography.swap_steps, "cpu", False, None)
            swap.save_positions(final, (SWAP, {"steps": cfg.topography.swap_steps, "blocks": swap_summary(hist)}))
    run = P.joint(cfg, float(alpha), pre, swap, out, False)
    meta = {"name": f"alpha_{alpha}", "label": "", "seed": 0, "alpha": float(alpha), "mode": "recipe",
            "train_seconds": time.time() - t}
    with run.hold():
        entry = evaluate_condition(run, cfg, meta, [BLOCK], readout=False)
    m = entry["metrics"][BLOCK]["trained"]
    print(out.name, "Λ", m.get("column_spacing_mm"), "span", m.get("map_span_spacings"), "density",
          m.get("pinwheel_density"), m.get("pinwheel_density_ci"), "smoothness", m.get("smoothness"), "DSI",
          m.get("dsi_median"), f"{time.time() - t:.0f} s", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])

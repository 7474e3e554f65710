"""Pilot of an MT sheet geometry (docs/results.md §5): reuse a study seed's pretraining, redo the
swap pre-optimisation and the joint training at α = 0.25 with another ``topography.sheets``, and
print the MT block's column spacing Λ, the map's span in spacings and its pinwheel density.

    python scripts/experiments/geo_pilot.py runs/study/seed0/pretrain runs/geo/side106 \
        '{layer3.1: {sheet_side: 10.6}}'
    python scripts/experiments/geo_pilot.py runs/study/seed0/pretrain runs/geo/nbhd14 \
        '{layer3.1: {neighborhood_width: 1.4}}'

Resumable (the swap and the joint run are run folders); one CPU thread.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from stdann.config import load_config
from stdann.orchestration import protocol as P
from stdann.orchestration.recipe import optimize_positions, swap_summary
from stdann.runs.checkpoint import load_backbone
from stdann.runs.folder import SWAP, RunFolder
from stdann.topography import init_model_positions, sheets_from_config

BLOCK = "layer3.1"


def main(pretrain_dir: str, out_dir: str, sheets: str) -> None:
    torch.set_num_threads(1)
    cfg = P.seed_config(load_config("study", overrides=[f"topography.sheets={sheets}", "train.threads=1"]), 0)
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
    run = P.joint(cfg, 0.25, pre, swap, out, False)
    entry, _ = P.condition_entry(run, cfg, name="alpha_0.25", label="", seed=0, alpha=0.25, mode="recipe",
                                 blocks=[BLOCK], untrained=None, readout=False, seconds=time.time() - t)
    m = entry["metrics"][BLOCK]["trained"]
    print(out.name, "Λ", m.get("column_spacing_mm"), "span", m.get("map_span_spacings"), "density",
          m.get("pinwheel_density"), m.get("pinwheel_density_ci"), "smoothness", m.get("smoothness"), "DSI",
          m.get("dsi_median"), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])

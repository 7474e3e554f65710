"""How direction selective is an *untrained* network, seed by seed? (docs/results.md §1, seed 1)

    [PRESET=demo] python scripts/experiments/untrained_spread.py OUT.json SEED [SEED ...] [key=value ...]

For each seed, the network the preset's seed starts from (``PRESET``, default ``study``) (``seed_config``: train.seed = s,
data.seed = base + s; the same initial weights as the study's ``init`` checkpoint of that seed) is
measured exactly as the study measures its untrained control (``evaluate_network``: BatchNorm
re-estimated on that seed's generated clips, drifting gratings, measurement 3) in the analysed
blocks, and its MT numbers are printed and written to OUT.json. The study compares each trained
network with its own seed's untrained network only; this shows how far that reference moves
between seeds. Uses one CPU thread unless ``NT`` is set.
"""

from __future__ import annotations

import json
import os
import sys
import time

import torch

from stdann.config import load_config
from stdann.ephys.registry import DIRECTION_HEADLINE, ci, get
from stdann.orchestration.reference import reference_positions, seed_config, untrained_network
from stdann.orchestration.measure import evaluate_network

KEYS = (DIRECTION_HEADLINE, "dsi_median", "fraction_direction_selective", "n_responsive")


def main(out: str, *args: str) -> int:
    torch.set_num_threads(int(os.environ.get("NT", "1")))
    seeds = [int(a) for a in args if "=" not in a]
    preset = os.environ.get("PRESET", "study")
    base = load_config(preset, overrides=[a for a in args if "=" in a])
    blocks = list(base.ephys.blocks)
    positions = reference_positions(base, blocks)
    rows = {}
    for s in seeds:
        t = time.time()
        cfg = seed_config(base, s)
        res = evaluate_network(untrained_network(cfg), cfg, positions, blocks, "cpu")
        rows[s] = {b: {k: get(res[b], k) for k in KEYS} | {f"{k}_ci": ci(res[b], k) for k in KEYS[:3]} for b in blocks}
        mt = rows[s]["layer3.1"]
        print(f"seed {s}: MT vector strength {mt[DIRECTION_HEADLINE]:.3f} {mt[DIRECTION_HEADLINE + '_ci']}, "
              f"classic DSI {mt['dsi_median']:.3f}, fraction DS {mt['fraction_direction_selective']:.3f}, "
              f"responsive {mt['n_responsive']} ({time.time() - t:.0f} s)", flush=True)
        with open(out, "w") as f:
            json.dump({"preset": preset, "blocks": blocks, "seeds": rows}, f, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))

"""The untrained reference: the range of selectivity that initialisation alone gives.

A trained network compared with its own untrained control (the same seed's step-0 weights) is
compared with *one* draw of the initialisation; between seeds an untrained network's MT vector
strength moves ten times further than that network's own 95% CI (docs/emergence.md §13). The
reference is the networks that seeds 0 … N − 1 of a configuration start from (weights as the trainer
builds them for :func:`seed_config`, BatchNorm re-estimated on that seed's clips), each measured as
a run's untrained control is measured, and a trained network is judged against all of them
(:func:`stdann.ephys.verdicts.untrained_range_verdict`): ``above_range`` only when its CI lies above
every one. ``stdann study / sweep / emergence --untrained-seeds N`` judge every row this way,
``stdann analyze --untrained-seeds N`` (and the demo, ``ephys.untrained_seeds``) one run.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from stdann.config import Config
from stdann.devices import resolve_device
from stdann.ephys.analyze import MEASUREMENT_VERSION
from stdann.ephys.registry import DIRECTION_HEADLINE, ci, get
from stdann.ephys.verdicts import RANGE_TEXT, untrained_range_verdict
from stdann.fileio import jsonable, read_json_cache
from stdann.orchestration.measure import evaluate_network
from stdann.runs.folder import RunFolder
from stdann.topography import sheets_from_config
from stdann.topography.cache import cached_model_positions
from stdann.training.step import build_network

REFERENCE_KEYS = (DIRECTION_HEADLINE, "dsi_median", "fraction_direction_selective")  # judged against the range
REFERENCE_FILE = "untrained_reference.json"


def seed_config(cfg: Config, seed: int) -> Config:
    """A study seed's configuration: its own initial weights (train.seed) and data (data.seed)."""
    return cfg.with_overrides([f"train.seed={seed}", f"data.seed={cfg.data.seed + seed}"])


def untrained_network(cfg: Config):
    """The backbone a run of ``cfg`` starts from (seeded from ``train.seed`` as
    :func:`stdann.training.step.build_model` seeds it), on the CPU, in eval mode."""
    torch.manual_seed(cfg.train.seed)
    return build_network(cfg).backbone.eval()


def reference_positions(cfg: Config, blocks: list[str]) -> dict:
    """Retinotopic positions of ``cfg``'s network (unit-level metrics do not depend on them)."""
    return cached_model_positions(width=cfg.model.width, frames=cfg.data.frames, size=cfg.data.size, blocks=blocks,
                                  sheets=sheets_from_config(cfg.topography), seed=cfg.topography.position_seed,
                                  n_windows=cfg.topography.n_windows)


def untrained_reference(base: Config, seeds: int, blocks: list[str], ephys_overrides: dict | None = None,
                        progress: Callable[[int], None] | None = None) -> dict:
    """The networks seeds 0 … ``seeds`` − 1 of ``base`` start from (the weights the trainer builds
    for ``seed_config(base, s)``), measured as a run's untrained control is measured; returns
    ``{"seeds": n, "measurement": version, "blocks": {block: {key: [value per seed]}}}`` for
    :data:`REFERENCE_KEYS`. ``progress(s)`` is called after each network."""
    device = resolve_device(base.train.device)
    positions = reference_positions(base, blocks)
    out: dict[str, Any] = {"seeds": int(seeds), "measurement": MEASUREMENT_VERSION,
                           "blocks": {b: {k: [] for k in REFERENCE_KEYS} for b in blocks}}
    for s in range(int(seeds)):
        cfg = seed_config(base, s)
        res = evaluate_network(untrained_network(cfg).to(device), cfg, positions, blocks, device, ephys_overrides)
        for b in blocks:
            for k in REFERENCE_KEYS:
                out["blocks"][b][k].append(get(res[b], k))
        if progress is not None:
            progress(s)
    return jsonable(out, inf_as_text=False)


def cached_reference(folder: RunFolder, base: Config, seeds: int, blocks: list[str],
                     ephys_overrides: dict | None = None, log: Callable[[str], None] = print) -> dict:
    """(main process, ``folder`` held) The reference from ``folder/untrained_reference.json`` when it
    was measured for these seeds and blocks under today's rules, else measured and written there."""
    cached = read_json_cache(folder.path(REFERENCE_FILE))
    made_for = reference_key(base, ephys_overrides)
    if (cached.get("seeds") == seeds and sorted(cached.get("blocks") or {}) == sorted(blocks)
            and cached.get("measurement") == MEASUREMENT_VERSION and cached.get("made_for", made_for) == made_for):
        return cached
    log(f"the untrained reference: {seeds} untrained networks (seeds 0 ... {seeds - 1}) measured as the untrained "
        "controls are")
    ref = {**untrained_reference(base, seeds, blocks, ephys_overrides), "made_for": made_for}
    folder.write_json(REFERENCE_FILE, ref, indent=1)
    return ref


def reference_key(base: Config, ephys_overrides: dict | None = None) -> dict:
    """What the reference's values depend on besides seeds and blocks: the network, the clips it is
    calibrated on and the measurement settings (a cached reference made for other ones is measured
    again)."""
    cfg = base.to_dict()
    ephys = {**cfg["ephys"], **(ephys_overrides or {})}
    ephys.pop("untrained_seeds", None)
    return jsonable({"model": cfg["model"], "data": cfg["data"], "ephys": ephys}, inf_as_text=False)


def range_verdicts(metrics: dict, reference: dict) -> dict:
    """{block: {key: {"verdict", "text", "range"}}} of the trained networks in ``metrics``
    (``{block: {"trained": summary, ...}}``, as in study rows and metrics.json) against the
    untrained reference."""
    out = {}
    for b, values in (reference.get("blocks") or {}).items():
        trained = (metrics.get(b) or {}).get("trained") or {}
        out[b] = {}
        for k in REFERENCE_KEYS:
            v = untrained_range_verdict(get(trained, k), ci(trained, k), values.get(k))
            finite = [x for x in values.get(k) or [] if x is not None]
            out[b][k] = {"verdict": v, "text": RANGE_TEXT[v], "range": [min(finite), max(finite)] if finite else None}
    return out


def reference_base(cfg: Config) -> Config:
    """The configuration whose seeds 0 … N − 1 make a run's reference: the run's own with
    ``train.seed`` 0 (seed s then starts from ``train.seed`` s with ``data.seed`` + s, as seed s
    of a study of this configuration would; the run's own seed is one of them when its
    ``train.seed`` is below N)."""
    return cfg.with_overrides(["train.seed=0"])


def judge_run(metrics: dict, cfg: Config, seeds: int, ephys_overrides: dict | None = None,
              progress: Callable[[int], None] | None = None) -> dict:
    """Add the untrained reference of ``seeds`` networks to an analysed run's ``metrics`` (as
    metrics.json holds it): ``metrics["untrained_reference"]`` and, per block,
    ``blocks[b]["range_verdicts"]``; returns ``metrics``."""
    blocks = list(metrics.get("blocks") or {})
    ref = untrained_reference(reference_base(cfg), seeds, blocks, ephys_overrides, progress=progress)
    verdicts = range_verdicts(metrics["blocks"], ref)
    for b in blocks:
        metrics["blocks"][b]["range_verdicts"] = verdicts[b]
    metrics["untrained_reference"] = ref
    return metrics

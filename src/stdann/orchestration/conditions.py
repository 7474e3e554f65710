"""One condition of a study, measured: the trained network beside its untrained control (the same
run's step-0 weights, measured the same way on the same positions), the task it learned and the
linear motion probe, cached in the run's ``condition.json`` — one evaluator for ``stdann study``,
``sweep`` and ``emergence``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from stdann.config import Config
from stdann.devices import resolve_device
from stdann.ephys.analyze import MEASUREMENT_VERSION
from stdann.fileio import jsonable, read_json_cache
from stdann.models.motion_classifier import SUPERVISED
from stdann.orchestration.measure import evaluate_network
from stdann.orchestration.run_analysis import compare_block, measured_now
from stdann.runs.checkpoint import load_backbone
from stdann.runs.folder import RunFolder
from stdann.runs.layout import CONDITION
from stdann.runs.trainlog import read_log
from stdann.training.readout import linear_probe_motion

UNTRAINED_SUMMARY = "untrained_summary"  # condition.json's copy of the untrained network's summaries (not in study.json)


def task_summary(run_dir: Path, cfg: Config) -> dict[str, Any]:
    """The last log line's task numbers: InfoNCE (interval mean) beside chance, held-out check; for
    the supervised positive control its cross-entropy and held-out direction top-1 beside chance."""
    rows = read_log(run_dir)
    last = rows[-1] if rows else {}
    held = [r for r in rows if "heldout_top1" in r and math.isfinite(r["heldout_top1"])]
    h = held[-1] if held else {}
    final = last.get("loss_task")
    if cfg.train.objective in SUPERVISED:
        chance = last.get("loss_task_chance")
        return {"objective": cfg.train.objective, "final_infonce": None, "final_loss": final, "chance_loss": chance,
                "nats_below_chance": (chance - final) if final is not None and chance is not None else None,
                "heldout_top1": h.get("heldout_top1"), "heldout_chance_top1": h.get("heldout_chance_top1"),
                "heldout_loss": h.get("heldout_loss"), "heldout_chance_loss": h.get("heldout_chance_loss"),
                "heldout_speed_top1": h.get("heldout_speed_top1"), "spatial_loss_final": last.get("sl_total")}
    chance = math.log(cfg.moco.queue_size + 1)
    return {"objective": "moco", "final_infonce": final, "chance_infonce": chance,
            "nats_below_chance": (chance - final) if final is not None else None,
            "heldout_top1": h.get("heldout_top1"), "heldout_top5": h.get("heldout_top5"),
            "heldout_infonce": h.get("heldout_infonce"), "heldout_chance_infonce": h.get("heldout_chance_infonce"),
            "spatial_loss_final": last.get("sl_total")}


def cached_condition(run: RunFolder, need_untrained: bool = False) -> dict | None:
    """The run's ``condition.json`` when it is complete and measured the way this version measures
    (and holds the untrained summaries when ``need_untrained``); None otherwise (a damaged one too)."""
    cached = read_json_cache(run.path(CONDITION))
    if not (cached.get("complete") and measured_now(cached)):
        return None
    if need_untrained and cached.get(UNTRAINED_SUMMARY) is None:
        return None
    return cached


def evaluate_condition(run: RunFolder, cfg: Config, meta: dict, blocks: list[str], *, untrained: dict | None = None,
                       readout: bool = True, snapshots: bool = False, ephys_overrides: dict | None = None) -> dict:
    """(main process, ``run`` held) Measure a trained run beside its untrained network and write
    ``condition.json``; returns the entry: ``meta`` (name, label, seed, α, mode, ...), ``run_dir``,
    ``measurement``, ``metrics`` (per block, trained beside untrained), ``task`` (with the probe of
    both networks when ``readout``), ``snapshots`` (every ``step_*`` checkpoint measured, when asked)
    and :data:`UNTRAINED_SUMMARY`. ``untrained`` (summaries per block) is reused when given: every
    run of a study seed shares its untrained network and, for its α runs, its positions."""
    device = resolve_device(cfg.train.device)
    positions = run.load_positions(blocks)
    net, _ = load_backbone(run.root, "init", device=device)
    if untrained is None:
        untrained = evaluate_network(net, cfg, positions, blocks, device, ephys_overrides)
    trained, _ = load_backbone(run.root, "last", device=device)
    t = evaluate_network(trained, cfg, positions, blocks, device, ephys_overrides)
    entry: dict[str, Any] = {**meta, "run_dir": str(run.root), "measurement": MEASUREMENT_VERSION,
                             "metrics": {b: compare_block(t[b], untrained[b]) for b in blocks}}
    if snapshots:
        entry["snapshots"] = []
        for snap in sorted((run.root / "checkpoints").glob("step_*.pt")):
            snet, _ = load_backbone(run.root, snap.stem, device=device)
            entry["snapshots"].append({"step": int(snap.stem.split("_")[1]),
                                       "metrics": evaluate_network(snet, cfg, positions, blocks, device, ephys_overrides)})
    entry["task"] = task_summary(run.root, cfg)  # InfoNCE, or the positive control's loss and held-out top-1
    if readout:
        entry["task"]["probe_trained"] = linear_probe_motion(trained, cfg.data, device=device, seed=cfg.train.seed)
        entry["task"]["probe_untrained"] = linear_probe_motion(net, cfg.data, device=device, seed=cfg.train.seed)
    entry[UNTRAINED_SUMMARY] = untrained
    entry["complete"] = True
    entry = jsonable(entry, inf_as_text=False)
    run.write_json(CONDITION, entry, indent=1)
    return entry


def add_condition(study: dict, entry: dict) -> None:
    """Put ``entry`` into ``study["conditions"]`` in place of the same condition and seed (without
    the untrained summaries, which stay in condition.json)."""
    keep = [c for c in study["conditions"] if not (c["name"] == entry["name"] and c["seed"] == entry["seed"])]
    study["conditions"] = keep + [{k: v for k, v in entry.items() if k != UNTRAINED_SUMMARY}]


def control_row(entry: dict) -> dict:
    """The untrained network of ``entry``'s run (its step-0 weights on its positions) as its own row."""
    return {"name": "untrained", "label": "untrained network (same initialisation)", "seed": entry["seed"],
            "alpha": None, "mode": "control", "run_dir": entry["run_dir"],
            "metrics": {b: compare_block(v["untrained"], v["untrained"]) for b, v in entry["metrics"].items()},
            "task": {"probe_trained": (entry.get("task") or {}).get("probe_untrained")}}

"""The one study runner: a plan (an ordered list of conditions, each a run folder made and then
measured beside its untrained network) run into a study folder, resumably, on one process or under
torchrun. ``stdann study`` (:mod:`stdann.orchestration.protocol`), ``sweep`` and ``emergence``
(:mod:`stdann.orchestration.study`) only build plans.

For each planned condition the runner prints its line, has every rank make (train or resume) its
run folder, then has the main process measure it (or take its ``condition.json`` when that is
complete and current), add it to ``study.json`` — rewritten atomically after every condition — and,
when the plan asks, add its untrained network as its own row. Conditions of one ``untrained_group``
share the untrained network's summaries (same initialisation, same positions). The study's figures
are drawn at the end. A stopped study continues where it stopped when the same plan is run again.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from stdann import distributed
from stdann.config import Config, ConfigError
from stdann.devices import resolve_device
from stdann.ephys.recording import bn_mode
from stdann.ephys.verdicts import untrained_seeds_problem
from stdann.orchestration.conditions import (
    UNTRAINED_SUMMARY, add_condition, cached_condition, control_row, evaluate_condition,
)
from stdann.orchestration.reference import cached_reference, range_verdicts
from stdann.orchestration.study_files import study_folder, write_study_figures, write_study_json
from stdann.runs.folder import RunFolder


@dataclass
class PlannedCondition:
    """One row of a study: how its run folder is made and how it is measured."""

    name: str  # the row's name (unique per seed)
    label: str  # legend text
    seed: int
    cfg: Config  # the configuration it is measured with (its seed's)
    make: Callable[[bool], RunFolder]  # (progress) -> the trained run folder; every rank calls it; resumable
    line: str = ""  # printed before it
    alpha: float | None = None
    mode: str = "train"  # recipe | train | positive_control | lever (study.json's row kinds)
    overrides: list[str] | None = None  # shown in the report
    untrained_group: str | None = None  # rows that share their untrained network's summaries
    snapshots: bool = False  # measure every step_* checkpoint too (emergence)
    control_after: bool = False  # add this run's untrained network as a row of its own after it


@dataclass
class StudyPlan:
    kind: str  # study.json's kind: sweep (α rows; `stdann study` too) | emergence
    base: Config  # the study's configuration (study.json's config)
    conditions: list[PlannedCondition]
    seeds: int = 1
    blocks: list[str] = field(default_factory=list)  # analysed blocks (default: ephys.blocks)
    readout: bool = True  # the linear motion probe of every network
    ephys_overrides: dict = field(default_factory=dict)
    header: dict = field(default_factory=dict)  # more study.json fields (e.g. the protocol)
    untrained_seeds: int = 0  # measure this many untrained networks (seeds 0 …) as the reference range

    def __post_init__(self) -> None:
        if untrained_seeds_problem(self.untrained_seeds):
            raise ConfigError(untrained_seeds_problem(self.untrained_seeds))


def run_plan(plan: StudyPlan, out: str | Path, *, progress: bool = True, log: Callable[[str], Any] = print) -> dict:
    """Run (or continue) ``plan`` into the study folder ``out``; returns the study (as in
    ``study.json``) on every rank. One process per study folder; under torchrun the ranks of one
    job are that one process (the main process holds the folder, measures and writes)."""
    out = Path(out)
    distributed.init_distributed(resolve_device(plan.base.train.device).type, plan.base.train.collective_minutes)
    with study_folder(out) if distributed.is_main() else contextlib.nullcontext():
        return _run_plan(plan, RunFolder(out), progress, log)


def _run_plan(plan: StudyPlan, folder: RunFolder, progress: bool, log) -> dict:
    blocks = list(plan.blocks or plan.base.ephys.blocks)
    clips = plan.ephys_overrides.get("bn_calibration_clips", plan.base.ephys.bn_calibration_clips)
    study: dict[str, Any] = {"kind": plan.kind, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                             "config": plan.base.to_dict(), "blocks": blocks, "seeds": plan.seeds,
                             "batchnorm": bn_mode(clips), "ephys_overrides": dict(plan.ephys_overrides),
                             **plan.header, "conditions": []}
    t_study = time.time()
    reference = None
    if plan.untrained_seeds:
        reference = distributed.broadcast_from_main(distributed.on_main(
            "measuring the untrained reference",
            lambda: cached_reference(folder, plan.base, plan.untrained_seeds, blocks, plan.ephys_overrides or None,
                                     log=lambda m: log(f"[stdann {plan.kind}] {m}"))))
        study["untrained_reference"] = reference
    untrained: dict[str, dict] = {}  # group -> the untrained network's summaries
    for pc in plan.conditions:
        if pc.line and distributed.is_main():
            log(pc.line)
        t = time.time()
        run = pc.make(progress)
        entry = distributed.on_main(f"measuring {run.root}", lambda: _measure(pc, run, blocks, plan, untrained, time.time() - t))
        if distributed.is_main():
            rows = [entry] + ([control_row(entry)] if pc.control_after else [])
            judged = reference is not None and _geometry(pc.cfg) == _geometry(plan.base)  # same network shape and clips
            for row in rows:
                add_condition(study, {**row, "range_verdicts": range_verdicts(row["metrics"], reference)} if judged else row)
            _write(folder, study, t_study)

    def finish() -> dict:
        write_study_figures(folder, study)
        _write(folder, study, t_study)
        return study

    return distributed.broadcast_from_main(distributed.on_main("writing the study", finish))


def _measure(pc: PlannedCondition, run: RunFolder, blocks: list[str], plan: StudyPlan, untrained: dict,
             seconds: float) -> dict:
    """(main process) The condition's entry: its complete, current condition.json, or a new measurement."""
    entry = cached_condition(run, need_untrained=pc.untrained_group is not None)
    if entry is None:
        meta = {"name": pc.name, "label": pc.label, "seed": pc.seed, "alpha": pc.alpha, "mode": pc.mode,
                "train_seconds": seconds}
        if pc.overrides is not None:
            meta["overrides"] = list(pc.overrides)
        with run.hold():
            entry = evaluate_condition(run, pc.cfg, meta, blocks, untrained=untrained.get(pc.untrained_group or ""),
                                       readout=plan.readout, snapshots=pc.snapshots,
                                       ephys_overrides=plan.ephys_overrides or None)
    if pc.untrained_group is not None:
        untrained.setdefault(pc.untrained_group, entry[UNTRAINED_SUMMARY])
    return entry


def _geometry(cfg: Config) -> tuple:
    """What the untrained reference (made from the study's base configuration) must share with a row
    to judge it: the network and the clips it is measured with."""
    return cfg.model.arch, cfg.model.width, cfg.data.frames, cfg.data.size


def _write(folder: RunFolder, study: dict, t_start: float) -> None:
    study["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
    study["seconds_this_session"] = time.time() - t_start
    write_study_json(folder, study)

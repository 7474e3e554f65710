"""The paper's whole protocol at one scale, for several seeds, as one resumable study (``stdann study``).

For each seed ``s`` (folder ``OUT/seed<s>/``), following TDANN's sequence (Margalit et al. 2024) as
arXiv 2605.11718 uses it:

    pretrain/        contrastive-only pretraining (α = 0): shared by every α condition of the seed
    swap/            unit positions swap-optimised on the pretrained network's responses to the
                     probe set (gratings + generated clips): positions/, swap.json, figures/
    alpha_<a>/       positions frozen; joint training L = L_task + a·ΣSL_rel for the joint steps,
                     starting from the pretrained weights (a = 0: MoCo alone, same steps)
    spatial_only/    the spatial loss alone (task loss off, α·SL with α = 1) for the same number of
                     steps, from the same untrained initialisation, on retinotopic positions

With a positive control (``ProtocolPlan.positive_control``: its α values), the same sequence again
with the supervised objective ``ProtocolPlan.positive_objective`` (``train.objective``: the
network is told the generated camera motion's direction, so it must encode motion) in place of
MoCo: ``<objective>_pretrain/`` (α = 0, same steps and same initial backbone as MoCo's
pretraining), ``<objective>_swap/`` (positions swapped on that network) and ``<objective>_alpha_<a>/``
(joint training at each α: with and without the spatial loss). Those rows have
``mode = "positive_control"``; they show what emergence looks like when the task needs motion.

Step counts come from the configuration: ``optim.total_steps()`` is one α condition's whole
recipe, split by ``topography.pretrain_fraction`` into pretraining and joint training.

Every condition is measured with drifting gratings beside its untrained network — the
pretraining's step-0 weights, which every run of the seed shares — with BatchNorm statistics
re-estimated on the same generated clips (``orchestration.analysis.evaluate_network``). The
untrained network measured on the swapped positions is also stored as its own row
(``mode = "control"``). Each finished condition writes ``condition.json`` in its run folder and
the study rewrites ``OUT/study.json``; a stopped study continues where it stopped when the same
command is run again (each training resumes from its last checkpoint).

``study.json`` has the layout of ``stdann sweep`` (``kind = "sweep"``, α conditions with
``mode = "recipe"``), so its figures and report are drawn by the same code, plus ``protocol``
(the plan) and per condition ``task``: the final InfoNCE (mean over the last log interval) beside
chance ln(K + 1), and the held-out instance-discrimination check (``training.evaluation``); for the
positive control its cross-entropy beside chance Σ ln(classes) and its held-out direction top-1
beside 1/bins (``final_loss``, ``chance_loss``, ``heldout_top1``, ``heldout_chance_top1``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stdann.config import Config
from stdann.devices import resolve_device
from stdann.ephys.recording import bn_mode
from stdann.models.motion_classifier import SUPERVISED
from stdann.orchestration.conditions import UNTRAINED_SUMMARY, add_condition, cached_condition, control_row, evaluate_condition
from stdann.orchestration.recipe import joint_config, pretrain_config, step_split, swap_stage, train_stage
from stdann.orchestration.study_files import study_folder, write_study_figures, write_study_json
from stdann.runs.checkpoint import load_backbone
from stdann.runs.folder import RunFolder
from stdann.runs.layout import SWAP

# The positive control's optimiser: SGD at the MoCo presets' learning rate left it at chance for 400
# demo steps (and at 0.01-0.2 per 32 clips for 150); AdamW at 1e-3 per 32 clips learned it
# (docs/emergence.md §8).
POSITIVE_CONTROL_RECIPE = ("optim.optimizer=adamw", "optim.lr=0.008")
DEFAULT_ALPHAS = (0.0, 0.1, 0.25, 1.0, 2.5)


@dataclass
class ProtocolPlan:
    """What one study runs: α values, seeds, and whether the spatial-loss-only ablation is added."""

    alphas: tuple[float, ...] = DEFAULT_ALPHAS
    seeds: int = 2
    spatial_only: bool = True
    blocks: list[str] = field(default_factory=list)  # analysed blocks (default: ephys.blocks)
    # α values of the supervised positive control's joint runs (empty: no positive control)
    positive_control: tuple[float, ...] = ()
    positive_objective: str = "supervised_direction"  # its train.objective
    positive_overrides: tuple[str, ...] = POSITIVE_CONTROL_RECIPE  # its recipe on top of the study's configuration
    # a MoCo lever compared in the same study: the MoCo sequence again with these overrides (e.g.
    # moco.reverse_negatives=true), joint at lever_alphas; rows mode "lever", folders lever_*
    lever: tuple[str, ...] = ()
    lever_alphas: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.alphas:
            raise ValueError("a study needs at least one α")
        if bool(self.lever) != bool(self.lever_alphas):
            raise ValueError("a lever needs both its overrides and its α values")
        for what, values in (("α", self.alphas), ("positive-control α", self.positive_control),
                             ("lever α", self.lever_alphas)):
            if any(not math.isfinite(a) or a < 0 for a in values):
                raise ValueError(f"{what} values must be finite and >= 0, got {list(values)}")
        if self.seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {self.seeds}")
        if self.positive_objective not in SUPERVISED:
            raise ValueError(f"the positive control's objective must be one of {', '.join(SUPERVISED)}, "
                             f"got {self.positive_objective!r}")

    @property
    def prefix(self) -> str:
        """Folder and condition-name prefix of the positive control's runs."""
        return f"{self.positive_objective}_"


def seed_config(cfg: Config, seed: int) -> Config:
    return cfg.with_overrides([f"train.seed={seed}", f"data.seed={cfg.data.seed + seed}"])


def alpha_name(alpha: float) -> str:
    return f"alpha_{alpha:g}"


# -- the shared stages of one seed ------------------------------------------------------------------------
def pretrain(cfg: Config, seed_dir: Path, progress: bool, prefix: str = "") -> RunFolder:
    """Task-only pretraining of one seed (skipped when finished; resumed when stopped) into
    ``seed_dir/<prefix>pretrain``."""
    pre_steps, _ = step_split(cfg)
    run = RunFolder(seed_dir / f"{prefix}pretrain")
    if not run.is_finished():
        train_stage(pretrain_config(cfg, pre_steps), run.root, progress)
    return run


def swapped_positions(cfg: Config, pre: RunFolder, seed_dir: Path, progress: bool, prefix: str = "") -> RunFolder:
    """The seed's positions, swap-optimised on the pretrained network (skipped when done), in
    ``seed_dir/<prefix>swap``."""
    run = RunFolder(seed_dir / f"{prefix}swap")
    blocks = list(cfg.topography.blocks)
    with run.hold():
        run.ensure_run()
        if not run.has(SWAP):
            device = resolve_device(cfg.train.device)
            model, _ = load_backbone(pre.root, "last", device=device)
            initial = pre.load_positions(blocks)
            if initial is None:
                raise FileNotFoundError(f"{pre.root} holds no positions; the pretraining run writes them")
            swap_stage(model, cfg, run, initial, int(cfg.topography.swap_steps), pre.root, device, progress)
    return run


def joint(cfg: Config, alpha: float, pre: RunFolder, swap: RunFolder, seed_dir: Path, progress: bool,
          prefix: str = "") -> RunFolder:
    """Joint training at ``alpha`` from the pretrained weights, on the swapped (frozen) positions,
    in ``seed_dir/<prefix>alpha_<a>``."""
    _, joint_steps = step_split(cfg)
    run = RunFolder(seed_dir / f"{prefix}{alpha_name(alpha)}")
    blocks = list(cfg.topography.blocks)
    with run.hold():
        run.ensure_run()
        if run.load_positions(blocks) is None:
            run.save_positions(swap.load_positions(blocks))
    if not run.is_finished():
        at_alpha = cfg.with_overrides([f"topography.alpha={alpha}", "topography.spatial_only=false"])
        train_stage(joint_config(at_alpha, pre.root, joint_steps), run.root, progress)
    return run


def spatial_only(cfg: Config, seed_dir: Path, progress: bool) -> RunFolder:
    """The spatial loss alone, from the untrained initialisation, for the joint stage's steps."""
    _, joint_steps = step_split(cfg)
    run = RunFolder(seed_dir / "spatial_only")
    if not run.is_finished():
        train_stage(cfg.with_overrides(["topography.spatial_only=true", "topography.alpha=1.0",
                                        f"optim.max_steps={joint_steps}"]), run.root, progress)
    return run


# -- measuring a run ------------------------------------------------------------------------------------------
def condition_entry(run: RunFolder, cfg: Config, *, name: str, label: str, seed: int, alpha: float | None, mode: str,
                    blocks: list[str], untrained: dict | None, readout: bool, seconds: float) -> tuple[dict, dict]:
    """A condition's study entry (cached in its ``condition.json``) and the untrained summaries."""
    cached = cached_condition(run, need_untrained=True)
    if cached is not None:
        return cached, cached[UNTRAINED_SUMMARY]
    meta = {"name": name, "label": label, "seed": seed, "alpha": alpha, "mode": mode, "train_seconds": seconds}
    with run.hold():
        entry = evaluate_condition(run, cfg, meta, blocks, untrained=untrained, readout=readout)
    return entry, entry[UNTRAINED_SUMMARY]


# -- the study ----------------------------------------------------------------------------------------------------
def run_protocol(cfg: Config, out: str | Path, plan: ProtocolPlan, *, progress: bool = True, readout: bool = True,
                 log=print) -> dict:
    """Run (or continue) the whole protocol into ``out``; returns the study dict (also ``study.json``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with study_folder(out):  # one process per study folder
        return _run_protocol(cfg, out, plan, progress=progress, readout=readout, log=log)


def _run_protocol(cfg: Config, out: Path, plan: ProtocolPlan, *, progress: bool, readout: bool, log) -> dict:
    blocks = list(plan.blocks or cfg.ephys.blocks)
    pre_steps, joint_steps = step_split(cfg)
    study: dict[str, Any] = {
        "kind": "sweep", "created": time.strftime("%Y-%m-%d %H:%M:%S"), "config": cfg.to_dict(), "blocks": blocks,
        "seeds": plan.seeds, "batchnorm": bn_mode(cfg.ephys.bn_calibration_clips), "ephys_overrides": {},
        "protocol": {"alphas": list(plan.alphas), "spatial_only": plan.spatial_only, "pretrain_steps": pre_steps,
                     "joint_steps": joint_steps, "swap_steps": cfg.topography.swap_steps,
                     "positive_control": list(plan.positive_control), "positive_objective": plan.positive_objective,
                     "positive_overrides": list(plan.positive_overrides),
                     "lever": list(plan.lever), "lever_alphas": list(plan.lever_alphas),
                     "order": "per seed: pretrain (shared) -> swap -> joint at each alpha -> spatial only"
                              + (" -> positive control: its pretrain -> swap -> joint at each of its alphas"
                                 if plan.positive_control else "")},
        "conditions": [],
    }
    t_study = time.time()
    for seed in range(plan.seeds):
        scfg = seed_config(cfg, seed)
        seed_dir = out / f"seed{seed}"
        t = time.time()
        log(f"[stdann study] seed {seed}: pretraining ({pre_steps} steps)")
        pre = pretrain(scfg, seed_dir, progress)
        log(f"[stdann study] seed {seed}: swap pre-optimisation of positions ({scfg.topography.swap_steps} steps per block)")
        swap = swapped_positions(scfg, pre, seed_dir, progress)
        shared_seconds = time.time() - t
        untrained = None
        for alpha in plan.alphas:
            t = time.time()
            log(f"[stdann study] seed {seed}: joint training at alpha = {alpha:g} ({joint_steps} steps)")
            run = joint(scfg, alpha, pre, swap, seed_dir, progress)
            label = f"α = {alpha:g}" + (" (MoCo only)" if alpha == 0 else "")
            entry, untrained = condition_entry(run, scfg, name=alpha_name(alpha), label=label, seed=seed, alpha=float(alpha),
                                               mode="recipe", blocks=blocks, untrained=untrained, readout=readout,
                                               seconds=time.time() - t + shared_seconds)
            add_condition(study, entry)
            _write_study(out, study, t_study)
        add_condition(study, control_row(entry))
        if plan.spatial_only:
            t = time.time()
            log(f"[stdann study] seed {seed}: spatial loss only ({joint_steps} steps)")
            run = spatial_only(scfg, seed_dir, progress)
            entry, _ = condition_entry(run, scfg, name="spatial_only", label="spatial loss only", seed=seed, alpha=None,
                                       mode="train", blocks=blocks, untrained=None, readout=readout,
                                       seconds=time.time() - t)
            add_condition(study, entry)
        _write_study(out, study, t_study)
        if plan.positive_control:
            _positive_control(scfg, plan, seed, seed_dir, study, blocks, progress, readout, log, t_study)
        if plan.lever:
            _variant(scfg.with_overrides(list(plan.lever)), LEVER_PREFIX, plan.lever_alphas, "lever",
                     f"MoCo + {', '.join(plan.lever)}", seed, seed_dir, study, blocks, progress, readout, log, t_study)
    write_study_figures(RunFolder(out), study)
    _write_study(out, study, t_study)
    return study


def _positive_control(scfg: Config, plan: ProtocolPlan, seed: int, seed_dir: Path, study: dict, blocks: list[str],
                      progress: bool, readout: bool, log, t_study: float) -> None:
    """The positive control of one seed: the MoCo sequence (pretrain -> swap -> joint at each α) with
    the supervised objective; one ``mode = "positive_control"`` row per α."""
    pcfg = scfg.with_overrides([f"train.objective={plan.positive_objective}", *plan.positive_overrides])
    _variant(pcfg, plan.prefix, plan.positive_control, "positive_control", f"positive control ({plan.positive_objective})",
             seed, seed_dir, study, blocks, progress, readout, log, t_study)


LEVER_PREFIX = "lever_"


def _variant(vcfg: Config, prefix: str, alphas: tuple[float, ...], mode: str, what: str, seed: int, seed_dir: Path,
             study: dict, blocks: list[str], progress: bool, readout: bool, log, t_study: float) -> None:
    """The MoCo sequence of one seed again (pretrain -> swap -> joint at each α) with the configuration
    ``vcfg`` of a variant (the positive control, a lever), in folders and rows named ``prefix``..."""
    pre_steps, joint_steps = step_split(vcfg)
    t = time.time()
    log(f"[stdann study] seed {seed}: {what}: pretraining ({pre_steps} steps)")
    pre = pretrain(vcfg, seed_dir, progress, prefix)
    log(f"[stdann study] seed {seed}: {what}: swap pre-optimisation of positions")
    swap = swapped_positions(vcfg, pre, seed_dir, progress, prefix)
    shared_seconds = time.time() - t
    untrained = None  # its own positions: the untrained network's maps are measured on them again
    for alpha in alphas:
        t = time.time()
        log(f"[stdann study] seed {seed}: {what} at alpha = {alpha:g} ({joint_steps} steps)")
        run = joint(vcfg, alpha, pre, swap, seed_dir, progress, prefix)
        entry, untrained = condition_entry(run, vcfg, name=prefix + alpha_name(alpha), label=f"{what}, α = {alpha:g}",
                                           seed=seed, alpha=float(alpha), mode=mode, blocks=blocks,
                                           untrained=untrained, readout=readout,
                                           seconds=time.time() - t + shared_seconds)
        add_condition(study, entry)
        _write_study(seed_dir.parent, study, t_study)


def _write_study(out: Path, study: dict, t_start: float) -> None:
    study["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
    study["seconds_this_session"] = time.time() - t_start
    write_study_json(RunFolder(out), study)

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
re-estimated on the same generated clips (``orchestration.run_analysis.evaluate_network``). The
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
from dataclasses import dataclass, field
from pathlib import Path

from stdann import distributed
from stdann.config import Config, ConfigError
from stdann.devices import resolve_device
from stdann.ephys.verdicts import untrained_seeds_problem
from stdann.models.motion_classifier import SUPERVISED
from stdann.orchestration.runner import PlannedCondition, StudyPlan, run_plan
from stdann.orchestration.reference import seed_config
from stdann.orchestration.recipe import joint_config, pretrain_config, step_split, swap_stage, train_stage
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
    untrained_seeds: int = 0  # untrained networks of seeds 0 … measured as the reference range (0: none)

    def __post_init__(self) -> None:
        if not self.alphas:
            raise ConfigError("a study needs at least one α")
        if bool(self.lever) != bool(self.lever_alphas):
            raise ConfigError("a lever needs both its overrides and its α values")
        for what, values in (("α", self.alphas), ("positive-control α", self.positive_control),
                             ("lever α", self.lever_alphas)):
            if any(not math.isfinite(a) or a < 0 for a in values):
                raise ConfigError(f"{what} values must be finite and >= 0, got {list(values)}")
        if untrained_seeds_problem(self.untrained_seeds):  # checked here too: before a --background study detaches
            raise ConfigError(untrained_seeds_problem(self.untrained_seeds))
        if self.seeds < 1:
            raise ConfigError(f"seeds must be >= 1, got {self.seeds}")
        if self.positive_objective not in SUPERVISED:
            raise ConfigError(f"the positive control's objective must be one of {', '.join(SUPERVISED)}, "
                             f"got {self.positive_objective!r}")

    @property
    def prefix(self) -> str:
        """Folder and condition-name prefix of the positive control's runs."""
        return f"{self.positive_objective}_"


def alpha_name(alpha: float) -> str:
    return f"alpha_{alpha:g}"


# -- the shared stages of one seed (every rank calls them; each skips what is done) ----------------------------
def pretrain(cfg: Config, seed_dir: Path, progress: bool, prefix: str = "", log=print) -> RunFolder:
    """Task-only pretraining of one seed (skipped when finished; resumed when stopped) into
    ``seed_dir/<prefix>pretrain``."""
    pre_steps, _ = step_split(cfg)
    run = RunFolder(seed_dir / f"{prefix}pretrain")
    if not run.is_finished():
        if distributed.is_main():
            log(f"[stdann study] {seed_dir.name}/{run.root.name}: pretraining ({pre_steps} steps)")
        train_stage(pretrain_config(cfg, pre_steps), run.root, progress)
    return run


def swapped_positions(cfg: Config, pre: RunFolder, seed_dir: Path, progress: bool, prefix: str = "", log=print) -> RunFolder:
    """The seed's positions, swap-optimised on the pretrained network by the recipe's swap stage
    (skipped when done; the main process swaps, the other ranks wait), in ``seed_dir/<prefix>swap``."""
    run = RunFolder(seed_dir / f"{prefix}swap")

    def swap() -> None:
        with run.hold():
            run.ensure_run()
            if run.has(SWAP):
                return
            log(f"[stdann study] {seed_dir.name}/{run.root.name}: swap pre-optimisation of positions "
                f"({cfg.topography.swap_steps} steps per block)")
            device = resolve_device(cfg.train.device)
            model, _ = load_backbone(pre.root, "last", device=device)
            initial = pre.load_positions(list(cfg.topography.blocks))
            if initial is None:
                raise FileNotFoundError(f"{pre.root} holds no positions; the pretraining run writes them")
            swap_stage(model, cfg, run, initial, int(cfg.topography.swap_steps), pre.root, device, progress)

    distributed.on_main(f"the swaps in {run.root}", swap)
    return run


def joint(cfg: Config, alpha: float, pre: RunFolder, swap: RunFolder, seed_dir: Path, progress: bool,
          prefix: str = "") -> RunFolder:
    """Joint training at ``alpha`` from the pretrained weights, on the swapped (frozen) positions,
    in ``seed_dir/<prefix>alpha_<a>``."""
    _, joint_steps = step_split(cfg)
    run = RunFolder(seed_dir / f"{prefix}{alpha_name(alpha)}")
    blocks = list(cfg.topography.blocks)

    def copy_positions() -> None:
        with run.hold():
            run.ensure_run()
            if run.load_positions(blocks) is None:
                run.save_positions(swap.load_positions(blocks))

    distributed.on_main(f"the positions of {run.root}", copy_positions)
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


# -- the plan ----------------------------------------------------------------------------------------------------
LEVER_PREFIX = "lever_"


def _sequence(vcfg: Config, seed: int, seed_dir: Path, prefix: str, alphas: tuple[float, ...], mode: str, what: str,
              log) -> list[PlannedCondition]:
    """One seed's pretrain -> swap -> joint at each α with configuration ``vcfg``, as planned rows
    (the pretraining and the swaps are made by the first row that needs them)."""
    _, joint_steps = step_split(vcfg)

    def make(alpha: float, line: str):
        def run(progress: bool) -> RunFolder:
            pre = pretrain(vcfg, seed_dir, progress, prefix, log)
            swap = swapped_positions(vcfg, pre, seed_dir, progress, prefix, log)
            if distributed.is_main():
                log(line)
            return joint(vcfg, alpha, pre, swap, seed_dir, progress, prefix)
        return run

    rows = []
    for alpha in alphas:
        label = (f"α = {alpha:g}" + (" (MoCo only)" if alpha == 0 else "")) if mode == "recipe" else f"{what}, α = {alpha:g}"
        at = f"joint training at alpha = {alpha:g}" if mode == "recipe" else f"{what} at alpha = {alpha:g}"
        rows.append(PlannedCondition(
            name=prefix + alpha_name(alpha), label=label, seed=seed, cfg=vcfg, alpha=float(alpha), mode=mode,
            make=make(alpha, f"[stdann study] seed {seed}: {at} ({joint_steps} steps)"),
            untrained_group=f"seed{seed}/{prefix}"))  # the pretraining's step-0 network on the same swapped positions
    return rows


def protocol_plan(cfg: Config, plan: ProtocolPlan, out: str | Path, *, readout: bool = True, log=print) -> StudyPlan:
    """The whole protocol as a study plan (module docstring): per seed the α rows and the untrained
    network's row, the spatial loss alone, the positive control, the lever."""
    out = Path(out)
    pre_steps, joint_steps = step_split(cfg)
    rows: list[PlannedCondition] = []
    for seed in range(plan.seeds):
        scfg, seed_dir = seed_config(cfg, seed), out / f"seed{seed}"
        moco = _sequence(scfg, seed, seed_dir, "", plan.alphas, "recipe", "", log)
        moco[-1].control_after = True  # the untrained network (pretraining's step 0, swapped positions) as a row
        rows += moco
        if plan.spatial_only:
            rows.append(PlannedCondition(
                name="spatial_only", label="spatial loss only", seed=seed, cfg=scfg, mode="train",
                make=lambda progress, scfg=scfg, seed_dir=seed_dir: spatial_only(scfg, seed_dir, progress),
                line=f"[stdann study] seed {seed}: spatial loss only ({joint_steps} steps)"))
        if plan.positive_control:
            pcfg = scfg.with_overrides([f"train.objective={plan.positive_objective}", *plan.positive_overrides])
            rows += _sequence(pcfg, seed, seed_dir, plan.prefix, plan.positive_control, "positive_control",
                              f"positive control ({plan.positive_objective})", log)
        if plan.lever:
            rows += _sequence(scfg.with_overrides(list(plan.lever)), seed, seed_dir, LEVER_PREFIX, plan.lever_alphas,
                              "lever", f"MoCo + {', '.join(plan.lever)}", log)
    protocol = {"alphas": list(plan.alphas), "spatial_only": plan.spatial_only, "pretrain_steps": pre_steps,
                "joint_steps": joint_steps, "swap_steps": cfg.topography.swap_steps,
                "positive_control": list(plan.positive_control), "positive_objective": plan.positive_objective,
                "positive_overrides": list(plan.positive_overrides), "lever": list(plan.lever),
                "lever_alphas": list(plan.lever_alphas), "untrained_seeds": plan.untrained_seeds,
                "order": "per seed: pretrain (shared) -> swap -> joint at each alpha -> spatial only"
                         + (" -> positive control: its pretrain -> swap -> joint at each of its alphas"
                            if plan.positive_control else "")}
    return StudyPlan(kind="sweep", base=cfg, conditions=rows, seeds=plan.seeds, blocks=list(plan.blocks),
                     readout=readout, header={"protocol": protocol}, untrained_seeds=plan.untrained_seeds)


def run_protocol(cfg: Config, out: str | Path, plan: ProtocolPlan, *, progress: bool = True, readout: bool = True,
                 log=print) -> dict:
    """Run (or continue) the whole protocol into ``out``; returns the study dict (also ``study.json``)."""
    return run_plan(protocol_plan(cfg, plan, out, readout=readout, log=log), out, progress=progress, log=log)

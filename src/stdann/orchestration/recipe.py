"""The topographic recipe of TDANN / the paper, as one resumable function.

    1. contrastive-only pretraining (α = 0)                       → OUT/pretrain/
    2. retinotopic position initialisation                        (saved by step 1)
    3. swap pre-optimisation of positions on the pretrained
       network's responses to a probe set (drifting gratings of
       every direction + generated naturalistic clips)            → OUT/positions/, OUT/swap.json
    4. positions frozen; joint training L = L_task + α·ΣSL_rel
       starting from the pretrained weights                       → OUT/ (a normal run folder)

Each stage is skipped when its output exists, so an interrupted recipe continues where it
stopped. The untrained control of OUT is the pretraining run's step-0 network (copied as
OUT/checkpoints/init.pt by ``train.init_from``). OUT and OUT/pretrain are run folders
(:mod:`stdann.runs.folder`): the recipe holds OUT's lock throughout and writes only through it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import torch

from stdann import distributed
from stdann.config import Config, ConfigError
from stdann.data.generator import VideoGenerator
from stdann.devices import resolve_device
from stdann.ephys.stimuli import grating_set
from stdann.errors import StdannError
from stdann.fileio import read_json_object
from stdann.models.inputs import normalize
from stdann.reports.figures.positions import plot_swap_comparison
from stdann.runs.checkpoint import load_backbone
from stdann.runs.errors import RunFolderError
from stdann.runs.folder import RunFolder
from stdann.runs.layout import PRETRAIN, SWAP
from stdann.topography.positions import load_run_positions
from stdann.topography.swap import record_probe_responses, swap_optimize
from stdann.training.trainer import train


@dataclass
class RecipeResult:
    run_dir: Path
    pretrain_dir: Path
    swap: dict
    seconds: dict


def probe_batches(cfg: Config, device, n_natural: int = 64, batch_size: int = 32, seed: int = 0) -> Iterator[torch.Tensor]:
    """Model-ready probe clips: the grating set of ``cfg.ephys`` (one phase) + generated clips."""
    frames, size = cfg.data.frames, cfg.data.size
    gset = grating_set(dataclasses.replace(cfg.ephys, n_phases=1), frames, size)
    for x in gset.batches(batch_size, device=device):
        yield normalize(x)
    gen = VideoGenerator(cfg.data, device=device)
    for start in range(0, n_natural, batch_size):
        n = min(batch_size, n_natural - start)
        yield normalize(gen.generate(n, seed=10_000 + seed * 1000 + start))


def optimize_positions(model, cfg: Config, positions: dict, steps: int, device="cpu", progress: bool = True,
                       figure_path: Callable[[str], Path] | None = None, n_natural: int = 64) -> tuple[dict, dict]:
    """Swap-optimise every block's positions on the model's probe responses (docs/architecture.md);
    ``figure_path(block)`` gives where to draw each block's before/after figure (none if None)."""
    blocks = list(positions)
    responses = record_probe_responses(model, probe_batches(cfg, device, n_natural=n_natural), blocks, device=device)
    out, history = {}, {}
    for i, b in enumerate(blocks):
        new, hist = swap_optimize(
            responses[b], positions[b], steps=steps, windows_per_step=cfg.topography.swap_windows_per_step,
            pairs_per_window=cfg.topography.swap_pairs_per_window, seed=cfg.train.seed * 100 + i, progress=progress,
            device=device,
        )
        out[b] = new
        history[b] = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in hist.items()}
        if figure_path is not None:
            plot_swap_comparison(positions[b], new, figure_path(b), history=hist)
    return out, history


def swap_summary(history: dict) -> dict:
    """Per block: mean SL_rel on the fixed evaluation windows before and after, swaps accepted."""
    out = {}
    for b, h in history.items():
        seq = h.get("eval_sl") or h.get("sl") or [None]
        out[b] = {"sl_first": seq[0], "sl_last": seq[-1], "accepted": h.get("total_accepted")}
    return out


class RecipeInterrupted(StdannError, RuntimeError):
    """A training stage stopped early (Ctrl-C, SIGTERM, time budget); rerun the same command to resume.
    ``exit_code`` is 128 + the signal's number when a signal stopped it (130 Ctrl-C, 143 SIGTERM)."""

    def __init__(self, message: str, signum: int | None = None):
        super().__init__(message)
        self.exit_code = 128 + int(signum) if signum else 2


def step_split(cfg: Config, pretrain_steps: int | None = None) -> tuple[int, int]:
    """(pretraining steps, joint steps) of one recipe: ``optim.total_steps()`` split at
    ``pretrain_steps`` (default ``topography.pretrain_fraction`` of it). Both must be at least 1."""
    total = cfg.optim.total_steps()
    pre = int(round(cfg.topography.pretrain_fraction * total)) if pretrain_steps is None else int(pretrain_steps)
    if not 0 < pre < total:
        raise ConfigError(f"the recipe splits optim.max_steps = {total} between pretraining and joint training "
                          f"(pretraining {pre} of {total}, topography.pretrain_fraction = {cfg.topography.pretrain_fraction}): "
                          "both need at least one step; set optim.max_steps to 2 or more and topography.pretrain_fraction "
                          "strictly between 0 and 1")
    return pre, total - pre


def pretrain_config(cfg: Config, steps: int) -> Config:
    """The pretraining stage: the task alone (α = 0) for ``steps`` steps."""
    return cfg.with_overrides(["topography.alpha=0", "topography.spatial_only=false", f"optim.max_steps={steps}"])


def joint_config(cfg: Config, pretrained: str | Path, steps: int) -> Config:
    """The joint stage: ``cfg``'s task + α·spatial loss from the pretrained run's weights, for ``steps`` steps."""
    return cfg.with_overrides([f"train.init_from={pretrained}", f"optim.max_steps={steps}"])


def train_stage(cfg: Config, run_dir: Path, progress: bool) -> None:
    """Train ``run_dir`` to its end, continuing it if it has a checkpoint; raises
    :class:`RecipeInterrupted` when it stops early."""
    result = train(cfg, run_dir, resume="auto", progress=progress)
    if result.status != "finished":
        how = f"{result.status} by {signal.Signals(result.signal).name}" if result.signal else result.status
        raise RecipeInterrupted(
            f"training in {run_dir} stopped at step {result.step}/{result.total_steps} ({how}); "
            "run the same command again to resume", result.signal,
        )


def _read_swap(run: RunFolder) -> dict:
    """The recipe's swap summary; a damaged one is refused (redoing the swaps would change the positions
    the joint training uses)."""
    return read_json_object(run.path(SWAP), RunFolderError,
                            "restore it, or run the recipe again from the start (`stdann demo --overwrite`): new swaps "
                            "would change the positions the joint training used")


def topographic_recipe(cfg: Config, out: str | Path, *, pretrain_steps: int | None = None, swap_steps: int | None = None,
                       progress: bool = True) -> RecipeResult:
    """Run the four stages into ``out``; ``cfg.optim.total_steps()`` is split between pretraining
    (``pretrain_steps``, default ``topography.pretrain_fraction``) and joint training (the rest).

    Under torchrun every rank runs the two trainings (DDP); the main process alone holds the lock,
    writes, and runs the swap pre-optimisation while the others wait; then every rank trains on
    the positions it wrote."""
    distributed.init_distributed(resolve_device(cfg.train.device).type, cfg.train.collective_minutes)
    run = RunFolder(out)
    with run.hold() if distributed.is_main() else contextlib.nullcontext():
        return _recipe(cfg, run, pretrain_steps, swap_steps, progress)


def _prepare(run: RunFolder, blocks: list[str]) -> tuple[bool, bool, bool]:
    """(main process) Make ``run`` and its ``pretrain/`` run folders; refuse a user's file in the way
    before hours of work, not after. Returns what is done: (pretraining, swaps, joint training)."""
    run.ensure_run()
    if not run.has(SWAP):
        run.check_writable([SWAP] + [f"positions/{b}.npz" for b in blocks] + [run.positions_figure(b) for b in blocks])
    pre = run.adopt_child(PRETRAIN)
    return pre.is_finished(), run.has(SWAP), run.is_finished()


def swap_stage(model, cfg: Config, run: RunFolder, initial: dict, steps: int, source: str | Path, device,
               progress: bool) -> dict:
    """(main process, ``run`` held) The one swap stage (the recipe's and ``stdann positions optimize``'s):
    swap-optimise ``initial`` positions on ``model``'s probe responses for ``steps`` steps (0 = keep
    them), draw each block's before/after figure, and write the positions and ``swap.json`` — one
    schema: ``steps``, ``from`` (the network's run folder), ``blocks`` (:func:`swap_summary`),
    ``history``. Returns the per-block summary."""
    if steps > 0:
        final, history = optimize_positions(model, cfg, initial, steps, device, progress,
                                            lambda b: run.claim(run.positions_figure(b)))
    else:
        final, history = initial, {}
    summary = swap_summary(history)
    run.save_positions(final, (SWAP, {"steps": steps, "from": str(source), "blocks": summary, "history": history}))
    return summary


def _recipe_swap_stage(cfg: Config, run: RunFolder, pre: RunFolder, blocks: list[str], swap_steps: int,
                       progress: bool) -> None:
    """(main process) Swap-optimise the pretraining run's positions on its last network."""
    device = resolve_device(cfg.train.device)
    if device.type == "cuda" and distributed.is_dist():
        device = torch.device("cuda", torch.cuda.current_device())
    model, _ = load_backbone(pre.root, "last", device=device)
    swap_stage(model, cfg, run, load_run_positions(pre.root, blocks), swap_steps, pre.root, device, progress)


def _recipe(cfg: Config, run: RunFolder, pretrain_steps: int | None, swap_steps: int | None,
            progress: bool) -> RecipeResult:
    out = run.root
    pretrain_steps, joint_steps = step_split(cfg, pretrain_steps)
    swap_steps = cfg.topography.swap_steps if swap_steps is None else int(swap_steps)
    blocks = list(cfg.topography.blocks)
    # what is done is decided by the main process and told to every rank (one view of the folder)
    pre_done, swap_done, joint_done = distributed.broadcast_from_main(distributed.on_main("preparing the run folder", lambda: _prepare(run, blocks)))
    pre = run.child(PRETRAIN)
    seconds = {}

    t = time.time()
    if not pre_done:
        train_stage(pretrain_config(cfg, pretrain_steps), pre.root, progress)
    seconds["pretrain"] = time.time() - t

    t = time.time()
    if not swap_done:
        distributed.on_main("the swap pre-optimisation of positions", lambda: _recipe_swap_stage(cfg, run, pre, blocks, swap_steps, progress))
    swap = _read_swap(run)
    seconds["swap"] = time.time() - t

    t = time.time()
    if not joint_done:
        train_stage(joint_config(cfg, pre.root, joint_steps), out, progress)
    seconds["joint"] = time.time() - t
    return RecipeResult(out, pre.root, swap, seconds)

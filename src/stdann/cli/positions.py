"""``stdann positions``: initialise, swap-optimise and plot unit positions on the cortical sheets."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from stdann.cli.common import add_config_args, config_from_args, count
from stdann.config import load_config
from stdann.devices import resolve_device
from stdann.models.r3d import BLOCK_NAMES, block_output_shapes
from stdann.orchestration.recipe import swap_stage
from stdann.reports.figures.positions import save_positions_plot
from stdann.resources import check_memory
from stdann.runs.checkpoint import load_backbone
from stdann.runs.errors import RunFolderError
from stdann.runs.folder import RunFolder
from stdann.runs.layout import POSITIONS, SWAP
from stdann.topography.cache import cached_model_positions
from stdann.topography.positions import load_run_positions
from stdann.topography.sheets import sheets_from_config
from stdann.runs.training import resume_config


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "positions",
        help="unit positions on the cortical sheets: init, optimize (swaps), plot",
        description=(
            "Unit positions of each block on its cortical sheet (docs/architecture.md). The paper's recipe: "
            "train with α = 0 (`stdann train --alpha 0 --out PRE`), `stdann positions optimize RUN --from PRE`, "
            "then `stdann train --out RUN --set train.init_from=PRE` (positions in RUN/positions are used "
            "and stay frozen). `stdann demo` runs the whole sequence."
        ),
    )
    sp = p.add_subparsers(dest="positions_command", metavar="ACTION", required=True)

    a = sp.add_parser("init", help="retinotopic initialisation and neighborhoods → RUN/positions/*.npz")
    a.add_argument("run_dir", metavar="RUN_DIR", help="folder to write positions/ into (created if missing)")
    a.add_argument("--force", action="store_true", help="replace positions stdann already wrote in RUN_DIR")
    add_config_args(a)
    a.set_defaults(func=run_init)

    o = sp.add_parser("optimize", help="swap pre-optimisation on a contrastive-only network's responses")
    o.add_argument("run_dir", metavar="RUN_DIR", help="folder whose positions/ receive the optimised positions")
    o.add_argument("--from", dest="source", required=True, metavar="PRETRAIN_RUN",
                   help="run folder of a network trained with α = 0 (its last checkpoint gives the responses; "
                        "its positions are the starting point unless RUN_DIR already has positions)")
    o.add_argument("--steps", type=count(0), default=None, help="swap steps per block [default: topography.swap_steps, or 200]")
    o.add_argument("--blocks", nargs="+", choices=BLOCK_NAMES, metavar="BLOCK", help="blocks to optimise [default: topography.blocks]")
    o.add_argument("--device", default=None, help="cpu, cuda, auto [default: train.device]")
    o.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_config_args(o, default_preset=None)
    o.set_defaults(func=run_optimize)

    q = sp.add_parser("plot", help="PNG of a block's unit positions coloured by channel")
    q.add_argument("run_dir", metavar="RUN_DIR", help="run folder with positions/")
    q.add_argument("--block", default="layer3.1", choices=BLOCK_NAMES, metavar="BLOCK", help="block name [default: layer3.1]")
    q.add_argument("--out", help="PNG path [default: RUN_DIR/figures/positions_BLOCK.png]")
    q.add_argument("--debug", action="store_true", help="full tracebacks")
    q.set_defaults(func=run_plot)


def run_init(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    check_memory(cfg, torch.device("cpu"))  # n_windows and the sheets' sizes, before allocating
    run = RunFolder(args.run_dir)
    with run.hold():
        if run.path(POSITIONS).is_dir() and any(run.path(POSITIONS).glob("*.npz")) and not args.force:
            raise RunFolderError(f"{run.root}/positions already holds positions; --force replaces them (swap-optimised "
                                 "ones included: a run trained on them then trains on other positions)")
        pos = cached_model_positions(cfg.model.width, cfg.data.frames, cfg.data.size, cfg.topography.blocks,
                                     sheets_from_config(cfg.topography), seed=cfg.topography.position_seed,
                                     n_windows=cfg.topography.n_windows)
        _refuse_other_geometry(run, pos)
        replaced = run.has(SWAP)
        run.ensure_run().save_positions(pos)
    if replaced:
        print(f"[stdann] replaced the swap-optimised positions of {run.root} (its swap.json describes the old ones)")
    for b, p in pos.items():
        print(f"{b}: {p.num_units} units on {p.sheet_side:.3g} mm sheet, {p.neighborhood_indices.shape[0]} neighborhoods "
              f"of {p.neighborhood_indices.shape[1]} units (width {p.neighborhood_width:.3g} mm)")
    return 0


def _refuse_other_geometry(run: RunFolder, new: dict) -> None:
    """Refuse new positions for a run that holds a trained checkpoint unless every block keeps its
    unit dims: positions for another width or clip size make the run impossible to resume."""
    if not run.has("checkpoints/last.pt"):
        return
    ckpt_cfg = resume_config(run)
    old = _geometry(ckpt_cfg)
    differ = [f"{b}: {old.get(b)} -> {tuple(p.dims)}" for b, p in new.items() if old.get(b) != tuple(p.dims)]
    differ += [f"{b}: missing" for b in ckpt_cfg.topography.blocks if b not in new]
    if differ:
        raise RunFolderError(
            f"{run.root} holds a trained run whose positions these would not fit ({'; '.join(differ)[:300]}): replacing "
            "them would make the run impossible to resume. Use the run's own configuration (leave out --preset / "
            "--set), or give a new folder"
        )


def _geometry(cfg) -> dict[str, tuple[int, int, int]]:
    """(C, H, W) of every topographic block of ``cfg``'s network."""
    shapes = block_output_shapes(cfg.model.width, cfg.data.frames, cfg.data.size)
    return {b: (shapes[b][0], shapes[b][2], shapes[b][3]) for b in cfg.topography.blocks}


def run_optimize(args: argparse.Namespace) -> int:
    src, run = Path(args.source), RunFolder(args.run_dir)
    model_cfg_dev = resolve_device(args.device or "auto", "--device")
    model, cfg = load_backbone(src, "last", device=model_cfg_dev)
    if args.preset or args.config or args.overrides:
        cfg = (load_config(args.preset, args.config, args.overrides) if (args.preset or args.config)
               else cfg.with_overrides(args.overrides).validate())
    blocks = args.blocks or list(cfg.topography.blocks)
    with run.hold():
        run.ensure_run().check_writable([SWAP] + [f"{POSITIONS}/{b}.npz" for b in blocks]
                                        + [run.positions_figure(b) for b in blocks])
        if run.interrupted_positions(blocks, SWAP):  # an optimisation killed while it wrote: start it again
            print(f"[stdann] {run.path(POSITIONS)} holds part of an interrupted optimisation; starting again from "
                  f"the positions of {src}")
            initial = load_run_positions(src, blocks)
        else:
            initial = run.load_positions(blocks) or load_run_positions(src, blocks)
        steps = args.steps if args.steps is not None else (cfg.topography.swap_steps or 200)
        summary = swap_stage(model, cfg, run, initial, steps, src, model_cfg_dev, not args.no_progress)
    for b, s in summary.items():
        print(f"{b}: mean SL_rel {s['sl_first']:.4f} → {s['sl_last']:.4f} ({s['accepted']} swaps accepted)")
    print(f"positions written to {run.path(POSITIONS)}; plots in {run.root / 'figures'}")
    return 0


def run_plot(args: argparse.Namespace) -> int:
    pos = load_run_positions(args.run_dir, [args.block])[args.block]
    if args.out:
        out = save_positions_plot(pos, args.out)
    else:
        run = RunFolder(args.run_dir)
        with run.hold():
            out = run.ensure_run().claim(run.positions_figure(args.block))
            save_positions_plot(pos, out)
    print(out)
    return 0

"""``analyze_run``: the in-silico electrophysiology of a run folder, trained beside untrained.

For the trained checkpoint (``which``, default ``last``) and the run's own step-0 weights
(``checkpoints/init.pt``, the untrained control), both networks get their BatchNorm statistics
re-estimated on the same generated clips (``ephys.bn_calibration_clips`` > 0), every chosen block
is recorded with the stimulus sets asked for, and the results are written into the run folder:
``metrics.json`` and ``tables/*.csv`` (``stdann.ephys.outputs``) and ``figures/*.png``
(``stdann.reports.figures.run``). The numbers are computed by ``stdann.ephys.analyze``.
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

from tqdm.auto import tqdm

from stdann.config import check_section
from stdann.devices import resolve_device
from stdann.ephys.analyze import MEASUREMENT_VERSION, AnalysisError, analyze_network, check_stimuli, measurement_sets
from stdann.ephys.metrics_record import block_entry, build_metrics
from stdann.ephys.macaque import load_reference
from stdann.ephys.outputs import write_metrics, write_tables
from stdann.ephys.recording import bn_mode
from stdann.ephys.stimuli import directions
from stdann.fileio import require_writable
from stdann.orchestration.measure import prepare_network
from stdann.orchestration.reference import judge_run
from stdann.reports.figures.run import write_run_figures
from stdann.runs.checkpoint import load_backbone
from stdann.runs.folder import RunFolder
from stdann.topography.positions import load_run_positions

METRICS_FILE = "metrics.json"


def measured_now(entry: dict) -> bool:
    """Whether a cached study entry (``condition.json``) was measured under today's rules: an entry
    that names an older ``measurement`` is measured again when its study is resumed. Entries written
    before they carried the number (up to measurement 3) are taken as they are."""
    version = entry.get("measurement")
    return version is None or version == MEASUREMENT_VERSION


def compare_block(trained: dict, untrained: dict) -> dict:
    """One block of a study condition: both slim summaries and the trained-vs-untrained verdicts."""
    return block_entry({"trained": trained, "untrained": untrained})


def analyze_run(run_dir, blocks=None, stimuli=("gratings",), which: str = "last", out_dir=None, progress: bool = True,
                device="auto", control: bool = True, figures: bool = True, ephys_overrides: dict | None = None) -> dict:
    """Analyse ``RUN/checkpoints/<which>.pt`` and (with ``control``) ``RUN/checkpoints/init.pt``;
    write metrics.json, tables/ and figures/ into ``out_dir`` (default the run folder) and
    return the metrics dict (as written). With ``ephys.untrained_seeds`` = N (the run's config or
    ``ephys_overrides``) the untrained networks of seeds 0 … N − 1 are measured too and every block
    gets its verdicts against their range (:mod:`stdann.orchestration.reference`).

    The output folder is held (not while another process writes there) and made a stdann folder;
    everything is written into a private staging folder first, then moved into place through its
    manifest (:meth:`RunFolder.publish`): a user's file of the same name is never replaced, and
    ``--overwrite`` later removes exactly what was written here."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise AnalysisError(f"run folder {run_dir} does not exist")
    stimuli = check_stimuli(stimuli)
    target = RunFolder(Path(out_dir) if out_dir is not None else run_dir)
    require_writable(target.root)  # before minutes of recording, not after
    with target.hold():
        # a user's file, or a link for tables/ or figures/, is refused now, not after minutes of recording
        target.ensure_run().check_writable([METRICS_FILE, "tables/ephys_summary.csv", "figures/unit_map.png"])
        with target.staging() as staging:
            metrics = _analyze(run_dir, staging, blocks, stimuli, which, progress, device, control, figures,
                               ephys_overrides)
            target.publish(staging)
    return metrics


def _judge_against_range(metrics: dict, cfg, ecfg, ephys_overrides, progress: bool) -> None:
    n = int(ecfg.untrained_seeds)
    bar = tqdm(total=n, desc="untrained reference", unit="network") if progress else None
    try:
        judge_run(metrics, cfg, n, ephys_overrides, progress=(lambda s: bar.update(1)) if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()


def _analyze(run_dir: Path, out: Path, blocks, stimuli, which, progress, device, control, figures,
             ephys_overrides) -> dict:
    dev = resolve_device(device or "auto")
    model, cfg = load_backbone(run_dir, which=which, device=dev)
    ecfg = check_section("ephys", dataclasses.replace(cfg.ephys, **(ephys_overrides or {})))
    blocks = list(blocks) if blocks else list(ecfg.blocks)
    positions = load_run_positions(run_dir, blocks)
    frames, size = cfg.data.frames, cfg.data.size
    notes = []
    nets = {"trained": model}
    if control:
        try:
            nets["untrained"], _ = load_backbone(run_dir, which="init", device=dev)
        except FileNotFoundError as e:
            msg = f"untrained control missing ({e}); selectivity below is NOT compared with the untrained network"
            warnings.warn(msg)
            notes.append(msg)
    for net in nets.values():
        prepare_network(net, cfg, ecfg, dev)
    sets = measurement_sets(model, blocks, stimuli, ecfg, frames, size)
    n_stim = sum(len(sset) for sset in sets.values()) * len(nets)
    bar = tqdm(total=n_stim, desc=f"analyze {run_dir.name}", unit="clip") if progress else None
    results = {}
    try:
        for label, net in nets.items():
            if bar is not None:
                bar.set_postfix_str(label)
            results[label] = analyze_network(net, positions, blocks, stimuli, ecfg, frames, size, dev, bar)
    finally:
        if bar is not None:
            bar.close()
    checkpoints = {"trained": which, **({"untrained": "init"} if "untrained" in nets else {})}
    metrics = build_metrics(results, ecfg, run_dir=run_dir, checkpoints=checkpoints, stimuli=stimuli, frames=frames,
                            size=size, notes=notes)
    if ecfg.untrained_seeds:
        _judge_against_range(metrics, cfg, ecfg, ephys_overrides, progress)
    out.mkdir(parents=True, exist_ok=True)
    write_tables(out / "tables", metrics, results)
    if figures:
        drawn = write_run_figures(out / "figures", results, directions(ecfg.n_directions), load_reference(),
                                  bn_mode(ecfg.bn_calibration_clips))
        metrics["figures"] = [Path(p).relative_to(out).as_posix() for p in drawn]  # relative to the output folder
    return write_metrics(out / METRICS_FILE, metrics)

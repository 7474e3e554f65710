"""``stdann bench ephys``: time to record and analyse every block on the full stimulus set.

An untrained r3d_18 at the preset's width (seeded with ``train.seed``; no checkpoint needed — the
cost does not depend on the weights) with fresh retinotopic positions of all eight blocks, the
preset's clip size and electrophysiology settings. Timed, in the order
:func:`stdann.ephys.analyze.analyze_network` runs them: recording each stimulus set (gratings,
rdk, plaids, and the blank screen; :func:`~stdann.ephys.analyze.measurement_sets`, the sets
``stdann analyze`` records) through :func:`~stdann.ephys.recording.record_set` (all blocks in one pass per
batch, BatchNorm in eval mode), then :func:`~stdann.ephys.analyze.analyze_block` of every block
(tuning metrics, population bias, maps, pinwheels, smoothness, exact CIs). Position initialisation
is timed apart: a run folder already holds its positions. Files and figures are not written (that
is :func:`stdann.orchestration.run_analysis.analyze_run`'s I/O, not the computation).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import platform
import resource
import time
from typing import Any

import torch

from stdann.config import ConfigError
from stdann.devices import resolve_device
from stdann.devices import select as select_device
from stdann.ephys.analyze import analyze_block, measurement_sets
from stdann.ephys.sampling import block_sampling
from stdann.ephys.recording import record_set
from stdann.ephys.stimuli import STIMULUS_SETS
from stdann.models.r3d import BLOCK_NAMES, build_backbone
from stdann.topography import sheets_from_config
from stdann.topography.cache import cached_model_positions

DEFAULT_STIMULI = ("gratings", "rdk", "plaids")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _stimuli(stimuli) -> tuple[str, ...]:
    """The stimulus sets to time, checked; gratings always (tuning curves need them)."""
    stimuli = tuple(stimuli)
    unknown = [s for s in stimuli if s not in STIMULUS_SETS]
    if unknown:
        raise ConfigError(f"unknown stimulus set(s) {unknown}; choose from {list(STIMULUS_SETS)}")
    return stimuli if "gratings" in stimuli else ("gratings",) + stimuli


def _peak_memory(dev: torch.device) -> tuple[float, str, str]:
    """(peak memory in MiB, how it was measured, the device's name)."""
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**20, "torch.cuda.max_memory_allocated", torch.cuda.get_device_name(dev)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, "process peak RSS (ru_maxrss)",
            platform.processor() or platform.machine())


def bench_ephys(cfg, device: str | torch.device = "auto", blocks=None, stimuli=DEFAULT_STIMULI,
                progress=None) -> dict[str, Any]:
    """Record + analyse ``blocks`` (default all eight) on ``stimuli``; returns one JSON-able dict."""
    dev = select_device(device if isinstance(device, torch.device) else resolve_device(str(device), "--device", ("cpu", "cuda")))
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    stimuli = _stimuli(stimuli)
    blocks = list(blocks) if blocks else list(BLOCK_NAMES)
    ecfg = cfg.ephys
    frames, size = cfg.data.frames, cfg.data.size
    load0 = os.getloadavg()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    torch.manual_seed(cfg.train.seed)
    model = build_backbone(cfg.model.arch, cfg.model.width).to(dev).eval()
    t = time.perf_counter()
    positions = cached_model_positions(
        width=cfg.model.width, frames=frames, size=size, blocks=blocks, sheets=sheets_from_config(cfg.topography),
        seed=cfg.topography.position_seed, n_windows=cfg.topography.n_windows, device=dev,
    )
    t_pos = time.perf_counter() - t

    record: dict[str, dict] = {}
    resp = {}
    t_all = time.perf_counter()
    sampling = block_sampling(model)
    for kind, sset in measurement_sets(model, blocks, stimuli, ecfg, frames, size).items():  # what analyze records
        t = time.perf_counter()
        resp[kind] = record_set(model, sset, blocks, ecfg.batch_size, dev)
        _sync(dev)
        dt = time.perf_counter() - t
        record[kind] = {"stimuli": len(sset), "seconds": dt, "clips_per_s": len(sset) / dt}
        if progress:
            progress(f"recorded {kind}: {len(sset)} clips in {dt:.2f} s")
    analyse: dict[str, dict] = {}
    for b in blocks:
        t = time.perf_counter()
        summary, _ = analyze_block(resp["gratings"][b], positions[b], ecfg, resp.get("plaids", {}).get(b),
                                   resp.get("rdk", {}).get(b), blank=resp["blank"][b][0], sampling=sampling[b],
                                   frames=frames)
        dt = time.perf_counter() - t
        analyse[b] = {"units": int(positions[b].num_units), "responsive": int(summary.get("n_responsive", 0)),
                      "seconds": dt}
        if progress:
            progress(f"analysed {b}: {positions[b].num_units} units in {dt:.2f} s")
    total = time.perf_counter() - t_all
    t_rec = sum(v["seconds"] for v in record.values())
    t_ana = sum(v["seconds"] for v in analyse.values())
    mem, mem_kind, dev_name = _peak_memory(dev)
    return {
        "benchmark": "ephys",
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "device": str(dev),
        "device_name": dev_name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average_before": list(load0),
        "load_average_after": list(os.getloadavg()),
        "config": {"width": cfg.model.width, "frames": frames, "size": size, "blocks": blocks,
                   "stimuli": list(stimuli), "batch_size": ecfg.batch_size,
                   "ephys": {k: v for k, v in dataclasses.asdict(ecfg).items() if k != "blocks"}},
        "positions_init_s": t_pos,
        "record": record,
        "analyse": analyse,
        "record_s": t_rec,
        "analyse_s": t_ana,
        "total_s": total,
        "peak_memory_mb": mem,
        "memory_kind": mem_kind,
        "network": "untrained r3d_18 (seed train.seed); timing does not depend on the weights",
    }


def format_ephys(r: dict[str, Any]) -> str:
    c = r["config"]
    lines = [
        f"stdann bench ephys — {r['date']} — {r['device']} ({r['device_name']}), torch {r['torch']}, "
        f"{r['threads']} threads, load {r['load_average_before'][0]:.2f} -> {r['load_average_after'][0]:.2f}",
        f"r3d_18 width {c['width']}, clips {c['frames']}x{c['size']}², {len(c['blocks'])} blocks, "
        f"stimulus batch {c['batch_size']} ({r['network']})",
        "",
    ]
    for kind, v in r["record"].items():
        lines.append(f"record {kind:<9} {v['stimuli']:>6} clips {v['seconds']:>9.2f} s  ({v['clips_per_s']:.1f} clips/s)")
    for b, v in r["analyse"].items():
        lines.append(f"analyse {b:<9} {v['units']:>8} units {v['seconds']:>7.2f} s  ({v['responsive']} responsive)")
    lines += [
        "",
        f"record {r['record_s']:.2f} s + analyse {r['analyse_s']:.2f} s = total {r['total_s']:.2f} s "
        f"(positions init, not counted: {r['positions_init_s']:.2f} s)",
        f"peak memory {r['peak_memory_mb']:.0f} MB ({r['memory_kind']})",
    ]
    return "\n".join(lines)

"""``stdann bench train``: the training step, timed phase by phase, beside a plain baseline step.

The benchmark is a timing wrapper around the one training step (:mod:`stdann.training.step`);
it has no step of its own. Three variants run in one process on the same network, MoCo, batch and
data (the same data source, the same step indices, so the same clips):

* ``optimized`` — the trainer's step, built by the same builder (:func:`~stdann.training.step.build_step`)
  with the trainer's settings (:func:`~stdann.training.setup.step_settings`): channels_last_3d,
  bf16 autocast where ``train.amp`` enables it (CUDA by default; CPU stays fp32), cuDNN autotuning
  and foreach SGD on CUDA, no per-step NaN check of the spatial loss on CUDA, ``torch.compile`` of
  both encoders with ``train.compile`` on CUDA, the fused EMA, the spatial loss's units kept
  inside the forward pass and evaluated as one batched operation;
* ``baseline`` — the same step with :func:`~stdann.training.step.plain_settings`: fp32, eager,
  contiguous NCDHW tensors, PyTorch's default cuDNN settings, non-foreach SGD, the key-encoder EMA
  as a Python loop over parameters, the spatial loss as a Python loop over single neighborhoods on
  the full time-averaged block responses. Same modules otherwise, so the ratio is the gain of our
  optimisations and nothing else;
* ``no_spatial`` — the optimised step with α = 0 (no block outputs kept, no spatial loss): the
  spatial loss's whole share of the step (forward, backward, kept activations) is
  ``1 − t(no_spatial) / t(optimized)``.

Phases (boundaries marked by the step's own ``mark`` hook: CUDA events on the GPU — no host
synchronisation inside a step — and ``time.perf_counter`` on the CPU, where every op is
synchronous): data (batch, transfer, normalise, memory format), query forward (both views, with the
kept units), key encoder (shuffle-BN groups, both views), InfoNCE (and the rest of MoCo's forward),
spatial loss (forward), backward (zero_grad, backward of everything, gradient clipping), optimizer,
EMA, queue. The first ``warmup`` steps are excluded; the variants run interleaved step by step
(same load on a shared machine, same clips); each phase is the median over the timed steps;
clips/s = clips through the query encoder per step (2 × batch: both views) ÷ the median step time
(the trainer's logged ``clips_per_s`` counts the same way).

Model FLOPs per clip: ``torch.utils.flop_counter.FlopCounterMode`` on a meta-device forward of the
query encoder (backbone + MLP head) for one clip (convolutions and matrix products, 2 FLOPs per
multiply-add); per trained clip = 3 × that (forward + backward ≈ 2 × forward) + 1 × the key
encoder's forward + the InfoNCE matrix product against the queue (3 × 2·dim·K). BatchNorm,
element-wise ops and the spatial loss are not counted (they are not "model FLOPs").
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import os
import platform
import resource
import statistics
import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from stdann.config import Config, ConfigError
from stdann.data.loader import build_pair_source
from stdann.devices import resolve_device
from stdann.devices import select as select_device
from stdann.models.moco import Encoder
from stdann.models.r3d import build_backbone
from stdann.topography import sheets_from_config
from stdann.topography.cache import cached_model_positions
from stdann.training.step import (
    TrainStep,
    build_step,
    configure_backends,
    plain_settings,
    uses_spatial_loss,
)
from stdann.training.setup import step_settings

VARIANTS = ("optimized", "baseline", "no_spatial")
PHASES = ("data", "query_forward", "key_encoder", "infonce", "spatial_loss", "backward", "optimizer", "ema", "queue")
_POINTS = ("data", "k_first", "k_last", "forward", "spatial", "backward", "optimizer", "ema", "queue")

# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s, from the vendors' data sheets.
PEAK_BF16_TFLOPS = {
    "H100 SXM": 989.4,
    "H100 PCIe": 756.5,
    "H100 NVL": 835.5,
    "H200": 989.4,
    "A100": 312.0,
}


def gpu_peak_tflops(device_name: str) -> tuple[float | None, str]:
    """(dense bf16 peak in TFLOP/s, table row) for a CUDA device name; (None, reason) if unknown."""
    n = device_name.upper()
    if "H200" in n:
        key = "H200"
    elif "H100" in n and "PCIE" in n:
        key = "H100 PCIe"
    elif "H100" in n and "NVL" in n:
        key = "H100 NVL"
    elif "H100" in n:  # "NVIDIA H100 80GB HBM3" is the SXM part
        key = "H100 SXM"
    elif "A100" in n:
        key = "A100"
    else:
        return None, f"unknown GPU {device_name!r}: pass --peak-tflops"
    return PEAK_BF16_TFLOPS[key], key


def model_flops_per_clip(cfg: Config) -> dict[str, Any]:
    """Forward FLOPs of the encoder for one clip (FlopCounterMode, meta device) and per trained clip."""
    with torch.device("meta"):
        enc = Encoder(build_backbone(cfg.model.arch, cfg.model.width), cfg.moco.hidden_dim, cfg.moco.dim)
        x = torch.empty(1, 3, cfg.data.frames, cfg.data.size, cfg.data.size)
    with FlopCounterMode(display=False) as fc:
        enc(x)
    fwd = float(fc.get_total_flops())
    infonce = 3 * 2.0 * cfg.moco.dim * cfg.moco.queue_size
    views = 2 if cfg.moco.symmetric else 1  # queries (and keys) per pair
    per_pair = views * (3 * fwd + fwd + infonce)
    return {
        "forward_per_clip": fwd,
        "train_per_pair": per_pair,
        "train_per_clip": per_pair / 2,
        "method": "FlopCounterMode on a meta-device forward of backbone+head for one clip (conv + matmul, "
        "2 FLOPs per multiply-add); per query = 3 x forward (fwd+bwd) + InfoNCE logits vs the queue "
        "(3 x 2*dim*K), per key = 1 forward; a pair has 2 queries and 2 keys (moco.symmetric) or 1 and 1; "
        "per clip = per pair / 2; BN, element-wise ops and the spatial loss excluded",
    }


# -- timing ----------------------------------------------------------------------------------------
class _Marks:
    """Named time points of one step (the step's ``mark`` hook): CUDA events on the GPU,
    perf_counter on the CPU. ``k_first`` keeps the first key-encoder call, every other name the last."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.points: dict[str, Any] = {}

    def _now(self):
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def __call__(self, name: str) -> None:
        if name == "k_first" and name in self.points:
            return
        self.points[name] = self._now()

    def durations(self) -> dict[str, float]:
        """Phase durations in seconds (call after the step; on CUDA after a synchronize)."""
        p = self.points
        if "k_first" not in p:  # no key encoder call (cannot happen with MoCo, kept for safety)
            p["k_first"] = p["k_last"] = p["data"]

        def dt(a: str, b: str) -> float:
            if self.cuda:
                return p[a].elapsed_time(p[b]) / 1000.0
            return p[b] - p[a]

        seq = ("start",) + _POINTS
        out = {}
        for phase, a, b in zip(PHASES, seq[:-1], seq[1:]):
            out[phase] = max(dt(a, b), 0.0)
        out["total"] = dt("start", "queue")
        return out


# -- set-up helpers ----------------------------------------------------------------------------------
def check_batch(cfg: Config) -> None:
    if cfg.train.objective != "moco":
        raise ConfigError(f"stdann bench train times MoCo's step (key encoder, InfoNCE, queue); train.objective = "
                          f"{cfg.train.objective} has none of them: benchmark with --set train.objective=moco")
    b = cfg.optim.batch_size
    if b < 2:
        raise ConfigError(f"optim.batch_size must be >= 2 for the benchmark, got {b}")
    keys = (2 if cfg.moco.symmetric else 1) * b  # keys enqueued per step
    if cfg.moco.queue_size % keys:
        raise ConfigError(
            f"moco.queue_size={cfg.moco.queue_size} must be a multiple of the {keys} keys enqueued per step "
            f"(optim.batch_size x {keys // b} view(s)); "
            f"add --set moco.queue_size={keys * max(1, round(cfg.moco.queue_size / keys))}"
        )


def make_positions(cfg: Config, device: torch.device | None = None) -> dict:
    """The trainer's fresh positions (retinotopic initialisation from the config)."""
    return cached_model_positions(
        width=cfg.model.width, frames=cfg.data.frames, size=cfg.data.size, blocks=list(cfg.topography.blocks),
        sheets=sheets_from_config(cfg.topography), seed=cfg.topography.position_seed,
        n_windows=cfg.topography.n_windows, device=device,
    )


def make_source(cfg: Config, device: torch.device):
    """The trainer's data source (one process: rank 0 of 1)."""
    return build_pair_source(cfg.data, cfg.optim.batch_size, device, seed=cfg.data.seed + cfg.train.seed)


def variant_step(cfg: Config, device: torch.device, variant: str, positions=None, source=None) -> TrainStep:
    """The step of one variant: the trainer's (``optimized``), the plain one (``baseline``) or the
    trainer's at α = 0 (``no_spatial``); ``positions`` and ``source`` may be shared between variants."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; variants are {VARIANTS}")
    if variant == "no_spatial":
        cfg = cfg.updated({"topography": {"alpha": 0.0, "spatial_only": False}})
    settings = plain_settings() if variant == "baseline" else step_settings(cfg, device)
    if uses_spatial_loss(cfg) and positions is None:
        positions = make_positions(cfg, device)
    return build_step(cfg, device, settings, source if source is not None else make_source(cfg, device),
                      positions=positions)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_variants(benches: dict[str, TrainStep], steps: int, warmup: int, first_step: int = 0,
                 progress=None) -> dict[str, dict[str, Any]]:
    """Time ``warmup`` + ``steps`` steps of each variant, interleaved step by step (variant A step
    s, variant B step s, …) so that every variant meets the same machine load; each variant sees
    the same step indices, hence the same clips. Medians over the timed steps."""
    names = list(benches)
    device = next(iter(benches.values())).device
    marks: dict[str, list[_Marks]] = {n: [] for n in names}
    losses: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    mem: dict[str, float] = {n: 0.0 for n in names}
    walls: dict[str, float] = {n: 0.0 for n in names}
    errors: dict[str, str] = {}
    for s in range(warmup + steps):
        timed = s >= warmup
        for n in names:
            if n in errors:
                continue
            bench = benches[n]
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            m = _Marks(device) if timed else None
            t0 = time.perf_counter()
            try:
                out = bench(first_step + s, m)
            except torch.cuda.OutOfMemoryError as e:  # e.g. the fp32 baseline at paper scale on 80 GB
                errors[n] = f"CUDA out of memory at batch {bench.source.batch_size} pairs: {str(e).splitlines()[0][:200]}"
                bench.optimizer.zero_grad(set_to_none=True)
                torch.cuda.empty_cache()
                if progress:
                    progress(f"{n}: {errors[n]}")
                continue
            _sync(device)  # between variants only: the phases inside a step are timed by events
            walls[n] += (time.perf_counter() - t0) if timed else 0.0
            if device.type == "cuda":
                mem[n] = max(mem[n], torch.cuda.max_memory_allocated(device) / 2**20)
            else:
                mem[n] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
            if timed:
                marks[n].append(m)
                losses[n].append(out.loss)
            if progress:
                what = f"step {s - warmup + 1}/{steps} {m.durations()['total']:.3f} s" if timed else f"warm-up {s + 1}/{warmup}"
                progress(f"{n}: {what}")
    results = {}
    for n in names:
        bench = benches[n]
        if n in errors:
            results[n] = {"variant": n, "error": errors[n]}
            continue
        durs = [m.durations() for m in marks[n]]
        phases = {k: statistics.median(d[k] for d in durs) for k in PHASES + ("total",)}
        pairs = bench.source.batch_size
        clips = 2 * pairs
        step_s = phases["total"]
        loss_vals = [float(v) for v in losses[n]]
        results[n] = {
            "variant": n,
            "steps": steps,
            "warmup": warmup,
            "settings": dataclasses.asdict(bench.settings),
            "amp_bf16": bench.settings.amp_bf16,
            "channels_last": bench.settings.channels_last,
            "step_s_median": step_s,
            "step_s_min": min(d["total"] for d in durs),
            "step_s_all": [d["total"] for d in durs],
            "phases_s_min": {k: min(d[k] for d in durs) for k in PHASES},
            "clips_per_s": clips / step_s,
            "pairs_per_s": pairs / step_s,
            "clips_per_s_wall": clips * steps / walls[n],
            "phases_s": {k: phases[k] for k in PHASES},
            "phase_share": {k: phases[k] / step_s for k in PHASES},
            "peak_memory_mb": mem[n],
            "memory_kind": ("torch.cuda.max_memory_allocated (max over this variant's steps)" if device.type == "cuda"
                            else "process peak RSS (ru_maxrss), cumulative over all variants"),
            "losses": [v if math.isfinite(v) else None for v in loss_vals],  # JSON has no NaN: null
            "finite": all(math.isfinite(v) for v in loss_vals),
        }
    return results


def bench_train(
    cfg: Config,
    device: str | torch.device = "auto",
    steps: int = 5,
    warmup: int = 2,
    baseline: bool = True,
    ablation: bool = True,
    peak_tflops: float | None = None,
    progress=None,
) -> dict[str, Any]:
    """Benchmark the training step (optimised, plain baseline, α = 0) and return one JSON-able dict
    (a non-finite loss is written as null). Each variant's cuDNN setting is its step's own: the
    trainer's (autotuning on CUDA) for ``optimized``, PyTorch's default for ``baseline``."""
    dev = select_device(device if isinstance(device, torch.device) else resolve_device(str(device), "--device", ("cpu", "cuda")))
    if steps < 1 or warmup < 0:
        raise ConfigError(f"--steps must be >= 1 and --warmup >= 0, got {steps} and {warmup}")
    check_batch(cfg)
    configure_backends(cfg)
    load0 = os.getloadavg()
    flops = model_flops_per_clip(cfg)
    use_spatial = uses_spatial_loss(cfg)
    positions = make_positions(cfg, dev) if use_spatial else None
    source = make_source(cfg, dev)
    order = ["optimized"] + (["baseline"] if baseline else []) + (["no_spatial"] if ablation and use_spatial else [])
    benches = {name: variant_step(cfg, dev, name, positions=positions, source=source) for name in order}
    trainer_settings = benches["optimized"].settings
    variants = run_variants(benches, steps, warmup, progress=progress)
    del benches

    dev_name, peak, peak_src = _device_peak(dev, peak_tflops)
    if "error" in variants["optimized"]:
        raise ConfigError(f"the optimised step failed: {variants['optimized']['error']}; lower --batch-size")
    for v in variants.values():
        if "error" in v:
            continue
        v["achieved_tflops"] = flops["train_per_pair"] * v["pairs_per_s"] / 1e12
        v["fraction_of_bf16_peak"] = v["achieved_tflops"] / peak if peak else None
    result: dict[str, Any] = {
        "benchmark": "train",
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "device": str(dev),
        "device_name": dev_name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average_before": list(load0),
        "load_average_after": list(os.getloadavg()),
        "config": {
            "width": cfg.model.width, "frames": cfg.data.frames, "size": cfg.data.size,
            "batch_size_pairs": cfg.optim.batch_size, "clips_per_step": 2 * cfg.optim.batch_size,
            "symmetric": cfg.moco.symmetric,
            "queue_size": cfg.moco.queue_size, "data_source": cfg.data.source,
            "spatial_blocks": list(cfg.topography.blocks) if use_spatial else [],
            "neighborhoods_per_step": cfg.topography.neighborhoods_per_step, "alpha": cfg.topography.alpha,
            "amp": cfg.train.amp, "channels_last": cfg.train.channels_last, "compile": cfg.train.compile,
            "cudnn_benchmark": trainer_settings.cudnn_benchmark,
            "spatial_loss_nan_check_every_step": trainer_settings.check_finite,
            "tf32_conv": bool(torch.backends.cudnn.allow_tf32) if dev.type == "cuda" else None,
            "neighborhood_size": {b: int(p.neighborhood_indices.shape[1]) for b, p in (positions or {}).items()},
        },
        "flops": flops,
        "peak_bf16_tflops": peak,
        "peak_source": peak_src,
        "variants": variants,
        "clips_counted": "clips through the query encoder per step = 2 x batch (both views of every pair)",
    }
    result.update(_ratios(variants))
    return result


def _device_peak(dev: torch.device, peak_tflops: float | None) -> tuple[str, float | None, str]:
    """(the device's name, its dense bf16 peak in TFLOP/s or None, where that figure comes from)."""
    if dev.type == "cuda":
        name = torch.cuda.get_device_name(dev)
        return (name, *gpu_peak_tflops(name)) if peak_tflops is None else (name, float(peak_tflops), "--peak-tflops")
    name = platform.processor() or platform.machine()
    return (name, float(peak_tflops), "--peak-tflops") if peak_tflops else (name, None, "n/a on CPU")


def _ratios(variants: dict) -> dict[str, Any]:
    """The optimised step against the baseline, and the spatial loss's share of it."""
    opt, out = variants["optimized"], {}
    if "baseline" in variants and "error" not in variants["baseline"]:
        out["speedup_vs_baseline"] = opt["clips_per_s"] / variants["baseline"]["clips_per_s"]
        # the fastest step of each variant: the least disturbed by other jobs on a shared machine
        out["speedup_vs_baseline_min"] = variants["baseline"]["step_s_min"] / opt["step_s_min"]
    share = {"spatial_loss_forward_phase": opt["phase_share"]["spatial_loss"]}
    if "no_spatial" in variants and "error" not in variants["no_spatial"]:
        share["whole_step_ablation"] = 1.0 - variants["no_spatial"]["step_s_median"] / opt["step_s_median"]
        share["whole_step_ablation_min"] = 1.0 - variants["no_spatial"]["step_s_min"] / opt["step_s_min"]
    out["spatial_loss_share"] = share
    return out


def format_train(r: dict[str, Any]) -> str:
    """Human-readable table of a :func:`bench_train` result."""
    c = r["config"]
    lines = [
        f"stdann bench train — {r['date']} — {r['device']} ({r['device_name']}), torch {r['torch']}, "
        f"{r['threads']} threads, load {r['load_average_before'][0]:.2f} -> {r['load_average_after'][0]:.2f}",
        f"network r3d_18 width {c['width']}, clips {c['frames']}x{c['size']}², batch {c['batch_size_pairs']} pairs "
        f"= {c['clips_per_step']} clips/step, {'symmetrised' if c.get('symmetric', True) else 'asymmetric (MoCo v2)'} loss, queue {c['queue_size']}, data {c['data_source']}, spatial loss on "
        f"{len(c['spatial_blocks'])} blocks x {c['neighborhoods_per_step']} neighborhoods (alpha {c['alpha']})",
        f"model FLOPs: {r['flops']['forward_per_clip'] / 1e9:.3f} GFLOP forward/clip, "
        f"{r['flops']['train_per_clip'] / 1e9:.3f} GFLOP per trained clip",
        "",
    ]
    names = [n for n, v in r["variants"].items() if "error" not in v]
    for n, v in r["variants"].items():
        if "error" in v:
            lines.append(f"{n}: not measured — {v['error']}")
    head = f"{'phase (median s)':<18}" + "".join(f"{n:>14}" for n in names)
    lines.append(head)
    for ph in PHASES:
        lines.append(f"{ph:<18}" + "".join(f"{r['variants'][n]['phases_s'][ph]:>14.4f}" for n in names))
    lines.append(f"{'step':<18}" + "".join(f"{r['variants'][n]['step_s_median']:>14.4f}" for n in names))
    lines.append(f"{'step (fastest)':<18}" + "".join(f"{r['variants'][n]['step_s_min']:>14.4f}" for n in names))
    lines.append(f"{'clips/s':<18}" + "".join(f"{r['variants'][n]['clips_per_s']:>14.1f}" for n in names))
    lines.append(f"{'pairs/s':<18}" + "".join(f"{r['variants'][n]['pairs_per_s']:>14.1f}" for n in names))
    lines.append(f"{'peak memory MB':<18}" + "".join(f"{r['variants'][n]['peak_memory_mb']:>14.0f}" for n in names))
    lines.append(f"{'TFLOP/s':<18}" + "".join(f"{r['variants'][n]['achieved_tflops']:>14.3f}" for n in names))
    lines.append("")
    if "speedup_vs_baseline" in r:
        lines.append(f"optimised / plain baseline: {r['speedup_vs_baseline']:.2f}x clips/s (median steps), "
                     f"{r['speedup_vs_baseline_min']:.2f}x (fastest steps)")
    opt = r["variants"]["optimized"]
    if r["peak_bf16_tflops"]:
        lines.append(f"fraction of bf16 peak ({r['peak_bf16_tflops']} TFLOP/s, {r['peak_source']}): "
                     f"{100 * opt['fraction_of_bf16_peak']:.1f}%")
    else:
        lines.append(f"fraction of bf16 peak: n/a ({r['peak_source']})")
    s = r["spatial_loss_share"]
    msg = f"spatial loss share of the optimised step: forward phase {100 * s['spatial_loss_forward_phase']:.1f}%"
    if "whole_step_ablation" in s:
        msg += (f", whole cost (1 - t(alpha=0)/t) {100 * s['whole_step_ablation']:.1f}% (median steps), "
                f"{100 * s['whole_step_ablation_min']:.1f}% (fastest steps)")
    lines.append(msg)
    lines.append(f"memory: {opt['memory_kind']}")
    return "\n".join(lines)

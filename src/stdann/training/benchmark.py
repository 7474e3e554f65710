"""``stdann bench train``: the training step, timed phase by phase, beside a plain baseline step.

Three variants run in one process on the same network, MoCo, batch and data (the same data
source, the same step indices, so the same clips):

* ``optimized`` — the trainer's own step (:func:`stdann.training.trainer.train`), statement for
  statement: channels_last_3d when ``train.channels_last``, bf16 autocast when
  :func:`~stdann.training.trainer.amp_enabled` (CUDA by default; CPU stays fp32 unless
  ``train.amp=bf16``), ``torch.compile`` of the query backbone when ``train.compile`` on CUDA,
  foreach SGD on CUDA (the trainer's choice; the CPU optimiser is PyTorch's default),
  :meth:`MoCo.momentum_update` (one fused ``_foreach`` EMA), the batched
  :class:`~stdann.topography.SpatialLoss` (all sampled neighborhoods of a block in one call);
* ``baseline`` — what a plain implementation does: fp32, eager, contiguous NCDHW tensors,
  non-foreach SGD, the key-encoder EMA as a Python loop over parameters, the spatial loss as a
  Python loop over single neighborhoods (:func:`stdann.topography.spatial_loss.spatial_loss` on
  the full time-averaged block responses). Same modules otherwise, so the ratio is the gain of
  our optimisations and nothing else;
* ``no_spatial`` — the optimised step with α = 0 (no block outputs kept, no spatial loss): the
  spatial loss's whole share of the step (forward, backward, kept activations) is
  ``1 − t(no_spatial) / t(optimized)``.

Phases (boundaries marked with CUDA events on the GPU — no host synchronisation inside a step —
and ``time.perf_counter`` on the CPU, where every op is synchronous): data (batch, transfer,
normalise, memory format), query forward (both views), key encoder (shuffle-BN groups, both
views), InfoNCE (and gathering the block outputs), spatial loss (forward), backward (zero_grad,
backward of everything, gradient clipping), optimizer, EMA, queue. The first ``warmup`` steps
are excluded; the variants run interleaved step by step (same load on a shared machine, same
clips); each phase is the median over the timed steps; clips/s = clips through the
query encoder per step (2 × batch: both views) ÷ the median step time.

Model FLOPs per clip: ``torch.utils.flop_counter.FlopCounterMode`` on a meta-device forward of the
query encoder (backbone + MLP head) for one clip (convolutions and matrix products, 2 FLOPs per
multiply-add); per trained clip = 3 × that (forward + backward ≈ 2 × forward) + 1 × the key
encoder's forward + the InfoNCE matrix product against the queue (3 × 2·dim·K). BatchNorm,
element-wise ops and the spatial loss are not counted (they are not "model FLOPs").
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import platform
import resource
import statistics
import time
from typing import Any

import numpy as np
import torch

from stdann.config import Config, ConfigError

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
    from torch.utils.flop_counter import FlopCounterMode

    from stdann.models.moco import Encoder
    from stdann.models.r3d import r3d_18

    with torch.device("meta"):
        enc = Encoder(r3d_18(None, cfg.model.width), cfg.moco.hidden_dim, cfg.moco.dim)
        x = torch.empty(1, 3, cfg.data.frames, cfg.data.size, cfg.data.size)
    with FlopCounterMode(display=False) as fc:
        enc(x)
    fwd = float(fc.get_total_flops())
    infonce = 3 * 2.0 * cfg.moco.dim * cfg.moco.queue_size
    return {
        "forward_per_clip": fwd,
        "train_per_clip": 3 * fwd + fwd + infonce,
        "method": "FlopCounterMode on a meta-device forward of backbone+head for one clip (conv + matmul, "
        "2 FLOPs per multiply-add); per trained clip = 3 x forward (fwd+bwd) + 1 x key-encoder forward + "
        "InfoNCE logits vs the queue (3 x 2*dim*K); BN, element-wise ops and the spatial loss excluded",
    }


# -- timing ----------------------------------------------------------------------------------------
class _Marks:
    """Named time points of one step: CUDA events on the GPU, perf_counter on the CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.points: dict[str, Any] = {}

    def _now(self):
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def mark(self, name: str, first_only: bool = False) -> None:
        if first_only and name in self.points:
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


def _ema_loop(model) -> None:
    """Key-encoder EMA as a Python loop over parameters (the plain way)."""
    m = model.momentum
    with torch.no_grad():
        for pk, pq in zip(model.encoder_k.parameters(), model.encoder_q.parameters()):
            pk.mul_(m).add_(pq.detach(), alpha=1.0 - m)


def spatial_loss_loop(spatial_fn, block_outputs: dict[str, torch.Tensor], generator) -> dict[str, torch.Tensor]:
    """The spatial loss computed the plain way: per block, the full time-averaged responses, then
    one :func:`~stdann.topography.spatial_loss.spatial_loss` call per sampled neighborhood.
    Draws the same neighborhoods as ``spatial_fn`` with the same generator, hence the same value."""
    from stdann.topography.spatial_loss import block_responses, spatial_loss

    out = {}
    for block, pos in spatial_fn.positions.items():
        y = block_outputs[block]
        if isinstance(y, (tuple, list)):  # MoCo's per-view outputs: the plain way concatenates them
            y = torch.cat(list(y), dim=0)
        nb = spatial_fn.sample_neighborhoods(block, y.device, generator)
        coords = torch.as_tensor(pos.coordinates, dtype=torch.float32, device=y.device)
        resp = block_responses(y.float())  # (S, C*H*W)
        vals = [spatial_loss(resp[:, nb[k]], coords[nb[k]], spatial_fn.kind) for k in range(nb.shape[0])]
        out[block] = torch.stack(vals).mean()
    return out


class BenchStep:
    """One variant of the training step, set up as the trainer sets it up.

    ``variant``: ``optimized`` (the trainer's step), ``baseline`` (plain) or ``no_spatial``
    (optimised, α = 0). ``positions`` and ``source`` may be shared between variants.
    """

    def __init__(self, cfg: Config, device: torch.device, variant: str = "optimized", positions=None, source=None):
        from stdann.models.moco import build_moco
        from stdann.training.trainer import amp_enabled

        if variant not in ("optimized", "baseline", "no_spatial"):
            raise ValueError(f"unknown variant {variant!r}")
        if variant == "no_spatial":
            cfg = cfg.updated({"topography": {"alpha": 0.0, "spatial_only": False}})
        self.cfg, self.device, self.variant = cfg, device, variant
        plain = variant == "baseline"
        use_cuda = device.type == "cuda"
        check_batch(cfg)
        self.batch = cfg.optim.batch_size
        torch.manual_seed(cfg.train.seed)
        np.random.seed(cfg.train.seed % (2**32))
        model = build_moco(cfg).to(device)
        self.total_steps = cfg.optim.total_steps()
        self.warmup_steps = int(round(cfg.optim.warmup_epochs * cfg.optim.epoch_size / cfg.optim.batch_size))
        self.base_lr = cfg.optim.scaled_lr()
        self.channels_last = bool(cfg.train.channels_last) and not plain
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last_3d)
        self.model = model
        self.params = [p for p in model.encoder_q.parameters() if p.requires_grad]
        kw: dict[str, Any] = dict(lr=self.base_lr, momentum=cfg.optim.momentum, weight_decay=cfg.optim.weight_decay)
        if plain:
            kw["foreach"] = False
        elif use_cuda:
            kw["foreach"] = True
        self.optimizer = torch.optim.SGD(self.params, **kw)
        self.use_spatial = cfg.topography.alpha > 0 or cfg.topography.spatial_only
        self.spatial_fn = None
        if self.use_spatial:
            from stdann.topography import SpatialLoss

            if positions is None:
                positions = make_positions(cfg)
            self.spatial_fn = SpatialLoss(
                positions, kind=cfg.topography.loss, neighborhoods_per_step=cfg.topography.neighborhoods_per_step
            )
        self.spatial_blocks = tuple(cfg.topography.blocks) if self.use_spatial else ()
        if source is None:
            source = make_source(cfg, device)
        self.source = source
        if cfg.train.compile and use_cuda and not plain:
            model.encoder_q.backbone.forward_blocks = torch.compile(model.encoder_q.backbone.forward_blocks)
        amp = amp_enabled(cfg, device) and not plain
        self.amp = amp
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16) if amp else contextlib.nullcontext()
        self._marks: _Marks | None = None
        model.encoder_k.register_forward_pre_hook(self._key_pre)
        model.encoder_k.register_forward_hook(self._key_post)
        model.train()

    def _key_pre(self, module, args):  # noqa: ARG002
        if self._marks is not None:
            self._marks.mark("k_first", first_only=True)

    def _key_post(self, module, args, output):  # noqa: ARG002
        if self._marks is not None:
            self._marks.mark("k_last")

    def step(self, step: int, marks: _Marks | None = None) -> dict[str, torch.Tensor]:
        """One training step (the trainer's, or the plain one); returns the (device) loss tensors."""
        from stdann.models.inputs import normalize
        from stdann.training.schedule import lr_at
        from stdann.training.trainer import step_generator

        cfg, device, model = self.cfg, self.device, self.model
        plain = self.variant == "baseline"
        self._marks = marks
        mk = marks.mark if marks is not None else (lambda *a, **k: None)
        mk("start")
        lr = lr_at(step, self.total_steps, self.base_lr, self.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        gen = step_generator(cfg.train.seed, step)
        x1, x2 = self.source.batch(step)
        x1, x2 = normalize(x1.to(device, non_blocking=True)), normalize(x2.to(device, non_blocking=True))
        if self.channels_last:
            x1 = x1.contiguous(memory_format=torch.channels_last_3d)
            x2 = x2.contiguous(memory_format=torch.channels_last_3d)
        elif plain:
            x1, x2 = x1.contiguous(), x2.contiguous()
        mk("data")
        with self.autocast:
            outp = model(x1, x2, blocks=self.spatial_blocks, generator=gen)
        mk("forward")
        task = outp["loss"]
        if self.spatial_fn is None:
            sl = {}
        elif plain:
            sl = spatial_loss_loop(self.spatial_fn, outp["blocks"], gen)
        else:
            sl = self.spatial_fn(outp["blocks"], gen)
        sl_total = torch.stack(list(sl.values())).sum() if sl else torch.zeros((), device=device)
        loss = (0.0 if cfg.topography.spatial_only else task) + cfg.topography.alpha * sl_total
        mk("spatial")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.optim.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(self.params, cfg.optim.clip_grad)
        mk("backward")
        self.optimizer.step()
        mk("optimizer")
        if plain:
            _ema_loop(model)
        else:
            model.momentum_update()
        mk("ema")
        model.enqueue(outp["keys"])
        mk("queue")
        self._marks = None
        return {"loss": loss.detach(), "task": task.detach(), "sl_total": sl_total.detach(),
                **{f"sl_{k}": v.detach() for k, v in sl.items()}}


# -- set-up helpers ----------------------------------------------------------------------------------
def check_batch(cfg: Config) -> None:
    b = cfg.optim.batch_size
    if b < 2:
        raise ConfigError(f"optim.batch_size must be >= 2 for the benchmark, got {b}")
    if cfg.moco.queue_size % (2 * b):
        raise ConfigError(
            f"moco.queue_size={cfg.moco.queue_size} must be a multiple of 2 x optim.batch_size = {2 * b}; "
            f"add --set moco.queue_size={2 * b * max(1, round(cfg.moco.queue_size / (2 * b)))}"
        )


def make_positions(cfg: Config) -> dict:
    """The trainer's fresh positions (retinotopic initialisation from the config)."""
    from stdann.topography import init_model_positions, sheets_from_config

    return init_model_positions(
        width=cfg.model.width, frames=cfg.data.frames, size=cfg.data.size, blocks=list(cfg.topography.blocks),
        sheets=sheets_from_config(cfg.topography), seed=cfg.topography.position_seed,
        n_windows=cfg.topography.n_windows,
    )


def make_source(cfg: Config, device: torch.device):
    """The trainer's data source (one process: rank 0 of 1)."""
    from stdann.data.loader import build_pair_source

    return build_pair_source(cfg.data, cfg.optim.batch_size, device, seed=cfg.data.seed + cfg.train.seed)


def resolve_bench_device(spec: str) -> torch.device:
    if spec in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError as e:
        raise ConfigError(f"--device {spec!r} is not a device name (auto, cpu, cuda, cuda:1): {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {spec} asked for, but CUDA is not available here (torch {torch.__version__}); "
                          "use --device cpu or auto")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {spec!r}: only cpu and cuda are supported")
    return dev


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_variants(benches: dict[str, BenchStep], steps: int, warmup: int, first_step: int = 0,
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
                out = bench.step(first_step + s, m)
            except torch.cuda.OutOfMemoryError as e:  # e.g. the fp32 baseline at paper scale on 80 GB
                errors[n] = f"CUDA out of memory at batch {bench.batch} pairs: {str(e).splitlines()[0][:200]}"
                bench.optimizer.zero_grad(set_to_none=True)
                bench._marks = None
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
                losses[n].append(out["loss"])
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
        clips = 2 * bench.batch
        step_s = phases["total"]
        loss_vals = [float(v) for v in losses[n]]
        results[n] = {
            "variant": n,
            "steps": steps,
            "warmup": warmup,
            "amp_bf16": bench.amp,
            "channels_last": bench.channels_last,
            "step_s_median": step_s,
            "step_s_min": min(d["total"] for d in durs),
            "step_s_all": [d["total"] for d in durs],
            "phases_s_min": {k: min(d[k] for d in durs) for k in PHASES},
            "clips_per_s": clips / step_s,
            "pairs_per_s": bench.batch / step_s,
            "clips_per_s_wall": clips * steps / walls[n],
            "phases_s": {k: phases[k] for k in PHASES},
            "phase_share": {k: phases[k] / step_s for k in PHASES},
            "peak_memory_mb": mem[n],
            "memory_kind": ("torch.cuda.max_memory_allocated (max over this variant's steps)" if device.type == "cuda"
                            else "process peak RSS (ru_maxrss), cumulative over all variants"),
            "losses": loss_vals,
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
    cudnn_benchmark: bool = False,
) -> dict[str, Any]:
    """Benchmark the training step (optimised, plain baseline, α = 0) and return one JSON-able dict.

    ``cudnn_benchmark`` sets ``torch.backends.cudnn.benchmark`` (global: every variant) — the
    trainer leaves it at PyTorch's default (off)."""
    dev = device if isinstance(device, torch.device) else resolve_bench_device(str(device))
    if steps < 1 or warmup < 0:
        raise ConfigError(f"--steps must be >= 1 and --warmup >= 0, got {steps} and {warmup}")
    check_batch(cfg)
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
    load0 = os.getloadavg()
    flops = model_flops_per_clip(cfg)
    use_spatial = cfg.topography.alpha > 0 or cfg.topography.spatial_only
    positions = make_positions(cfg) if use_spatial else None
    source = make_source(cfg, dev)
    order = ["optimized"] + (["baseline"] if baseline else []) + (["no_spatial"] if ablation and use_spatial else [])
    benches = {name: BenchStep(cfg, dev, name, positions=positions, source=source) for name in order}
    variants = run_variants(benches, steps, warmup, progress=progress)
    del benches

    if dev.type == "cuda":
        dev_name = torch.cuda.get_device_name(dev)
        if peak_tflops is None:
            peak, peak_src = gpu_peak_tflops(dev_name)
        else:
            peak, peak_src = float(peak_tflops), "--peak-tflops"
    else:
        dev_name = platform.processor() or platform.machine()
        peak, peak_src = (float(peak_tflops), "--peak-tflops") if peak_tflops else (None, "n/a on CPU")
    if "error" in variants["optimized"]:
        raise ConfigError(f"the optimised step failed: {variants['optimized']['error']}; lower --batch-size")
    for v in variants.values():
        if "error" in v:
            continue
        v["achieved_tflops"] = flops["train_per_clip"] * v["clips_per_s"] / 1e12
        v["fraction_of_bf16_peak"] = v["achieved_tflops"] / peak if peak else None
    opt = variants["optimized"]
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
            "queue_size": cfg.moco.queue_size, "data_source": cfg.data.source,
            "spatial_blocks": list(cfg.topography.blocks) if use_spatial else [],
            "neighborhoods_per_step": cfg.topography.neighborhoods_per_step, "alpha": cfg.topography.alpha,
            "amp": cfg.train.amp, "channels_last": cfg.train.channels_last, "compile": cfg.train.compile,
            "cudnn_benchmark": bool(cudnn_benchmark) and dev.type == "cuda",
            "tf32_conv": bool(torch.backends.cudnn.allow_tf32) if dev.type == "cuda" else None,
            "neighborhood_size": {b: int(p.neighborhood_indices.shape[1]) for b, p in (positions or {}).items()},
        },
        "flops": flops,
        "peak_bf16_tflops": peak,
        "peak_source": peak_src,
        "variants": variants,
        "clips_counted": "clips through the query encoder per step = 2 x batch (both views of every pair)",
    }
    if "baseline" in variants and "error" not in variants["baseline"]:
        result["speedup_vs_baseline"] = opt["clips_per_s"] / variants["baseline"]["clips_per_s"]
        # the fastest step of each variant: the least disturbed by other jobs on a shared machine
        result["speedup_vs_baseline_min"] = variants["baseline"]["step_s_min"] / opt["step_s_min"]
    share = {"spatial_loss_forward_phase": opt["phase_share"]["spatial_loss"]}
    if "no_spatial" in variants and "error" not in variants["no_spatial"]:
        share["whole_step_ablation"] = 1.0 - variants["no_spatial"]["step_s_median"] / opt["step_s_median"]
        share["whole_step_ablation_min"] = 1.0 - variants["no_spatial"]["step_s_min"] / opt["step_s_min"]
    result["spatial_loss_share"] = share
    return result


def format_train(r: dict[str, Any]) -> str:
    """Human-readable table of a :func:`bench_train` result."""
    c = r["config"]
    lines = [
        f"stdann bench train — {r['date']} — {r['device']} ({r['device_name']}), torch {r['torch']}, "
        f"{r['threads']} threads, load {r['load_average_before'][0]:.2f} -> {r['load_average_after'][0]:.2f}",
        f"network r3d_18 width {c['width']}, clips {c['frames']}x{c['size']}², batch {c['batch_size_pairs']} pairs "
        f"= {c['clips_per_step']} clips/step, queue {c['queue_size']}, data {c['data_source']}, spatial loss on "
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

"""The one validation of a configuration: every value's range, the rules between values, and a
memory estimate that refuses what cannot fit before anything is allocated.

:meth:`stdann.config.Config.validate` (run by ``load_config``, ``Config.from_dict`` and the
trainer) turns the problems found here into one :class:`~stdann.config.ConfigError` whose message
names the key, the bad value, the valid range and the fix. This module only finds problems
(strings); it raises nothing and touches no file, device or allocator.

Each rule is ``key → Check`` (a test and the text of what the key must be); rules that involve
several keys are functions at the end. Add a key to a section's dataclass and its rule here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from stdann.data.augment import PAIR_FLIP_MODES
from stdann.data.folder import DECODERS
from stdann.data.textures import available_images
from stdann.ephys.verdicts import MAX_UNTRAINED_SEEDS, untrained_seeds_problem
from stdann.errors import shown
from stdann.models.motion_classifier import OBJECTIVES, SUPERVISED
from stdann.models.r3d import BLOCK_NAMES, block_output_shapes
from stdann.topography.positions import PositionsError
from stdann.topography.sheets import sheets_from_config
from stdann.topography.spatial_loss import KINDS as SPATIAL_LOSS_KINDS

ARCHITECTURES = ("r3d_18",)
DATA_SOURCES = ("generated", "folder", "cache")
PAIR_MODES = ("scene", "motion")
OPTIMIZERS = ("sgd", "adamw")
AMP_MODES = ("auto", "bf16", "off", "true", "false")  # true / false: what YAML makes of on / off
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


@dataclass(frozen=True)
class Check:
    """``test(value)`` is True when the value is valid; ``text`` says what a valid value is."""

    test: Callable[[Any], bool]
    text: str


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


INT_LIMIT = 2 ** 31 - 1  # no count or size of a configuration is larger (a 400-digit integer is a typo)


def integer(lo: int | None = None, hi: int | None = None) -> Check:
    """An integer in [lo, hi]; without ``hi``, at most :data:`INT_LIMIT`."""
    top = INT_LIMIT if hi is None else hi

    def test(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and (lo is None or v >= lo) and v <= top

    if lo is not None and hi is not None:
        return Check(test, f"an integer from {lo} to {hi}")
    return Check(test, (f"an integer >= {lo}" if lo is not None else "an integer") + " and below 2^31")


def number(lo: float | None = None, hi: float | None = None, *, above: bool = False, below: bool = False) -> Check:
    """A finite number in [lo, hi] (``above``: > lo; ``below``: < hi)."""

    def test(v: Any) -> bool:
        if not _finite(v):
            return False
        if lo is not None and (v <= lo if above else v < lo):
            return False
        return hi is None or (v < hi if below else v <= hi)

    lo_t = "" if lo is None else f"{'>' if above else '>='} {lo:g}"
    hi_t = "" if hi is None else f"{'<' if below else '<='} {hi:g}"
    return Check(test, "a finite number" + (f" {lo_t}" if lo_t else "") + (" and" if lo_t and hi_t else "")
                 + (f" {hi_t}" if hi_t else ""))


def probability() -> Check:
    return number(0.0, 1.0)


def choice(*options: str) -> Check:
    return Check(lambda v: v in options, "one of " + ", ".join(options))


def names(valid: Iterable[str], *, empty: bool = False, what: str = "names") -> Check:
    valid = tuple(valid)

    def test(v: Any) -> bool:
        return (isinstance(v, (list, tuple)) and (empty or len(v) > 0) and len(set(v)) == len(v)
                and all(x in valid for x in v))

    shown = ", ".join(valid)
    return Check(test, f"a {'' if empty else 'non-empty '}list of distinct {what} from: {shown}")


def numbers(lo: float, hi: float, *, above: bool = False, below: bool = False, most: int | None = None) -> Check:
    one = number(lo, hi, above=above, below=below)
    return Check(lambda v: (isinstance(v, (list, tuple)) and 0 < len(v) <= (most or INT_LIMIT)
                            and all(one.test(x) for x in v)),
                 f"a non-empty list of {f'at most {most} ' if most else ''}numbers, "
                 f"each {one.text.removeprefix('a finite number ')}")


def text() -> Check:
    return Check(lambda v: isinstance(v, str), "a string")


def strings() -> Check:
    return Check(lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(isinstance(x, str) and x for x in v),
                 "a non-empty list of non-empty strings")


def device() -> Check:
    return Check(lambda v: isinstance(v, str) and bool(_DEVICE.match(v)), "auto, cpu, cuda, cuda:N or mps")


def flag() -> Check:
    return Check(lambda v: isinstance(v, bool), "true or false")


RULES: dict[str, Check] = {
    "model.arch": choice(*ARCHITECTURES),
    "model.width": integer(1),
    # data
    "data.source": choice(*DATA_SOURCES),
    "data.root": text(),
    "data.frames": integer(2),  # one frame has no motion
    "data.size": integer(16),  # the stem and three stride-2 stages leave layer4 1x1 at 16 pixels
    "data.seed": integer(0),
    "data.frame_stride": integer(1),
    "data.fps": number(0, above=True),
    "data.pair_min_gap": number(0),
    "data.pair_max_gap": number(0),
    "data.pair_mode": choice(*PAIR_MODES),
    "data.crop_max_distance": number(0),
    "data.same_scene_repeats": integer(1),
    "data.augment": flag(),
    "data.crop_scale_min": number(0, 1, above=True),
    "data.crop_scale_max": number(0, 1, above=True),
    "data.crop_ratio_min": number(0, above=True),
    "data.crop_ratio_max": number(0, above=True),
    "data.color_jitter": number(0, 1),
    "data.hue_jitter": number(0, 0.5),
    "data.color_jitter_prob": probability(),
    "data.grayscale_prob": probability(),
    "data.flip_prob": probability(),
    "data.pair_flip": choice(*PAIR_FLIP_MODES),
    "data.num_scenes": integer(1),
    "data.images": names(available_images(), empty=True, what="scikit-image sample names"),
    "data.noise_texture_fraction": probability(),
    "data.texture_size": integer(0),
    "data.texture_scale_min": number(0, above=True),
    "data.texture_scale_max": number(0, above=True),
    "data.speed_min": number(0, above=True),
    "data.speed_max": number(0, above=True),
    "data.velocity_drift": number(0),
    "data.expansion_prob": probability(),
    "data.expansion_max": number(0),
    "data.rotation_prob": probability(),
    "data.rotation_max": number(0),
    "data.objects_max": integer(0),
    "data.object_prob": probability(),
    "data.object_size_min": number(0, 1, above=True),
    "data.object_size_max": number(0, 1, above=True),
    "data.object_edge": number(0, above=True),
    "data.brightness_drift": number(0),
    "data.sensor_noise": number(0, 1),
    "data.extensions": strings(),
    "data.split": text(),
    "data.resize": integer(0),
    "data.min_side": integer(1),
    "data.max_side": integer(1),
    "data.workers": integer(0),
    "data.worker_type": choice("thread", "process"),
    "data.decoder": choice(*DECODERS),
    "data.prefetch": integer(0),
    "data.cache_windows": integer(1),
    # moco
    "moco.dim": integer(1),
    "moco.hidden_dim": integer(1),
    "moco.queue_size": integer(1),
    "moco.momentum": number(0, 1),
    "moco.temperature": number(0, above=True),
    "moco.shuffle_bn": flag(),
    "moco.bn_groups": integer(1),
    "moco.reverse_negatives": flag(),
    "moco.symmetric": flag(),
    "moco.motion_negatives": integer(0, 64),  # each one is a key-encoder pass per clip of both views
    "moco.head_bn": flag(),
    # optim
    "optim.batch_size": integer(2),
    "optim.optimizer": choice(*OPTIMIZERS),
    "optim.lr": number(0, above=True),
    "optim.momentum": number(0, 1, below=True),
    "optim.weight_decay": number(0),
    "optim.epochs": number(0, above=True),
    "optim.epoch_size": integer(1),
    "optim.warmup_epochs": number(0),
    "optim.final_lr_fraction": number(0, 1),
    "optim.clip_grad": number(0),
    "optim.max_steps": integer(0),
    # topography
    "topography.alpha": number(0),
    "topography.blocks": names(BLOCK_NAMES, what="block names"),
    "topography.neighborhoods_per_step": integer(1),
    "topography.loss": choice(*SPATIAL_LOSS_KINDS),
    "topography.spatial_only": flag(),
    "topography.sheets": Check(lambda v: isinstance(v, dict), "a mapping block -> {sheet_side, neighborhood_width}"),
    "topography.n_windows": integer(1),
    "topography.position_seed": integer(0),
    "topography.swap_steps": integer(0),
    "topography.swap_windows_per_step": integer(1),
    "topography.swap_pairs_per_window": integer(1),
    "topography.pretrain_fraction": number(0, 1, above=True, below=True),
    # train
    "train.seed": integer(0),
    "train.device": device(),
    "train.amp": choice(*AMP_MODES),
    "train.channels_last": flag(),
    "train.compile": flag(),
    "train.threads": integer(0),
    "train.log_every": integer(1),
    "train.ckpt_every": integer(1),
    "train.ckpt_minutes": number(0),
    "train.max_minutes": number(0),
    "train.collective_minutes": number(0),
    "train.deterministic": flag(),
    "train.tensorboard": flag(),
    "train.snapshot_every": integer(0),
    "train.eval_every": integer(0),
    "train.eval_pairs": integer(0),
    "train.init_from": text(),
    "train.objective": choice(*OBJECTIVES),
    "train.direction_bins": integer(2, 360),
    "train.speed_bins": integer(2, 64),
    # ephys
    "ephys.blocks": names(BLOCK_NAMES, what="block names"),
    "ephys.n_directions": Check(lambda v: integer(4, 360).test(v) and v % 2 == 0, "an even integer from 4 to 360"),
    "ephys.spatial_frequencies": numbers(0, 0.5, above=True, most=16),
    "ephys.temporal_frequencies": numbers(0, 0.5, above=True, below=True, most=16),
    "ephys.n_phases": integer(1, 64),
    "ephys.untrained_seeds": Check(lambda v: untrained_seeds_problem(v) is None,
                                   f"0 (no reference) or an integer from 2 to {MAX_UNTRAINED_SEEDS}"),
    "ephys.contrast": number(0, 1),
    "ephys.aperture": number(0),
    "ephys.rdk_coherences": numbers(0, 1, most=16),
    "ephys.rdk_speed": number(0),
    "ephys.rdk_density": number(0, 1, above=True),
    "ephys.rdk_dot_size": number(0, above=True),
    "ephys.rdk_lifetime": integer(0),
    "ephys.rdk_repeats": integer(1, 256),
    "ephys.plaid_angle": number(0, 180, above=True),
    "ephys.responsive_threshold": number(0, 1),
    "ephys.driven_ratio": number(0, 100),
    "ephys.dsi_criterion": number(0, 1),
    "ephys.map_window_mm": Check(lambda v: _finite(v) and (v == 0 or 1e-3 <= v <= 1e3),
                                 "0 (chosen from the measured column spacing) or a width from 0.001 to 1000 mm"),
    "ephys.map_pixels_per_window": number(0, 64, above=True),
    "ephys.smoothness_units": integer(2, 100_000),
    "ephys.n_bootstrap": integer(0),
    "ephys.batch_size": integer(1, 4096),
    "ephys.bn_calibration_clips": integer(0, 100_000),
    "ephys.seed": integer(0),
}


def _show(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        items = [_show(x) for x in v[:8]] + (["..."] if len(v) > 8 else [])
        return "[" + ", ".join(items) + "]"
    return shown(v)


def bad_value(key: str, value: Any, expected: str, fix: str = "") -> str:
    """The one wording of a problem: the key, the value, what it must be, and the fix."""
    return (f"{key} = {_show(value)} is not valid: it must be {expected}; "
            + (fix or f"set it with --set {key}=VALUE or in the --config YAML file"))


def value_problems(section_obj: Any, section: str) -> list[str]:
    """The values of one section (``section_obj``, e.g. ``cfg.optim``) that break their rule."""
    out = []
    prefix = section + "."
    defaults = type(section_obj)()
    for key, check in RULES.items():
        if key.startswith(prefix):
            name = key[len(prefix):]
            value = getattr(section_obj, name)
            if not check.test(value):
                fix = f"set it with --set {key}=VALUE or in the --config YAML file (default: {_show(getattr(defaults, name))})"
                out.append(bad_value(key, value, check.text, fix))
    return out


# -- rules between keys ------------------------------------------------------------------------------------------
def _multiples(n: int, of: int) -> str:
    """The multiples of ``of`` next to ``n`` (for a fix)."""
    lo = (n // of) * of
    return " or ".join(str(x) for x in (lo, lo + of) if x > 0)


def _chunk_sizes(n: int, parts: int) -> list[int]:
    """The sizes of ``torch.chunk`` of n items into ``parts`` (as MoCo splits its key batch)."""
    size = -(-n // max(1, min(parts, n)))
    return [min(size, n - i) for i in range(0, n, size)]


def cross_problems(cfg: Any, world_size: int = 1) -> list[str]:
    """Rules that involve several keys (run once every single value is valid)."""
    out = []
    d, m, o, t = cfg.data, cfg.moco, cfg.optim, cfg.topography
    if d.source != "generated" and not d.root.strip():
        out.append(bad_value("data.root", d.root, f"a video folder (data.source={d.source}) or cache directory",
                             "set it with --set data.root=PATH, or use data.source=generated (the built-in video)"))
    if cfg.train.objective in SUPERVISED and d.source != "generated":
        out.append(bad_value("train.objective", cfg.train.objective, f"moco for data.source={d.source} (the supervised "
                             "objectives learn the built-in generator's ground-truth camera motion; video files have no "
                             "such labels)", "set --set train.objective=moco, or --set data.source=generated"))
    if m.motion_negatives > 0 and d.source != "generated":
        out.append(bad_value("moco.motion_negatives", m.motion_negatives, f"0 for data.source={d.source} (motion "
                             "negatives are the built-in generator's scene re-rendered with other camera motions)",
                             "set --set moco.motion_negatives=0, or --set data.source=generated"))
    if d.pair_mode == "motion" and d.source != "generated":
        out.append(bad_value("data.pair_mode", d.pair_mode, "scene for a video folder or cache (motion pairs need the "
                             "built-in generator)", "set --set data.pair_mode=scene"))
    for lo, hi in (("pair_min_gap", "pair_max_gap"), ("crop_scale_min", "crop_scale_max"),
                   ("crop_ratio_min", "crop_ratio_max"), ("texture_scale_min", "texture_scale_max"),
                   ("speed_min", "speed_max"), ("object_size_min", "object_size_max"), ("min_side", "max_side")):
        if getattr(d, hi) < getattr(d, lo):
            out.append(bad_value(f"data.{hi}", getattr(d, hi), f">= data.{lo} = {_show(getattr(d, lo))}",
                                 f"raise data.{hi} or lower data.{lo}"))
    if o.batch_size % world_size:
        out.append(bad_value("optim.batch_size", o.batch_size, f"divisible by the {world_size} processes (it is the "
                             "global batch)", f"use a multiple of {world_size}, e.g. {_multiples(o.batch_size, world_size)}"))
        return out
    keys_per_step = 2 * o.batch_size
    if m.queue_size % keys_per_step:
        out.append(bad_value("moco.queue_size", m.queue_size, f"a multiple of 2 x optim.batch_size = {keys_per_step} "
                             "(both views' keys are enqueued each step)",
                             f"set --set moco.queue_size={_multiples(m.queue_size, keys_per_step)}"))
    out += _batchnorm_problems(cfg, o.batch_size // world_size, world_size)
    if t.spatial_only and t.alpha == 0:
        out.append(bad_value("topography.alpha", t.alpha, "> 0 when topography.spatial_only=true (the spatial loss "
                             "is then the only loss)", "set --set topography.alpha=0.25, or spatial_only=false"))
    try:
        sheets = sheets_from_config(t)
    except PositionsError as e:
        out.append(f"{e}; fix topography.sheets (--set 'topography.sheets={{layer3.1: {{sheet_side: 7.07}}}}')")
        return out
    return out + analysis_problems(cfg.ephys, {b: s.sheet_side for b, s in sheets.items()})


MAX_ANALYSIS_CLIPS = 200_000  # stimulus clips of one network's analysis (the demo's default is ~5,400)
MAX_MAP_PIXELS = 4096  # pixels along a side of an analysed map


def analysis_clips(e: Any) -> dict[str, int]:
    """Stimulus clips per network of an analysis, by stimulus set (gratings count every phase; dot
    fields are shown at up to 8 time offsets, one per frame of the deepest block's temporal stride)."""
    n_sf, n_tf = len(e.spatial_frequencies), len(e.temporal_frequencies)
    gratings = e.n_directions * n_sf * n_tf * e.n_phases
    rdk = e.n_directions * len(e.rdk_coherences) * e.rdk_repeats * 8
    return {"gratings": gratings, "plaids": gratings, "rdk": rdk}


def analysis_problems(e: Any, sheet_sides: dict[str, float]) -> list[str]:
    """Sizes of the electrophysiology that would run for hours or fill the memory: refused before
    any recording (the number of stimulus clips, and the map grid when its kernel is set by hand)."""
    out = []
    clips = analysis_clips(e)
    if max(clips.values()) > MAX_ANALYSIS_CLIPS:
        kind = max(clips, key=clips.get)
        out.append(f"the analysis would record {clips[kind]:,} {kind} clips per network (more than {MAX_ANALYSIS_CLIPS:,}: "
                   "hours to days); lower ephys.n_directions, ephys.n_phases, ephys.rdk_repeats or the lists of "
                   "spatial / temporal frequencies and coherences")
    if e.map_window_mm > 0:
        side = max((sheet_sides.get(b, 0.0) for b in e.blocks), default=0.0)
        pixels = side / (e.map_window_mm / e.map_pixels_per_window)
        if pixels > MAX_MAP_PIXELS:
            out.append(bad_value("ephys.map_window_mm", e.map_window_mm,
                                 f"large enough that a {side:g} mm sheet is at most {MAX_MAP_PIXELS} map pixels across "
                                 f"(it gives {pixels:,.0f} at ephys.map_pixels_per_window = {e.map_pixels_per_window:g})",
                                 "raise it, or set 0 to choose the kernel from the measured column spacing"))
    return out


def _batchnorm_problems(cfg: Any, local_batch: int, world_size: int) -> list[str]:
    """BatchNorm in training mode needs more than one value per channel: in the smallest key group
    (MoCo splits the key batch into ``bn_groups`` on one device) at layer4's output size, and two
    samples per group when the projection head has BatchNorm."""
    m = cfg.moco
    c, t_, h, w = block_output_shapes(cfg.model.width, cfg.data.frames, cfg.data.size)["layer4.1"]
    per_sample = t_ * h * w
    group = min(_chunk_sizes(local_batch, m.bn_groups if (m.shuffle_bn and world_size == 1) else 1))
    need = 2 if m.head_bn else -(-2 // per_sample)
    if group < need:
        return [bad_value("optim.batch_size", cfg.optim.batch_size,
                          f"large enough that each of the moco.bn_groups = {m.bn_groups} key groups holds {need} clips "
                          f"or more (BatchNorm needs two values per channel; layer4 is {t_}x{h}x{w} here)",
                          f"raise optim.batch_size to {need * m.bn_groups * world_size} or more, or lower moco.bn_groups")]
    return []

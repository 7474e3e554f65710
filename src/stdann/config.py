"""One configuration system: typed dataclasses, YAML files, presets and ``--set`` overrides.

A :class:`Config` has one section per pipeline stage. Every field has a default (the paper-scale
value); the presets in ``stdann/presets/*.yaml`` (``paper``, ``demo``, ``smoke``) override a few.
Overrides on the command line use dotted keys: ``--set optim.batch_size=64 --set topography.alpha=0``.
Unknown keys are refused with the closest valid names; every value is checked by
:meth:`Config.validate` (the rules live in :mod:`stdann.config_checks`), which ``load_config``,
``Config.from_dict`` and the trainer run, so a bad value is one clear error before any work.

YAML is read with one loader (:func:`stdann.fileio.parse_yaml`: safe, YAML 1.2 numbers, no aliases).
Error messages show values through :func:`stdann.errors.shown`, which cuts them to a line.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from stdann import config_checks
from stdann.data.config import DataConfig
from stdann.ephys.config import EphysConfig
from stdann.errors import ConfigError, shown
from stdann.fileio import atomic_write_text, parse_yaml, read_yaml, yaml_problem
from stdann.topography.config import TopographyConfig


@dataclass
class ModelConfig:
    arch: str = "r3d_18"  # the one backbone stdann builds (validated; kept so config files name it)
    width: int = 64  # base channel count (64 = torchvision's r3d_18)


@dataclass
class MocoConfig:
    dim: int = 128  # embedding size
    hidden_dim: int = 512  # MLP head hidden size
    queue_size: int = 65536  # K negatives; must be a multiple of the global batch
    momentum: float = 0.999  # key encoder EMA
    temperature: float = 0.2  # 0.2 for MoCo v2 (0.07 for v1)
    shuffle_bn: bool = True  # shuffle keys across ranks (DDP) / split into groups (one device)
    bn_groups: int = 2  # on one device, key batch BN statistics are computed in this many groups
    # add each positive's time-reversed clip as a hard negative: the same frames in the opposite
    # order, so only the arrow of motion tells it from the positive
    reverse_negatives: bool = False
    # per query, this many clips of the positive's scene, crop and time, rendered with other camera
    # directions (evenly spread round the circle), as hard negatives: appearance is then no cue and
    # only the motion tells them from the positive (generated video only; 0 = off, the paper's MoCo)
    motion_negatives: int = 0
    # BatchNorm in the projection head (Linear-BN-ReLU-Linear-BN, as in SimCLR / MoCo v3). MoCo v2's
    # head has none; at CPU scale the head's BN keeps the embeddings from collapsing onto a few
    # directions, which is what stalls short runs (docs/results.md, "Making the task learn").
    head_bn: bool = False
    # symmetrised loss: each view is a query once and a key once (two query and two key passes per
    # pair, the spatial loss sees both views' clips). False = MoCo v2 as He/Chen et al. wrote it: view 1
    # queries, view 2 is its key, half the compute per pair (the paper preset; docs/benchmarks.md)
    symmetric: bool = True


@dataclass
class OptimConfig:
    batch_size: int = 256  # global batch (clip pairs per step)
    # sgd (MoCo's) or adamw: SGD (lr 0.01-0.2 at batch 32) left the supervised positive control at
    # chance for 150-400 demo steps, AdamW (lr 1e-3 at batch 32) learned it (docs/emergence.md §8)
    optimizer: str = "sgd"
    lr: float = 0.03  # at batch 256; scaled linearly with batch_size (both optimisers)
    momentum: float = 0.9  # SGD's momentum (AdamW keeps its betas 0.9, 0.999)
    weight_decay: float = 1e-4
    epochs: float = 200.0
    epoch_size: int = 9537  # clips per epoch (UCF101 split-1 train size) for generated data
    warmup_epochs: float = 5.0
    # the cosine schedule decays from lr to lr x final_lr_fraction (0 = to zero, MoCo v2;
    # 1 = a constant learning rate after warm-up)
    final_lr_fraction: float = 0.0
    clip_grad: float = 0.0  # max gradient norm; 0 = off
    max_steps: int = 0  # stop after this many steps (0 = from epochs)

    def total_steps(self) -> int:
        if self.max_steps > 0:
            return int(self.max_steps)
        return max(1, int(round(self.epochs * self.epoch_size / self.batch_size)))

    def scaled_lr(self) -> float:
        return self.lr * self.batch_size / 256.0


@dataclass
class TrainConfig:
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # bf16 autocast: "auto" = on CUDA only. On CPU, oneDNN's bf16 Conv3d weight gradients came out
    # NaN at random (first calls, layer2 convs, torch 2.13.0 CPU wheel), so CPU runs stay fp32
    # unless amp="bf16" is asked for explicitly. "off" = fp32 everywhere.
    amp: str = "auto"
    channels_last: bool = True  # channels_last_3d memory format (CUDA and CPU)
    compile: bool = False  # torch.compile the encoders
    threads: int = 0  # torch CPU threads (0 = torch's default)
    log_every: int = 10  # steps between log lines (CSV/TensorBoard)
    ckpt_every: int = 200  # steps between checkpoints (and at the end)
    # also a checkpoint when this many minutes have passed since the last one (0 = off), checked at the
    # steps the ranks synchronise (every step on the CPU, the log steps on CUDA): a preempted job loses
    # minutes, not up to ckpt_every steps
    ckpt_minutes: float = 0.0
    max_minutes: float = 0.0  # wall-clock budget; stops cleanly and checkpoints (0 = none)
    # under torchrun: how long a collective (all-reduce, gather) waits for a missing rank before the job
    # stops with an error that names the usual causes (0 = torch's default: 10 min NCCL, 30 min gloo)
    collective_minutes: float = 0.0
    deterministic: bool = False  # torch deterministic algorithms (tests)
    tensorboard: bool = True  # also write TensorBoard events when tensorboard is installed
    snapshot_every: int = 0  # also keep backbone snapshots checkpoints/step_NNNNNN.pt (0 = none)
    eval_every: int = 0  # steps between held-out instance-discrimination checks (0 = only at the end)
    eval_pairs: int = 256  # held-out positive pairs of that check (training.evaluation)
    init_from: str = ""  # a run folder whose last weights start this run (fresh optimiser and schedule)
    # the task loss: moco (the paper's contrastive objective) or a positive control that is told the
    # answer, supervised_direction (classify the generated camera motion's direction into
    # direction_bins bins; chance ln(bins)) or supervised_direction_speed (+ speed_bins log-spaced
    # speed bins over data.speed_min-speed_max): a network that must encode motion, to show what a
    # direction-selective network and its maps look like under the same measurement (generated video only)
    objective: str = "moco"
    direction_bins: int = 16  # bins of the supervised objective, centred on 0°, 360°/bins, ... (16 = 22.5° each)
    speed_bins: int = 4  # log-spaced speed bins of supervised_direction_speed (speeds outside the range: edge bins)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    moco: MocoConfig = field(default_factory=MocoConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    topography: TopographyConfig = field(default_factory=TopographyConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    ephys: EphysConfig = field(default_factory=EphysConfig)

    def get(self, dotted: str) -> Any:
        """The value of one key, e.g. ``cfg.get("optim.lr")``."""
        obj: Any = self
        for part in dotted.split("."):
            obj = getattr(obj, part)
        return obj

    # -- conversions ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, self.to_yaml())

    @classmethod
    def from_dict(cls, d: dict[str, Any], validate: bool = True) -> "Config":
        """The config a (nested) dict describes over the defaults; validated unless ``validate=False``
        (for a dict that overrides will complete)."""
        cfg = _merge(cls(), d, prefix="")
        return cfg.validate() if validate else cfg

    def validate(self, world_size: int = 1) -> "Config":
        """Refuse (:class:`ConfigError`) any value out of its range and any inconsistent combination,
        with the key, the value, the valid range and the fix; returns the config itself.
        ``world_size`` = the number of training processes (the batch is split between them)."""
        problems = []
        for f in dataclasses.fields(self):
            problems += config_checks.value_problems(getattr(self, f.name), f.name)
        if not problems:
            problems = config_checks.cross_problems(self, world_size)
        if problems:
            more = f" ({len(problems) - 1} more: {'; '.join(problems[1:])})" if len(problems) > 1 else ""
            raise ConfigError(problems[0] + more)
        return self

    def updated(self, d: dict[str, Any]) -> "Config":
        """A copy with the (nested) dict ``d`` applied on top."""
        return _merge(dataclasses.replace(self), d, prefix="")

    def with_overrides(self, overrides: list[str] | tuple[str, ...]) -> "Config":
        """Apply ``key.sub=value`` strings (values parsed as YAML)."""
        cfg = self
        for item in overrides:
            if "=" not in item:
                raise ConfigError(f"override {shown(item)} must look like section.key=value, e.g. optim.batch_size=64")
            key, raw = item.split("=", 1)
            try:
                value = parse_yaml(raw) if raw.strip() != "" else ""
            except yaml.YAMLError as e:
                raise ConfigError(f"--set {shown(item)}: the value is not valid YAML{yaml_problem(e)}; quote it or fix "
                                  "it, e.g. --set 'topography.blocks=[layer3.1, layer4.1]'") from None
            nested: dict[str, Any] = {}
            cur = nested
            parts = key.strip().split(".")
            for p in parts[:-1]:
                cur = cur.setdefault(p, {})
            cur[parts[-1]] = value
            cfg = cfg.updated(nested)
        return cfg


def section_overrides(section: str, items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``key=value`` overrides of one section (``key`` with or without the ``section.`` prefix, e.g.
    ``stdann analyze --set n_directions=8``), parsed and checked exactly as ``--set`` is by
    :meth:`Config.with_overrides`; returns ``{key: value}`` to apply to that section."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {shown(item)} must look like key=value, e.g. {section}.{flat_keys(getattr(Config(), section))[0]}=VALUE")
        key, raw = item.split("=", 1)
        key = key.strip().removeprefix(section + ".")
        cfg = Config().with_overrides([f"{section}.{key}={raw}"])
        out[key] = getattr(getattr(cfg, section), key)
    return out


PRESETS = ("paper", "demo", "study", "smoke")


def _preset_text(name: str) -> str:
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown preset {name!r}; presets are {list(PRESETS)}.{hint}")
    return resources.files("stdann.presets").joinpath(f"{name}.yaml").read_text()


def load_config(
    preset: str | None = "demo", path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Config:
    """Defaults ← preset ← YAML file ← ``--set`` overrides, validated (:meth:`Config.validate`)."""
    cfg = Config()
    if preset:
        cfg = cfg.updated(parse_yaml(_preset_text(preset)) or {})
    if path is not None:
        data = read_yaml(path) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections (e.g. optim: {{batch_size: 64}}), "
                              f"got {type(data).__name__}")
        try:
            cfg = cfg.updated(data)
        except ConfigError as e:
            raise ConfigError(f"config file {path}: {e}") from None
    return cfg.with_overrides(list(overrides)).validate()


def check_section(name: str, section: Any) -> Any:
    """Validate one section object (e.g. an ``EphysConfig`` with a command's own overrides) by the
    rules of :mod:`stdann.config_checks`; returns it."""
    problems = config_checks.value_problems(section, name)
    if not problems and name == "ephys":  # the analysis's own sizes (no sheets here: the map grid is checked by validate)
        problems = config_checks.analysis_problems(section, {})
    if problems:
        more = f" ({len(problems) - 1} more: {'; '.join(problems[1:])})" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more)
    return section


def flat_keys(obj: Any = None, prefix: str = "") -> list[str]:
    """All dotted keys of a config (``optim.batch_size`` …)."""
    obj = Config() if obj is None else obj
    keys = []
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            keys += flat_keys(v, prefix + f.name + ".")
        else:
            keys.append(prefix + f.name)
    return keys


def _unknown_key(key: str, valid: list[str], prefix: str) -> ConfigError:
    full = prefix + key
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(prefix + c) for c in close)}?" if close else ""
    where = f"section {prefix[:-1]!r}" if prefix else "the configuration"
    return ConfigError(f"unknown config key {full!r}.{hint} Valid keys of {where}: {', '.join(valid)}")


def _merge(obj: Any, d: dict[str, Any], prefix: str) -> Any:
    if not isinstance(d, dict):
        raise ConfigError(f"{prefix[:-1] or 'config'} must be a mapping, got {shown(d)}")
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    changes = {}
    for key, value in d.items():
        if key not in names:
            raise _unknown_key(str(key), names, prefix)
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            changes[key] = _merge(dataclasses.replace(current), value, prefix + key + ".")
        else:
            changes[key] = _coerce(value, hints[key], prefix + key)
    return dataclasses.replace(obj, **changes)


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{key}: {shown(value)} does not fit {tp}")
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            value = [value]
        inner = args[0] if args else Any
        out = [_coerce(v, inner, key) for v in value]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {shown(value)}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{key} must be true or false, got {shown(value)}")
    if tp is int:
        value = _number(value)
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ConfigError(f"{key} must be an integer, got {shown(value)}")
        return int(value)
    if tp is float:
        value = _number(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {shown(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{key} must be a string, got {shown(value)}")
        return str(value)
    return value


def _number(value: Any) -> Any:
    """A string that spells a number (``"1e-4"``, ``"64"``), as that number; anything else unchanged."""
    if isinstance(value, str):
        for parse in (int, float):
            try:
                return parse(value.strip().replace("_", ""))
            except ValueError:
                continue
    return value

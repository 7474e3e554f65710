"""One validation of the configuration (no traceback, every bad value a clear error): every key has a
rule, nonsense values are refused up front with the key, the value, the valid range and the fix, YAML is
read safely with YAML 1.2 numbers, and a configuration that cannot fit in memory is refused before
anything is allocated."""

import subprocess
import sys

import pytest
import torch

from stdann.cli.main import main
from stdann.config import Config, ConfigError, flat_keys, load_config
from stdann.config_checks import RULES
from stdann.resources import estimate_memory, memory_problem
from stdann.models.moco import build_moco
from stdann.resources import check_memory
from stdann.training.trainer import train

# Values that once ended in a traceback or were silently accepted, and more of the same kind.
BAD = [
    "optim.batch_size=0", "train.log_every=0", "train.ckpt_every=0", "moco.queue_size=0", "data.frames=0",
    "optim.epochs=.inf", "optim.epochs=.nan", "data.size=1", "moco.dim=0", "data.pair_max_gap=-1",
    "data.crop_scale_min=2", "train.threads=-1", "data.images=[no_such_image]", "model.arch=resnet50",
    "optim.max_steps=-5", "topography.alpha=-1", "train.amp=fp8", "train.device=gpu", "topography.loss=l2",
    "data.pair_mode=sideways", "data.pair_flip=sometimes", "data.source=youtube", "topography.blocks=[layer9.9]",
    "ephys.n_directions=7", "moco.temperature=0", "optim.lr=-0.1", "data.fps=0", "data.speed_min=0",
    "data.object_edge=0", "moco.hidden_dim=0", "topography.neighborhoods_per_step=0", "topography.swap_steps=-1",
]


@pytest.mark.parametrize("override", BAD)
def test_nonsense_values_are_refused_naming_key_value_range_and_fix(override):
    key, value = override.split("=", 1)
    with pytest.raises(ConfigError) as e:
        load_config("smoke", overrides=[override])
    msg = str(e.value)
    assert msg.startswith(f"{key} = "), msg
    assert "must be" in msg and f"--set {key}=" in msg, msg


def test_every_key_has_a_rule_and_every_rule_a_key():
    assert set(RULES) == set(flat_keys(Config()))


def test_presets_and_defaults_are_valid():
    Config().validate()
    for preset in ("paper", "demo", "smoke"):
        load_config(preset).validate()


@pytest.mark.parametrize("overrides, words", [
    (["moco.queue_size=100"], ["moco.queue_size = 100", "multiple of 2 x optim.batch_size = 16", "96 or 112"]),
    (["data.pair_min_gap=2", "data.pair_max_gap=1"], ["data.pair_max_gap = 1.0", ">= data.pair_min_gap"]),
    (["data.source=folder"], ["data.root = ''", "--set data.root=PATH"]),
    (["data.source=folder", "data.root=/videos", "data.pair_mode=motion"], ["data.pair_mode = 'motion'"]),
    (["topography.spatial_only=true", "topography.alpha=0"], ["topography.alpha = 0.0", "spatial_only"]),
    (["topography.sheets={layer3.1: {sheet_side: -1}}"], ["topography.sheets", "sheet_side"]),
    (["moco.head_bn=true", "moco.bn_groups=8", "moco.queue_size=64", "optim.batch_size=8"],
     ["optim.batch_size = 8", "bn_groups"]),
])
def test_rules_between_keys(overrides, words):
    with pytest.raises(ConfigError) as e:
        load_config("smoke", overrides=overrides)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_batch_must_divide_between_the_processes():
    cfg = load_config("smoke", overrides=["optim.batch_size=6", "moco.queue_size=60"])
    cfg.validate(world_size=2)
    with pytest.raises(ConfigError, match="divisible by the 4 processes"):
        cfg.validate(world_size=4)


def test_yaml_1_1_exponents_are_numbers(tmp_path):
    cfg = load_config("smoke", overrides=["optim.lr=1e-4", "optim.epochs=1e10", "optim.weight_decay=5E-5"])
    assert (cfg.optim.lr, cfg.optim.epochs, cfg.optim.weight_decay) == (1e-4, 1e10, 5e-5)
    f = tmp_path / "c.yaml"
    f.write_text("optim:\n  lr: 1e-4\n  epoch_size: 1e3\ntopography: {alpha: 2.5e-1}\n")
    cfg = load_config("smoke", f)
    assert (cfg.optim.lr, cfg.optim.epoch_size, cfg.topography.alpha) == (1e-4, 1000, 0.25)
    assert isinstance(cfg.optim.epoch_size, int)


def test_a_string_that_spells_a_number_is_that_number():
    cfg = load_config("smoke", overrides=["optim.lr='0.5'", "optim.batch_size='16'", "moco.queue_size=64"])
    assert cfg.optim.lr == 0.5 and cfg.optim.batch_size == 16
    with pytest.raises(ConfigError, match="integer"):
        load_config("smoke", overrides=["optim.batch_size=abc"])


@pytest.mark.parametrize("content, words", [
    (b"optim: {batch_size: 8\nmodel: [", ["is not valid YAML", "line"]),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), ["is not a text file"]),
    (b"model:\n  width: 8\n\x00\x00", ["is not a text file"]),
    (b"- just\n- a list\n", ["must hold a mapping"]),
    (b"optim: 3\n", ["optim must be a mapping"]),
])
def test_bad_config_files_are_one_clear_error(tmp_path, content, words):
    f = tmp_path / "c.yaml"
    f.write_bytes(content)
    with pytest.raises(ConfigError) as e:
        load_config("smoke", f)
    assert str(f) in str(e.value)
    for w in words:
        assert w in str(e.value), str(e.value)


def test_a_python_tag_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    f = tmp_path / "c.yaml"
    f.write_text(f"model: !!python/object/apply:os.system ['touch {marker}']\n"
                 f"train: {{init_from: !!python/object/apply:subprocess.check_call [['touch', '{marker}']]}}\n")
    with pytest.raises(ConfigError, match="python tag"):
        load_config("smoke", f)
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config("smoke", overrides=[f"train.init_from=!!python/object/apply:os.system ['touch {marker}']"])
    assert not marker.exists()


def test_a_missing_config_file_names_it(tmp_path):
    with pytest.raises(ConfigError, match="nothere.yaml does not exist"):
        load_config("smoke", tmp_path / "nothere.yaml")


def test_memory_that_cannot_fit_is_refused_before_allocating(tmp_path):
    cpu = torch.device("cpu")
    for override, part in (("model.width=4096", "model.width = 4096"), ("data.size=100000", "data.size = 100000")):
        cfg = load_config("smoke", overrides=[override])  # a valid value ...
        with pytest.raises(ConfigError) as e:  # ... that no machine here can hold
            check_memory(cfg, cpu)
        assert part in str(e.value) and "more than the" in str(e.value)
        with pytest.raises(ConfigError):
            train(cfg, tmp_path / override.split("=")[0], progress=False)
        assert not (tmp_path / override.split("=")[0]).exists()  # refused before the run folder was made
    check_memory(load_config("smoke"), cpu)  # the presets fit
    assert memory_problem(load_config("smoke"), 1e12, "a big machine") is None


@pytest.mark.parametrize("head_bn", [False, True])
def test_memory_estimate_counts_the_weights_exactly(head_bn):
    cfg = load_config("smoke", overrides=[f"moco.head_bn={head_bn}"])
    n = sum(p.numel() for p in build_moco(cfg).encoder_q.parameters())
    assert estimate_memory(cfg)["weights, gradients and optimiser state (model.width)"] == 16 * n


def test_cli_refuses_bad_values_with_one_line(tmp_path, capsys):
    for argv in (["train", "--preset", "smoke", "--out", str(tmp_path / "a"), "--steps", "-5", "--no-progress"],
                 ["train", "--preset", "smoke", "--out", str(tmp_path / "b"), "--set", "optim.batch_size=0"],
                 ["demo", "--preset", "smoke", "--out", str(tmp_path / "c"), "--set", "data.size=1"],
                 ["train", "--preset", "smoke", "--out", str(tmp_path / "d"), "--alpha", "-1"],
                 ["positions", "init", str(tmp_path / "e"), "--preset", "smoke", "--set", "data.frames=0"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "must be" in err, err
    assert not any((tmp_path / n).exists() for n in "abcde")


@pytest.mark.heavy
def test_bad_values_in_a_subprocess_give_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "stdann", "train", "--preset", "smoke", "--out", str(tmp_path / "r"),
                        "--set", "moco.queue_size=0"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "moco.queue_size = 0" in r.stderr

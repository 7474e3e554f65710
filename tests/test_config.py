import pytest

from stdann.config import Config, ConfigError, flat_keys, load_config


def test_presets_load_and_differ():
    paper, demo, smoke = (load_config(p) for p in ("paper", "demo", "smoke"))
    assert (paper.model.width, paper.data.frames, paper.data.size) == (64, 16, 112)
    assert paper.moco.queue_size == 65536 and paper.optim.batch_size == 256
    assert paper.optim.total_steps() == round(200 * 9537 / 256)
    assert demo.model.width < 64 and smoke.model.width <= demo.model.width


def test_overrides_are_typed():
    cfg = load_config("smoke", overrides=["optim.batch_size=16", "topography.alpha=0.5", "topography.blocks=layer3.1,layer4.1",
                                          "train.channels_last=false"])
    assert cfg.optim.batch_size == 16 and isinstance(cfg.optim.batch_size, int)
    assert cfg.topography.alpha == 0.5
    assert cfg.topography.blocks == ["layer3.1", "layer4.1"]
    assert cfg.train.channels_last is False


def test_unknown_key_names_closest_valid_keys():
    with pytest.raises(ConfigError, match=r"optim\.batch_size"):
        load_config("smoke", overrides=["optim.batchsize=3"])
    with pytest.raises(ConfigError, match="Valid keys"):
        load_config("smoke", overrides=["nosuchsection.x=1"])
    with pytest.raises(ConfigError, match="integer"):
        load_config("smoke", overrides=["optim.batch_size=abc"])
    with pytest.raises(ConfigError, match="presets are"):
        load_config("papr")


def test_yaml_round_trip(tmp_path):
    cfg = load_config("demo", overrides=["topography.alpha=2.5"])
    cfg.save(tmp_path / "c.yaml")
    again = load_config(None, tmp_path / "c.yaml")
    assert again == cfg
    assert "optim.batch_size" in flat_keys(Config())

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


def _alias_bomb(levels: int = 9) -> str:
    """A few hundred bytes of YAML whose aliases expand to 9**levels strings ("billion laughs")."""
    lines = ['l0: &l0 ["x","x","x","x","x","x","x","x","x"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]")
    lines.append("optim: {lr: [" + ",".join([f"*l{levels - 1}"] * 9) + "]}")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_at_once_naming_the_line(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text(_alias_bomb())
    assert path.stat().st_size < 1000
    with pytest.raises(ConfigError, match=r"line 2.*alias") as e:
        load_config("smoke", path=path)
    assert len(str(e.value)) < 400


def test_deep_or_huge_yaml_is_one_short_error(tmp_path):
    deep = tmp_path / "deep.yaml"
    deep.write_text("optim: {lr: " + "[" * 3000 + "]" * 3000 + "}\n")
    with pytest.raises(ConfigError, match="nesting deeper"):
        load_config("smoke", path=deep)
    huge = tmp_path / "huge.yaml"
    huge.write_text("# " + "x" * (2 << 20) + "\n")
    with pytest.raises(ConfigError, match="a few kilobytes"):
        load_config("smoke", path=huge)


def test_error_messages_never_print_an_unbounded_value():
    with pytest.raises(ConfigError) as e:
        load_config("smoke", overrides=["optim.lr=[" + "1," * 100_000 + "1]"])
    assert "optim.lr" in str(e.value) and len(str(e.value)) < 400
    with pytest.raises(ConfigError) as e:
        load_config("smoke", overrides=["optim.batch_size=" + "9" * 400])
    assert "optim.batch_size" in str(e.value) and len(str(e.value)) < 400

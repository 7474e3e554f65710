"""The untrained reference's cache: read back only when it was made for the same seeds, blocks,
measurement and configuration."""

from stdann.config import load_config
from stdann.orchestration import reference as R
from stdann.runs.folder import RunFolder


def test_a_cached_reference_is_measured_again_for_another_configuration(tmp_path, monkeypatch):
    made = []

    def fake(base, seeds, blocks, ephys_overrides=None, progress=None):
        made.append(base.data.size)
        return {"seeds": seeds, "measurement": R.MEASUREMENT_VERSION,
                "blocks": {b: {k: [0.1] * seeds for k in R.REFERENCE_KEYS} for b in blocks}}

    monkeypatch.setattr(R, "untrained_reference", fake)
    folder = RunFolder(tmp_path / "study")
    with folder.hold():
        folder.ensure_run()
        _check(folder, made)


def _check(folder, made):
    cfg = load_config("smoke")
    first = R.cached_reference(folder, cfg, 2, ["layer3.1"], log=lambda m: None)
    assert R.cached_reference(folder, cfg, 2, ["layer3.1"], log=lambda m: None) == first and len(made) == 1
    # a setting that does not change the networks or their measurement keeps it
    assert R.cached_reference(folder, cfg.with_overrides(["ephys.untrained_seeds=2"]), 2, ["layer3.1"],
                              log=lambda m: None) == first and len(made) == 1
    for changed, kwargs in ((cfg.with_overrides(["data.size=48"]), {}), (cfg, {"ephys_overrides": {"n_phases": 16}}),
                            (cfg, {}), ):
        R.cached_reference(folder, changed, 2, ["layer3.1"], log=lambda m: None, **kwargs)
    assert made == [cfg.data.size, 48, cfg.data.size, cfg.data.size]  # size, then the phases, then back: 3 remeasures
    R.cached_reference(folder, cfg, 3, ["layer3.1"], log=lambda m: None)
    R.cached_reference(folder, cfg, 3, ["layer3.1", "layer4.1"], log=lambda m: None)
    assert len(made) == 6

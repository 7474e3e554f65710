"""Figures drawn from analysis results: what each figure states (footer, panels) and the study figures.

Figures are drawn with matplotlib's object API; ``Figure.savefig`` is wrapped to read each figure
as it is written.
"""

import numpy as np
import pytest
from matplotlib.figure import Figure

from stdann.ephys.analyze import analyze_block
from stdann.ephys.config import EphysConfig
from stdann.ephys.macaque import load_reference
from stdann.ephys.registry import format_value
from stdann.ephys.recording import bn_mode
from stdann.ephys.stimuli import directions
from stdann.reports.figures.run import write_run_figures
from stdann.reports.figures.study import study_figures
from stdann.topography.positions import LayerPositions


@pytest.fixture
def saved(monkeypatch):
    """Every figure written: {file name: (footer-like texts, figure)}."""
    out = {}
    real = Figure.savefig

    def spy(self, fname, *a, **k):
        out[getattr(fname, "name", str(fname)).rsplit("/", 1)[-1]] = ([t.get_text() for t in self.texts], self)
        return real(self, fname, *a, **k)

    monkeypatch.setattr(Figure, "savefig", spy)
    return out


def _results(seed=0):
    """{network: {block: (summary, details)}} of a 40-channel block of von Mises units, one direction
    per channel (weight sharing): "trained" channels crowd round 90° (a population bias far above
    chance for 40 channels), "untrained" channels are evenly spread (R = 0)."""
    rng = np.random.default_rng(seed)
    c, h, w = 40, 4, 4
    n = c * h * w
    xy = rng.random((n, 2)) * 7.0
    pos = LayerPositions("layer3.1", (c, h, w), xy, np.zeros((0, 2), dtype=np.int64), 1.0, 7.0)
    ecfg = EphysConfig(n_directions=8, smoothness_units=500)
    dirs = np.deg2rad(directions(8))
    alive = rng.random(n) > 0.2  # some units unresponsive
    out = {}
    for label, ch in (("trained", np.pi / 2 + rng.uniform(-1, 1, c)), ("untrained", np.arange(c) * 2 * np.pi / c)):
        theta = np.repeat(ch, h * w)
        curves = np.exp(2.0 * np.cos(dirs[:, None] - theta[None, :])) * alive
        out[label] = {"layer3.1": analyze_block(curves[:, None, None, :], pos, ecfg)}
    return out


@pytest.mark.parametrize("clips", [0, 256])
def test_footers_state_how_batchnorm_was_set(tmp_path, saved, clips):
    paths = write_run_figures(tmp_path, _results(), directions(8), load_reference(), bn_mode(clips))
    names = {p.rsplit("/", 1)[-1] for p in paths}
    assert {"unit_map_layer3.1.png", "direction_map_layer3.1.png", "axial_map_layer3.1.png",
            "tuning_examples_layer3.1.png", "histograms_layer3.1.png", "smoothness_layer3.1.png"} == names
    for name in names:
        texts = " ".join(saved[name][0])
        assert bn_mode(clips) in texts and "0° = motion to the right" in texts
        assert ("re-estimated" in texts) == (clips > 0), name


def test_unit_level_map_draws_every_responsive_unit(tmp_path, saved):
    res = _results()
    write_run_figures(tmp_path, res, directions(8), load_reference(), bn_mode(0))
    fig = saved["unit_map_layer3.1.png"][1]
    for ax, label in zip(fig.axes, ("trained", "untrained")):
        s, d = res[label]["layer3.1"]
        off, on = ax.collections
        assert len(on.get_offsets()) == d["responsive"].sum() and len(off.get_offsets()) == (~d["responsive"]).sum()
        assert f"R = {format_value('direction_bias.resultant_length', s['direction_bias']['resultant_length'])} at" \
            in ax.get_title()
    # the mean-removed panel is there exactly when R is above chance
    assert res["trained"]["layer3.1"][0]["direction_bias"]["above_chance"]
    assert not res["untrained"]["layer3.1"][0]["direction_bias"]["above_chance"]
    titles = [a.get_title() for a in saved["direction_map_layer3.1.png"][1].axes]
    assert any(t.startswith("trained — mean removed") for t in titles)
    assert not any(t.startswith("untrained — mean removed") for t in titles)


def _study(kind):
    def net(v):
        return {"dsi_median": v, "dsi_ci": [v - 0.05, v + 0.05], "fraction_direction_selective": v,
                "direction_bias": {"resultant_length": 0.3}, "pinwheel_density": 3.0, "smoothness": 0.1}

    conds = [{"name": f"alpha_{a:g}", "label": f"α = {a:g}", "seed": 0, "alpha": a, "mode": "recipe",
              "metrics": {"layer3.1": {"trained": net(0.3 + a / 10), "untrained": net(0.3)}},
              "snapshots": [{"step": 2, "metrics": {"layer3.1": net(0.35)}}],
              "task": {"probe_trained": {"direction_r2": 0.5}}} for a in (0.0, 0.25, 2.5)]
    return {"kind": kind, "blocks": ["layer3.1"], "conditions": conds, "batchnorm": bn_mode(16)}


@pytest.mark.parametrize("kind, name", [("sweep", "sweep_layer3.1.png"), ("emergence", "emergence_layer3.1.png")])
def test_study_figures(tmp_path, saved, kind, name):
    paths = study_figures(_study(kind), tmp_path / "figures")
    assert [p.rsplit("/", 1)[-1] for p in paths] == [name]
    assert bn_mode(16) in " ".join(saved[name][0])

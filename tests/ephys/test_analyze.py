"""End to end: a fake run folder (random width-8 networks, hand-made positions) through
analyze_run, recording and the CLI; bad run folders give clear errors."""

import argparse
import json
import shutil

import numpy as np
import pytest
import torch

from stdann.config import load_config
from stdann.ephys import tuning as TU
from stdann.ephys.analyze import AnalysisError, axis_groups, by_axis
from stdann.ephys.macaque import comparison_rows, load_reference
from stdann.ephys.population import chance_resultant_length, resultant
from stdann.orchestration.run_analysis import analyze_run
from stdann.ephys.recording import record_responses
from stdann.ephys.stimuli import directions, drifting_gratings
from stdann.models.r3d import block_output_shapes, r3d_18
from stdann.topography.positions import LayerPositions, save_run_positions

BLOCKS = ["layer3.1", "layer4.1"]


def make_positions(cfg, blocks, seed=0):
    rng = np.random.default_rng(seed)
    shapes = block_output_shapes(cfg.model.width, cfg.data.frames, cfg.data.size)
    out = {}
    for b in blocks:
        c, _, h, w = shapes[b]
        side = 7.0
        tile = side / h
        rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        base = np.stack([cols.ravel(), rows.ravel()], 1) * tile  # (H*W, 2), x = column
        xy = np.tile(base, (c, 1)) + rng.random((c * h * w, 2)) * tile  # row-major (C, H, W)
        nb = rng.integers(0, c * h * w, size=(4, 8))
        out[b] = LayerPositions(b, (c, h, w), xy, nb, 2.0, side)
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    cfg = load_config("smoke", overrides=[
        "ephys.n_directions=8", "ephys.spatial_frequencies=[0.04,0.08]", "ephys.temporal_frequencies=[0.0625,0.125]",
        "ephys.n_phases=2", "ephys.rdk_coherences=[1.0,0.5]", "ephys.rdk_repeats=1",
        "ephys.smoothness_units=300", f"ephys.blocks={BLOCKS}".replace("'", "")])
    run = tmp_path_factory.mktemp("run")
    (run / "checkpoints").mkdir()
    for which, seed in (("init", 0), ("last", 1)):
        torch.manual_seed(seed)
        m = r3d_18(None, width=cfg.model.width)
        torch.save({"backbone": m.state_dict(), "config": cfg.to_yaml()}, run / "checkpoints" / f"{which}.pt")
    save_run_positions(run, make_positions(cfg, BLOCKS))
    return run


def test_record_responses_shapes_and_phase_groups():
    torch.manual_seed(0)
    model = r3d_18(None, width=8)
    x = drifting_gratings(np.repeat([0.0, 90.0], 2), 0.1, 0.25, phase_deg=[0, 180, 0, 180], frames=4, height=32, width=32)
    full = record_responses(model, [x[:3], x[3:]], ["layer2.1", "layer4.1"])
    assert full["layer2.1"].shape == (4, 16 * 8 * 8) and full["layer4.1"].shape == (4, 64 * 2 * 2)
    assert full["layer2.1"].dtype == np.float32 and (full["layer2.1"] >= 0).all()
    grouped = record_responses(model, [x[:3], x[3:]], ["layer2.1"], groups=[0, 0, 1, 1])
    assert np.allclose(grouped["layer2.1"], full["layer2.1"].reshape(2, 2, -1).mean(1), atol=1e-6)
    assert not model.training  # recorded in eval mode


@pytest.mark.heavy
def test_analyze_run_end_to_end(run_dir):
    m = analyze_run(run_dir, stimuli=("gratings", "rdk", "plaids"), progress=False)
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["blocks"].keys() == set(BLOCKS)
    for b in BLOCKS:
        for net in ("trained", "untrained"):
            s = saved["blocks"][b][net]
            assert s["n_units"] == s["n_responsive"] + s["n_excluded_unresponsive"]
            for k in ("dsi_median", "cv_direction_median", "cv_axial_median", "axial_ratio_median",
                      "fraction_direction_selective", "fraction_di_ge_half"):
                assert k in s
            assert 0 <= s["dsi_median"] <= 1 and s["dsi_ci"][0] <= s["dsi_median"] <= s["dsi_ci"][1]
            assert "rdk" in s and "plaids" in s
    s = saved["blocks"]["layer3.1"]["trained"]
    for k in ("pinwheel_density", "column_spacing_mm", "smoothness", "controls"):
        assert k in s, s.get("map_note")
    assert "shuffled_positions" in s["controls"] and "random_map_same_spectrum" in s["controls"]
    assert "pinwheel_density" in s["map_with_mean"] and s["maps"]["kernel_fwhm_mm"] > 0
    assert "eval" in saved["batchnorm"] and "right" in saved["direction_convention"]
    assert m["blocks"] == saved["blocks"]
    tables = {p.name for p in (run_dir / "tables").iterdir()}
    assert {"ephys_summary.csv", "macaque_comparison.csv", "units_layer3.1_trained.csv"} <= tables
    figs = {p.name for p in (run_dir / "figures").iterdir()}
    assert {"direction_map_layer3.1.png", "axial_map_layer3.1.png", "tuning_examples_layer3.1.png",
            "histograms_layer3.1.png", "smoothness_layer3.1.png"} <= figs
    units = (run_dir / "tables" / "units_layer3.1_trained.csv").read_text().splitlines()
    assert len(units) == 1 + 32 * 4 * 4
    # verdicts are stored with the numbers
    for b in BLOCKS:
        v = saved["blocks"][b]["trained_vs_untrained"]
        assert set(v) >= {"dsi_median", "fraction_direction_selective", "cv_direction_median"}
    assert saved["blocks"]["layer3.1"]["trained"]["map_order"]["verdict"] in ("ordered", "not_ordered")


def test_direction_bias_is_that_of_the_unit_table(run_dir, tmp_path):
    # R, its mean direction and the chance level follow from tables/units_<block>_<network>.csv alone:
    # the responsive units' preferred directions and their channels
    saved = analyze_run(run_dir, out_dir=tmp_path, progress=False, figures=False)
    assert saved == json.loads((tmp_path / "metrics.json").read_text())
    for b in BLOCKS:
        for net in ("trained", "untrained"):
            t = np.genfromtxt(tmp_path / "tables" / f"units_{b}_{net}.csv", delimiter=",", names=True)
            resp = t["responsive"] == 1
            r, mean = resultant(t["preferred_direction"][resp])
            _, weights = np.unique(t["channel"][resp], return_counts=True)
            bias = saved["blocks"][b][net]["direction_bias"]
            assert bias["resultant_length"] == pytest.approx(r, abs=1e-5)
            assert bias["mean_direction_deg"] == pytest.approx(mean, abs=1e-3)
            assert bias["chance_resultant_length"] == pytest.approx(chance_resultant_length(weights), abs=1e-6)
            assert bias["n_channels"] == len(weights) and bias["n_units"] == resp.sum()
            assert bias["above_chance"] == (r > bias["chance_resultant_length"])


def test_reference_table_and_comparison():
    ref = load_reference()
    q = ref["quantities"]
    for k in ("dsi", "di", "fraction_direction_selective", "cv_direction", "cv_axial", "bandwidth",
              "pinwheel_density", "column_spacing"):
        assert k in q and q[k]["sources"]
    rows = comparison_rows({"layer3.1": {"trained": {"dsi_median": 0.9, "dsi_ci": [0.8, 0.95]},
                                         "untrained": {"dsi_median": 0.3}}}, ref)
    r = [r for r in rows if r["quantity"] == "dsi"][0]
    assert r["trained_in_macaque_range"] is True and r["untrained_median"] == 0.3


def test_bad_run_folders(tmp_path, run_dir):
    with pytest.raises(AnalysisError, match="does not exist"):
        analyze_run(tmp_path / "nope", progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        analyze_run(empty, progress=False)
    nopos = tmp_path / "nopos"
    (nopos / "checkpoints").mkdir(parents=True)
    (nopos / "checkpoints" / "last.pt").write_bytes((run_dir / "checkpoints" / "last.pt").read_bytes())
    with pytest.raises(FileNotFoundError, match="positions"):
        analyze_run(nopos, progress=False)
    with pytest.raises(AnalysisError, match="unknown stimulus"):
        analyze_run(run_dir, stimuli=("movies",), progress=False)


def test_cli_registers_and_runs(run_dir, tmp_path):
    from stdann.cli.analyze import register

    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    register(sub)
    out = tmp_path / "out"
    args = p.parse_args(["analyze", str(run_dir), "--blocks", "layer4.1", "--out", str(out), "--no-progress",
                         "--no-figures"])
    assert args.func(args) == 0
    saved = json.loads((out / "metrics.json").read_text())
    assert list(saved["blocks"]) == ["layer4.1"]


def test_missing_untrained_control_is_stated(run_dir, tmp_path):
    run = tmp_path / "noinit"
    shutil.copytree(run_dir / "positions", run / "positions")
    (run / "checkpoints").mkdir()
    shutil.copy(run_dir / "checkpoints" / "last.pt", run / "checkpoints" / "last.pt")
    with pytest.warns(UserWarning, match="untrained control missing"):
        m = analyze_run(run, blocks=["layer4.1"], progress=False, figures=False)
    assert list(m["blocks"]["layer4.1"]) == ["trained"]
    assert any("untrained control missing" in n for n in m["notes"])


def test_by_axis_separates_horizontal_from_vertical_units():
    # 20 units tuned to rightward motion with no response leftward (DSI 1), 20 units tuned to the
    # vertical axis with equal up and down responses (axial: DSI 0, F1 = 0)
    dirs = directions(16)
    th = np.deg2rad(dirs)
    right = np.exp(2.0 * (np.cos(th) - 1.0)) * (np.cos(th) > 0)
    vertical = np.exp(2.0 * (np.abs(np.sin(th)) - 1.0))
    curves = np.vstack([np.tile(right, (20, 1)), np.tile(vertical, (20, 1))])
    g = by_axis(TU.tuning_metrics(curves, dirs))
    assert g["horizontal"]["n_units"] == 20 and g["vertical"]["n_units"] == 20
    assert g["horizontal"]["dsi_median"] == pytest.approx(1.0)
    assert g["vertical"]["dsi_median"] == pytest.approx(0.0, abs=1e-12)
    assert g["vertical"]["axial_ratio_median"] > 1e6  # a pure axis cell: F1 = 0
    assert g["horizontal"]["axial_ratio_median"] < 1.0


def test_axis_groups_cover_every_unit_once():
    a = np.linspace(0, 179.9, 360)
    g = axis_groups(a)
    assert (g["horizontal"] ^ g["vertical"]).all()
    assert g["horizontal"][a < 45].all() and g["vertical"][(a > 45) & (a < 135)].all() and g["horizontal"][a > 135].all()


@pytest.mark.heavy
def test_analyze_judges_the_run_against_the_untrained_range(run_dir, tmp_path, capsys):
    """`stdann analyze --untrained-seeds N`: the untrained networks of seeds 0 … N-1 are measured as
    the control is (seed 0's is the run's own control when the run starts from the trainer's seed-0
    network), every block gets its range verdicts, and metrics.json, `report --markdown`, the HTML
    report and the printed summary show them."""
    from stdann.cli.main import main
    from stdann.ephys.verdicts import untrained_range_verdict
    from stdann.ephys.registry import ci, get
    from stdann.orchestration.reference import REFERENCE_KEYS, untrained_network
    from stdann.reports.html import write_report
    from stdann.reports.markdown import markdown_for

    run = tmp_path / "run"
    shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("metrics.json", "tables", "figures", "report.html"))
    cfg = load_config("smoke", overrides=[f"ephys.blocks={BLOCKS}".replace("'", "")])
    saved = torch.load(run / "checkpoints" / "init.pt", weights_only=True)
    torch.save({**saved, "backbone": untrained_network(cfg).state_dict()}, run / "checkpoints" / "init.pt")
    assert main(["analyze", str(run), "--untrained-seeds", "2", "--no-figures", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "against 2 untrained networks" in printed and printed.count("vs untrained range") == len(BLOCKS)
    m = json.loads((run / "metrics.json").read_text())
    ref = m["untrained_reference"]
    assert ref["seeds"] == 2 and set(ref["blocks"]) == set(BLOCKS) and "untrained_range" in m["rules"]
    for b in BLOCKS:
        entry = m["blocks"][b]
        for k in REFERENCE_KEYS:
            values = ref["blocks"][b][k]
            assert len(values) == 2 and values[0] == pytest.approx(get(entry["untrained"], k), abs=1e-6)
            rv = entry["range_verdicts"][k]
            assert rv["verdict"] == untrained_range_verdict(get(entry["trained"], k), ci(entry["trained"], k), values)
            assert rv["range"] == [min(values), max(values)]
    md = markdown_for(run)
    assert "Against 2 untrained networks" in md and md.count("| layer3.1 |") == 2
    (run / "config.yaml").write_text(cfg.to_yaml())  # a run folder as `stdann train` leaves it, for the report
    assert "untrained networks of the reference" in write_report(run).read_text()
    with pytest.raises(SystemExit):
        main(["analyze", str(run), "--untrained-seeds", "1"])

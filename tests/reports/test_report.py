"""`stdann report`: the self-contained HTML page of a run folder and of a study folder, parsed with
html.parser and rendered in a real headless Chromium."""

from __future__ import annotations

import math
import base64
import io
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markupsafe import escape
from PIL import Image

from stdann import DIRECTION_CONVENTION
from stdann.config import load_config
from stdann.ephys.registry import DIRECTION_HEADLINE, format_value
from stdann.orchestration.run_analysis import analyze_run, compare_block
from stdann.reports.figures.common import new_figure, png_bytes
from stdann.reports.html import ReportError, write_report
from stdann.reports.markdown import SHORT, markdown_for, study_markdown
from stdann.reports.run_view import task_line
from stdann.reports.view import sampling_line, verdict_class
from stdann.training.trainer import train


# -- fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A real, tiny run: smoke training (a few seconds) then analysis of layer3.1 (a few seconds)."""
    run = tmp_path_factory.mktemp("report") / "run"
    train(load_config("smoke", overrides=["optim.max_steps=4"]), run, progress=False)
    analyze_run(run, blocks=["layer3.1"], progress=False)
    return run


def _png(color="C0") -> bytes:
    fig = new_figure(3, 2)
    ax = fig.add_subplot()
    ax.plot([0, 0.1, 0.25, 0.5], [0.31, 0.2, 0.35, 0.4], "-o", color=color)
    ax.set_xlabel("alpha")
    return png_bytes(fig, dpi=60)


@pytest.fixture
def study_dir(tmp_path, run_dir) -> Path:
    study = tmp_path / "study"
    (study / "figures").mkdir(parents=True)
    (study / "figures" / "sweep_dsi_vs_alpha.png").write_bytes(_png())
    # one condition links to the real run (which gets a report), one to a folder without report
    write_report(run_dir)
    # the verdicts are stored with the metrics, as the study machinery stores them (compare_block)
    conds = [
        {"name": "alpha_0.25", "label": "α = 0.25 <b>", "overrides": ["topography.alpha=0.25"], "seed": 0,
         "run_dir": str(run_dir), "status": "finished",
         "metrics": {"layer3.1": compare_block({"dsi_median": 0.12, "dsi_ci": [0.10, 0.14],
                                                "vector_strength_blank_median": 0.2,
                                                "vector_strength_blank_ci": [0.18, 0.22],
                                                "fraction_direction_selective": 0.08, "pinwheel_density": 3.0,
                                                "smoothness": 0.2, "direction_bias": {"resultant_length": 0.61}},
                                               {"dsi_median": 0.31, "dsi_ci": [0.29, 0.33],
                                                "vector_strength_blank_median": 0.21,
                                                "vector_strength_blank_ci": [0.19, 0.23],
                                                "fraction_direction_selective": 0.47,
                                                "direction_bias": {"resultant_length": 0.35}}),
                     "layer4.1": compare_block({"dsi_median": 0.56, "dsi_ci": [0.5, 0.6],
                                                "vector_strength_blank_median": 0.4,
                                                "vector_strength_blank_ci": [0.35, 0.45]},
                                               {"dsi_median": 0.35, "dsi_ci": [0.3, 0.4],
                                                "vector_strength_blank_median": 0.2,
                                                "vector_strength_blank_ci": [0.15, 0.25]})},
         "task": {"final_loss": 4.5, "knn_top1": 0.3}},
        {"name": "alpha_2.5", "label": "α = 2.5", "overrides": ["topography.alpha=2.5"], "seed": 1,
         "run_dir": "runs/alpha_2.5", "status": "failed"},  # no metrics, no task: tolerated
    ]
    (study / "study.json").write_text(json.dumps({"kind": "sweep", "conditions": conds, "controls": {"untrained": "init.pt"},
                                                  "created": "2026-01-01 00:00:00", "config": {"alphas": [0.25, 2.5]}}))
    return study


# -- HTML parsing ---------------------------------------------------------------------------------------
class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs: list[str] = []
        self.urls: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.figures = 0
        self.figcaptions = 0
        self.title = ""
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_title = False
        self._in_tbody = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ("src", "href"):
            if a.get(k):
                self.urls.append(a[k])
        if tag == "img":
            self.imgs.append(a.get("src", ""))
        elif tag == "figure":
            self.figures += 1
        elif tag == "figcaption":
            self.figcaptions += 1
        elif tag == "title":
            self._in_title = True
        elif tag == "table":
            self._table = a.get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_tbody = True
        elif tag == "tr" and self._table and self._in_tbody:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        elif tag == "td" and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "tbody":
            self._in_tbody = False
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        if self._cell is not None:
            self._cell.append(data)


def parse(path: Path) -> Page:
    p = Page()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def check_self_contained(page: Page, text: str) -> None:
    assert not [u for u in page.urls if re.match(r"\s*(https?:)?//", u)], "network resource in src/href"
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", text)
    assert "@import" not in text and "url(" not in text  # no style sheet or font fetched
    for src in page.imgs:
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(io.BytesIO(data)) as im:
            im.verify()


# -- tests ------------------------------------------------------------------------------------------------
def test_run_report(run_dir, tmp_path):
    out = write_report(run_dir, tmp_path / "r.html")
    assert out == tmp_path / "r.html"
    text = out.read_text(encoding="utf-8")
    page = parse(out)
    check_self_contained(page, text)
    assert "<script" not in text  # nothing executable ships in the page
    assert "stdann run report" in page.title
    n_fig_files = len(list((run_dir / "figures").glob("*.png")))
    assert n_fig_files >= 5
    assert len(page.imgs) == n_fig_files + 1  # + the training curve drawn from logs/train.csv
    assert page.figures == page.figcaptions == len(page.imgs)
    assert "training curve" in text
    metrics = json.loads((run_dir / "metrics.json").read_text())
    entry = metrics["blocks"]["layer3.1"]
    # headline table: trained beside untrained, with the verdict stored by the analysis
    head = page.tables["headline-b0"]
    dsi = next(r for r in head if r[0] == "median DSI")
    assert "[" in dsi[1] and "[" in dsi[2]
    assert dsi[3] == entry["trained_vs_untrained"]["dsi_median"]["text"]
    # measurement v2: the headline measure first, with its stored verdict; the excluded grating conditions stated
    assert head[0][0].startswith("median vector strength") and head[0][3] == \
        entry["trained_vs_untrained"][DIRECTION_HEADLINE]["text"]
    assert {r[0].split(" (")[0] for r in head} >= {"median DSI, blank subtracted", "median blank / peak response"}
    assert "headline (direction selective?): trained median vector strength" in text
    assert str(escape(sampling_line(entry["trained"]["sampling"]))) in text  # smoke grid: layer3.1 samples all
    assert str(escape(metrics["rules"]["aliasing"])) in text
    assert "direction-selective units agrees within 45°" in text
    assert any(r[0].startswith("pinwheel density") for r in head)
    # maps: the unit-level map first, then the smoothed maps, with R beside its chance level
    maps = text[text.index('id="maps"'):text.index('id="macaque"')]
    assert maps.index("unit_map_layer3.1.png") < maps.index("direction_map_layer3.1.png") < maps.index(
        "axial_map_layer3.1.png")
    bias = {r[0]: r for r in page.tables["bias-layer3.1"]}
    for net in ("trained", "untrained"):
        b = entry[net]["direction_bias"]
        assert f"R = {format_value('direction_bias.resultant_length', b['resultant_length'])} " in bias[net][1]
        assert f"chance {format_value('direction_bias.chance_resultant_length', b['chance_resultant_length'])} " in bias[net][1]
        assert bias[net][2] == ("above chance" if b["above_chance"] else "not above chance")
    # macaque comparison: one row per reference quantity with a metric, block layer3.1
    comp = page.tables["macaque-comparison"]
    assert len(comp) == len(metrics["comparison"]) >= 5
    assert {r[1] for r in comp} == {"layer3.1"}
    assert "dsi" in {r[0] for r in comp}
    # config, convention, rules and BatchNorm mode
    assert 'id="config-yaml"' in text and "queue_size" in text
    assert DIRECTION_CONVENTION in text
    assert "BatchNorm during measurement" in text and metrics["batchnorm"] in text
    assert metrics["rules"]["analysed_map"] in text
    assert "versions" in page.tables and any(r[0] == "torch" for r in page.tables["versions"])


def test_renderer_shows_stored_verdicts_and_decides_none(run_dir, tmp_path):
    # plant verdicts that the numbers would not give: the page must show them as stored
    run = tmp_path / "planted"
    shutil.copytree(run_dir, run)
    m = json.loads((run / "metrics.json").read_text())
    e = m["blocks"]["layer3.1"]
    e["trained"]["dsi_ci"] = e["untrained"]["dsi_ci"]  # identical CIs ...
    e["trained_vs_untrained"]["dsi_median"] = {"verdict": "above", "text": "PLANTED above"}  # ... yet "above"
    e["trained"]["map_order"] = {"verdict": "not_ordered", "text": "PLANTED no order"}
    e["trained"]["smoothness"] = 0.9  # a smoothness cut-off would have said "smoother"
    e["trained"]["direction_bias"]["above_chance"] = True
    e["trained"]["direction_bias"]["resultant_length"] = 0.01
    (run / "metrics.json").write_text(json.dumps(m))
    text = write_report(run).read_text()
    page = parse(run / "report.html")
    dsi = next(r for r in page.tables["headline-b0"] if r[0] == "median DSI")
    assert dsi[3] == "PLANTED above"
    assert '<span class="above">PLANTED above</span>' in text
    assert '<span class="below">PLANTED no order</span>' in text
    assert next(r for r in page.tables["bias-layer3.1"] if r[0] == "trained")[2] == "above chance"
    # without stored verdicts (an older metrics.json) the page says so instead of deciding
    del e["trained_vs_untrained"]
    (run / "metrics.json").write_text(json.dumps(m))
    page = parse(write_report(run))
    assert "no verdict in the metrics" in next(r for r in page.tables["headline-b0"] if r[0] == "median DSI")[3]


def test_sampling_line_names_the_excluded_conditions():
    line = sampling_line({"output_stride_thw": [4, 8, 8], "stage_input_stride_thw": [2, 4, 4], "max_sf_sampled": 0.125,
                          "max_tf_sampled": 0.25, "n_conditions_sampled": 4, "n_conditions": 6,
                          "excluded_conditions": [[0.16, 0.0625], [0.16, 0.125]], "dot_offsets": 4})
    assert line.startswith("Gratings: 4 of 6 (sf, tf) conditions sampled")
    assert "stride 2 frames × 4 px: sf < 0.125 cycles/px, tf < 0.25 cycles/frame" in line
    assert "excluded as aliased: (0.16, 0.0625), (0.16, 0.125); dot fields shifted over 4 frame(s)." in line
    assert sampling_line(None) is None and sampling_line({}) is None  # an older metrics.json


def test_verdict_colours_follow_the_metric_sense():
    assert verdict_class("above", 1) == "above" and verdict_class("below", 1) == "below"
    assert verdict_class("above", -1) == "below" and verdict_class("below", -1) == "above"  # e.g. CV: lower = sharper
    assert verdict_class("above", 0) == "neutral"
    assert verdict_class("not_distinguishable", 1) == "same" and verdict_class(None, 1) == "na"


def test_run_report_default_path_and_unanalysed(tmp_path, run_dir):
    # default path: RUN/report.html
    assert write_report(run_dir) == run_dir / "report.html"
    # a run without metrics.json still gets a report, telling the user to analyse it
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run_dir / "config.yaml", bare / "config.yaml")
    text = write_report(bare).read_text()
    assert "has not been analysed" in text and "stdann analyze" in text


def test_study_report(study_dir, run_dir):
    out = write_report(study_dir)
    assert out == study_dir / "report.html"
    text = out.read_text(encoding="utf-8")
    page = parse(out)
    check_self_contained(page, text)
    assert len(page.imgs) == 1 and page.figures == 1
    assert 'id="figures-curves"' in text  # sweep_*.png grouped as a sweep curve
    assert "median CV_direction" not in text  # metric columns no condition has are left out
    assert "population bias R (trained / untrained)" in text  # ... the others are there
    assert "<script" not in text
    rows = page.tables["study-comparison"]
    assert [r[0] for r in rows] == ["alpha_0.25", "alpha_2.5"]
    assert rows[0][1] == "α = 0.25 <b>"  # escaped text, not markup
    assert "&lt;b&gt;" in text
    # the headline measure (blank-subtracted vector strength) first: overlapping CIs, while the classic DSI is below
    assert rows[0][5].startswith("0.20 [") and rows[0][7] == "not distinguishable"
    assert rows[0][10] == "below"  # stored: DSI 0.12 [0.10, 0.14] vs 0.31 [0.29, 0.33]
    assert "no verdict" in rows[1][7] and "no verdict" in rows[1][10]
    assert "below</span> it in 0" in text and "not compared in\n2" in text
    # task performance columns and the relative link to the condition's own report
    assert "task: knn_top1" in text
    link = os.path.relpath(run_dir / "report.html", study_dir)
    assert f'href="{link}"' in text
    assert not Path(link).is_absolute()
    assert "no report.html" in rows[1][-1]
    other = page.tables["study-other-blocks"]
    assert other[0][:2] == ["alpha_0.25", "layer4.1"] and other[0][4] == "above" and other[0][7] == "above"


def test_not_a_run_or_study(tmp_path):
    with pytest.raises(ReportError, match="stdann train.*stdann analyze.*stdann sweep"):
        write_report(tmp_path)
    with pytest.raises(ReportError, match="does not exist"):
        write_report(tmp_path / "missing")


def test_cli(run_dir, tmp_path, capsys):
    from stdann.cli.main import main

    out = tmp_path / "cli.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    assert out.is_file() and "wrote" in capsys.readouterr().out
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


# -- a real browser -----------------------------------------------------------------------------------------
def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


def _dump_dom(browser: str, page: Path, profile: Path) -> str:
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom",
           page.resolve().as_uri()]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


# Injected by the test only (the shipped page has no script): marks the body once the page has loaded
# with the number of <img> that decoded (naturalWidth > 0) and the number of <img>.
LOAD_CHECK = """<script>
window.addEventListener("load", function () {
  var imgs = document.querySelectorAll("img"), ok = 0;
  for (var i = 0; i < imgs.length; i++) { if (imgs[i].complete && imgs[i].naturalWidth > 0) { ok++; } }
  document.body.dataset.imagesLoaded = String(ok);
  document.body.dataset.imagesTotal = String(imgs.length);
});
</script>"""


def test_headless_browser_renders_report(run_dir, study_dir, tmp_path):
    browser = _chromium()
    if browser is None:
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            pytest.fail("chromium not found although running as root: scripts/test.sh installs it "
                        "(apt-get install chromium); install it and re-run")
        pytest.skip("chromium not installed and not root (cannot install it): `apt-get install chromium`")
    for folder in (run_dir, study_dir):
        page = write_report(folder, tmp_path / f"{folder.name}.html")
        n_img = len(parse(page).imgs)
        checked = tmp_path / f"{folder.name}-checked.html"
        checked.write_text(page.read_text(encoding="utf-8").replace("</body>", LOAD_CHECK + "</body>"), encoding="utf-8")
        dom = _dump_dom(browser, checked, tmp_path / f"profile-{folder.name}")
        # the injected load check counts the <img> that decoded (naturalWidth > 0)
        m = re.search(r'<body[^>]*data-images-loaded="(\d+)"[^>]*data-images-total="(\d+)"', dom)
        assert m, "load script did not run in the browser"
        assert int(m.group(1)) == int(m.group(2)) == n_img >= 1
        rendered = parse_str(dom)
        assert len(rendered.imgs) == n_img and all(s.startswith("data:image/png;base64,") for s in rendered.imgs)
        table = "macaque-comparison" if folder == run_dir else "study-comparison"
        assert rendered.tables.get(table), f"table {table} missing from the rendered DOM"


def parse_str(text: str) -> Page:
    p = Page()
    p.feed(text)
    return p


def test_markdown_shows_stored_verdicts_and_the_bias(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    e = metrics["blocks"]["layer3.1"]
    row = next(line for line in markdown_for(run_dir).splitlines() if line.startswith("| layer3.1 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3] == SHORT[e["trained_vs_untrained"][DIRECTION_HEADLINE]["verdict"]]
    assert cells[1].startswith(format_value(DIRECTION_HEADLINE, e["trained"][DIRECTION_HEADLINE]))
    assert cells[6] == SHORT[e["trained_vs_untrained"]["dsi_median"]["verdict"]]
    b = e["trained"]["direction_bias"]
    assert cells[13].endswith(f"({format_value('direction_bias.chance_resultant_length', b['chance_resultant_length'])})")
    assert cells[13].startswith(format_value("direction_bias.resultant_length", b["resultant_length"]))
    excluded = e["trained"]["sampling"]["excluded_conditions"]
    assert cells[-1] == (", ".join(f"({sf:g}, {tf:g})" for sf, tf in excluded) or "none")


def test_study_markdown_leads_with_the_headline_verdict(study_dir):
    study = json.loads((study_dir / "study.json").read_text())
    lines = study_markdown(study, block="layer3.1").splitlines()
    header = next(line for line in lines if line.startswith("| condition | seed | task loss"))
    sep = lines[lines.index(header) + 1]
    row = next(line for line in lines[lines.index(header):] if line.startswith("| α = 0.25 <b> |"))
    names = [c.strip() for c in header.strip("|").split("|")]
    cells = dict(zip(names, [c.strip() for c in row.strip("|").split("|")]))
    assert len(names) == sep.count("---") == len(row.strip("|").split("|"))
    e = study["conditions"][0]["metrics"]["layer3.1"]
    assert cells["headline"] == SHORT[e["trained_vs_untrained"][DIRECTION_HEADLINE]["verdict"]] == "overlapping"
    assert cells["DSI"] == "below" and cells["vector strength (blank-sub.) trained"].startswith("0.20 [0.18, 0.22]")


def test_study_map_table_shows_what_tells_pinwheels_from_direction_fractures(tmp_path):
    # a map split along one axis has its "pinwheels" on 180° fractures: the fracture index measures that,
    # and with a strong bias R they vanish when the mean vector is kept; the table shows all beside the density
    trained = {"pinwheel_density": 6.37, "pinwheel_density_ci": [4.87, 8.19], "pinwheels": {"n_pinwheels": 61},
               "map_with_mean": {"pinwheel_density": 1.88}, "axial_map": {"pinwheel_density": 5.1},
               "direction_bias": {"resultant_length": 0.403}, "pinwheel_fracture": {"median": 0.71},
               "controls": {"random_map_same_spectrum": {"pinwheel_fracture": {"median": 0.24}}}}
    study = {"blocks": ["layer3.1"], "conditions": [
        {"label": "α = 0.25", "seed": 0, "metrics": {"layer3.1": {"trained": trained, "untrained": {}}}}]}
    (tmp_path / "study.json").write_text(json.dumps(study))
    lines = markdown_for(tmp_path).splitlines()
    header = next(line for line in lines if line.startswith("| condition | seed | smoothness"))
    row = next(line for line in lines[lines.index(header):] if line.startswith("| α = 0.25 |"))
    cells = dict(zip([c.strip() for c in header.strip("|").split("|")], [c.strip() for c in row.strip("|").split("|")]))
    assert cells["pinwheels"] == "61" and cells["density [95% CI]"].startswith("6.37")
    assert cells["map with its mean"] == format_value("map_with_mean.pinwheel_density", 1.88)
    assert cells["axial map"] == format_value("axial_map.pinwheel_density", 5.1)
    assert cells["bias R"] == format_value("direction_bias.resultant_length", 0.403)
    assert cells["fracture index (random map)"] == (f"{format_value('pinwheel_fracture.median', 0.71)} "
                                                    f"({format_value('pinwheel_fracture.median', 0.24)})")


def test_task_line_states_the_loss_against_chance_and_the_heldout_check():
    rows = [{"step": 10.0, "loss_task": 7.0, "loss_task_chance": 7.625},
            {"step": 20.0, "loss_task": 5.125, "loss_task_chance": 7.625, "heldout_top1": 0.25, "heldout_top5": 0.5,
             "heldout_infonce": 3.5, "heldout_chance_infonce": math.log(256)}]
    text = task_line(rows)
    assert "InfoNCE 5.12" in text and "2.5 nats below" in text
    assert "n = 256" in text and "top-1 0.25" in text and "step 20" in text
    assert task_line([{"step": 1.0, "lr": 0.1}]) is None


def test_a_report_that_fails_at_the_end_of_a_long_command_loses_nothing(run_dir, tmp_path, monkeypatch, capsys):
    """`write_final_report`: a failure of the page (here: a template that no longer matches its view,
    as when templates change under a process that ran for hours) is said in one line naming the fix;
    the results files stay as they were and `stdann report` makes the page later."""
    import stdann.reports.html as H

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    before = (run / "metrics.json").read_bytes()

    def broken(page):
        raise RuntimeError("'dict object' has no attribute 'reference_seeds'")

    monkeypatch.setattr(H, "render", broken)
    assert H.write_final_report(run) is None
    err = capsys.readouterr().err
    assert "results in" in err and "reference_seeds" in err and f"stdann report {run}" in err
    assert (run / "metrics.json").read_bytes() == before
    monkeypatch.undo()
    assert H.write_final_report(run) == run / "report.html"

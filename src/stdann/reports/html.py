"""`write_report`: one self-contained HTML page for a run folder or a sweep / study folder.

The page is rendered from a view model (``stdann.reports.view``: the only part that reads files)
through Jinja2 templates with autoescaping (``stdann/reports/templates/``: the pages, their macros
and the style sheet). Everything it shows is inside the one file: figures are embedded as base64
PNG, the style sheet is inline, and there is no script and no link to any network resource, so
the page can be mailed or archived as is. It never runs an analysis and decides nothing: the
verdicts it shows were stored by the analysis.

Run folder (has ``config.yaml``): summary (what was trained, steps, status, device, versions),
headline numbers of every analysed block with the trained network beside its untrained control
and the stored verdicts, the maps of every block (unit-level first) with the population bias R
beside its chance level, the macaque MT comparison table, every other figure of ``figures/``
grouped, a training curve drawn from ``logs/train.csv``, the rules and conventions of the
measurement and the exact ``config.yaml``.

Study folder (has ``study.json``): a table with one row per condition (MT block ``layer3.1``
first, then the other blocks, task performance), the study's figures, relative links to each
condition's own ``report.html`` when it exists, the study's config and the versions.
"""

from __future__ import annotations

import sys
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from stdann.errors import UsageError
from stdann.fileio import atomic_write_text
from stdann.reports.run_view import run_view
from stdann.reports.study_view import study_view
from stdann.reports.view import ReportError, folder_kind
from stdann.topography.sheets import MT_BLOCK
from stdann.runs.errors import RunFolderError
from stdann.runs.folder import RunFolder

__all__ = ["ReportError", "write_report", "render", "folder_kind", "MT_BLOCK"]

_ENV = Environment(loader=PackageLoader("stdann.reports", "templates"), autoescape=True, undefined=StrictUndefined,
                   trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def _nav(page: dict) -> list[tuple[str, str]]:
    if page["kind"] == "study":
        nav = [("comparison", "Conditions compared")]
        if page["controls"] or page["controls_raw"]:
            nav.append(("controls", "Controls"))
        return nav + [("figures", "Figures"), ("config", "Configuration and versions")]
    nav = [("summary", "Summary")]
    if page["blocks"]:
        nav.append(("headline", "Headline numbers: trained vs untrained"))
    if page["map_blocks"]:
        nav.append(("maps", "Maps and population bias"))
    if page["blocks"]:
        nav.append(("macaque", "Comparison with macaque MT"))
    return nav + [("figures", "Figures"), ("methods", "Conventions and methods"),
                  ("config", "Exact configuration (config.yaml)")]


def render(page: dict) -> str:
    """The HTML of a view model from :func:`~stdann.reports.view.run_view` or ``study_view``."""
    template = _ENV.get_template("run.html.j2" if page["kind"] == "run" else "study.html.j2")
    return template.render(page={**page, "nav": _nav(page)})


REPORT_NAME = "report.html"
_GENERATOR = '<meta name="generator" content="stdann '


def _is_stdann_report(path: Path) -> bool:
    """Whether ``path`` is a page this function wrote (its generator tag is in the first 4 kB)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return _GENERATOR in f.read(4096)
    except OSError:
        return False


def write_final_report(folder) -> Path | None:
    """The HTML report at the end of a long command (demo, study, sweep, emergence), or None after
    saying on stderr why it could not be written: the results files are complete by then, and a
    failure of this view of them (e.g. templates changed under a process that ran for hours) must not
    read as a lost run. ``stdann report FOLDER`` makes it later."""
    try:
        return write_report(folder)
    except Exception as e:  # noqa: BLE001 -- any failure of the page; the results it shows are already written
        print(f"stdann: the results in {folder} are complete, but its HTML report could not be written "
              f"({type(e).__name__}: {e}); make it with `stdann report {folder}`", file=sys.stderr)
        return None


def write_report(path_in: str | Path, out_html: str | Path | None = None) -> Path:
    """Write one self-contained HTML report of a run folder or a sweep / study folder and return its
    path (default ``PATH/report.html``). Reads files only; raises :class:`ReportError` (a
    ``FileNotFoundError``) naming what is missing when the folder is neither kind.

    The page is written like every other stdann output: into a stdann folder (the default, or an
    ``out_html`` inside one) while holding its lock and through its manifest, so a user's file of
    that name is never replaced; elsewhere only over nothing or over an earlier stdann report.
    ``out_html`` must end in ``.html`` (so that no run file can be replaced by a page)."""
    folder = Path(path_in)
    out = Path(out_html) if out_html is not None else folder / REPORT_NAME
    if out.suffix.lower() not in (".html", ".htm"):
        raise UsageError(f"--out {out}: the report is an HTML page; give a file name ending in .html, "
                         f"e.g. --out {out.with_suffix('.html')}")
    page = run_view(folder) if folder_kind(folder) == "run" else study_view(folder)
    html = render(page)
    dest = RunFolder(out.parent)
    if out_html is None or dest.is_marked():
        with dest.hold():
            return atomic_write_text(dest.ensure_run().claim(out.name), html)
    if out.is_symlink() or out.is_dir() or (out.exists() and not _is_stdann_report(out)):
        raise RunFolderError(f"{out} exists and is not a stdann report, which stdann will not overwrite: "
                             "choose another --out or move it away")
    return atomic_write_text(out, html)

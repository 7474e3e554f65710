"""The files of a study folder: ``study.json`` (one format for every study) and the study's figures.

A study folder is a stdann folder (marker and manifest, :class:`~stdann.runs.folder.RunFolder`):
it is held by one process at a time, and study.json and the figures are written through its
manifest, so a user's file of the same name is never replaced.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from stdann.fileio import jsonable
from stdann.reports.figures.study import study_figures
from stdann.runs.folder import RunFolder

STUDY_FILE = "study.json"
FIGURES = "figures"


def write_study_json(folder: RunFolder, obj: dict) -> None:
    """(``folder`` held) Write a study record (study.json) atomically through the study folder's
    manifest: numpy values plain, NaN and ±inf as null — the one format of every study."""
    folder.write_json(STUDY_FILE, jsonable(obj, inf_as_text=False), indent=1)


def write_study_figures(folder: RunFolder, study: dict) -> None:
    """(``folder`` held) Draw the study's figures into a staging folder and publish them through the
    study folder's manifest (a user's file of the same name is never replaced); ``study["figures"]``
    lists them relative to the study folder."""
    with folder.staging() as tmp:
        drawn = study_figures(study, tmp / FIGURES)
        study["figures"] = [Path(p).relative_to(tmp).as_posix() for p in drawn]
        folder.publish(tmp)


@contextlib.contextmanager
def study_folder(out: Path) -> Iterator[RunFolder]:
    """Hold the study folder ``out`` (one process per study) as a stdann folder, refusing a user's
    ``study.json`` there before any work; yields the :class:`RunFolder`."""
    folder = RunFolder(out)
    with folder.hold():
        folder.check_writable([STUDY_FILE])
        yield folder.ensure_run()

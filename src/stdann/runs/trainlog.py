"""The reader of a run's training log, ``logs/train.csv`` (written by
:class:`stdann.training.logger.RunLogger`): the one place that parses it, for the trainer's resume,
the studies' task summaries and the reports' training curves."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from stdann.runs.errors import RunFolderError
from stdann.runs.layout import LOG_HEADER, TRAIN_LOG


def _damaged(path: Path, why: str) -> RunFolderError:
    return RunFolderError(f"{path} is damaged ({why}): move it away to continue the run (a new log starts at the "
                          "checkpoint's step) or restore it")


def read_rows(path: Path) -> tuple[list[str] | None, list[dict[str, str]]]:
    """(header, rows) of a stdann training log; a file that is not one (binary data, another header,
    a row with more or fewer cells than the header, a cell that is neither empty nor a number) raises
    :class:`RunFolderError` naming it and the fix. A last row without its newline, which a crash while
    appending leaves, is dropped (it is after the last checkpoint, or logged again on resume)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise _damaged(path, "binary data") from None
    if not text.strip():
        return None, []
    if "\x00" in text or not text.startswith(LOG_HEADER):
        raise _damaged(path, "it does not start with stdann's log header")
    if not text.endswith("\n"):  # the writer ends every row with a newline: this one was cut short by a crash
        text = text[: text.rfind("\n") + 1]
        if not text:
            return None, []
    try:
        reader = csv.DictReader(io.StringIO(text))
        rows = list(reader)
    except csv.Error as e:
        raise _damaged(path, f"not CSV: {e}") from None
    fields = list(reader.fieldnames or [])
    for i, r in enumerate(rows):
        if _number(r["step"]) is None:
            raise _damaged(path, f"row {i + 2} has no step number")
        if None in r or any(v is None for v in r.values()):  # DictReader's marks for extra / missing cells
            raise _damaged(path, f"row {i + 2} does not have the header's {len(fields)} cells")
        bad = next((k for k, v in r.items() if v != "" and _number(v) is None), None)
        if bad is not None:
            raise _damaged(path, f"row {i + 2}: {bad} is {r[bad]!r}, not a number")
    return fields, rows


def _number(v: str | None) -> float | None:
    try:
        return float(v) if v not in ("", None) else None
    except (TypeError, ValueError):
        return None


def read_log(run_dir: str | Path) -> list[dict[str, float]]:
    """The numeric columns of every row of a run's training log (empty when there is none)."""
    path = Path(run_dir) / TRAIN_LOG
    if not path.is_file():
        return []
    _, rows = read_rows(path)
    return [{k: x for k, v in r.items() if k and (x := _number(v)) is not None} for r in rows]

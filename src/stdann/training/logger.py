"""Training logs: a CSV file (always) and TensorBoard events (when tensorboard is installed).

The paths come from the run folder (:mod:`stdann.runs.folder`), which checks that the CSV file is
stdann's own before this logger appends to it or adopts its header.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from stdann.fileio import atomic_write_text
from stdann.runs.errors import RunFolderError
from stdann.runs.folder import LOG_HEADER, TRAIN_LOG


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


class RunLogger:
    def __init__(self, csv_path: str | Path, tb_dir: str | Path | None = None, enabled: bool = True,
                 tb_suffix: str = ""):
        self.enabled = enabled
        self.path = Path(csv_path)
        self._fields: list[str] | None = None
        self._tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file() and self.path.stat().st_size > 0:
            self._fields, _ = read_rows(self.path)
        if tb_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

                self._tb = SummaryWriter(str(tb_dir), filename_suffix=tb_suffix)
            except Exception:  # noqa: BLE001 - TensorBoard is optional
                self._tb = None

    def truncate_after(self, step: int) -> None:
        """On resume, drop rows logged after the checkpoint's step (they will be logged again) and a
        last row cut short by a crash; the file is replaced atomically, so a crash here loses no row."""
        if not self.enabled or not self.path.is_file():
            return
        fields, rows = read_rows(self.path)
        if fields is None:  # empty, or a header cut short: the next row writes the header again
            self._fields = None
            atomic_write_text(self.path, "")
            return
        keep = [r for r in rows if int(float(r["step"])) <= step]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=fields)
        w.writeheader()
        w.writerows(keep)
        atomic_write_text(self.path, buf.getvalue())

    def log(self, row: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self._fields is None:
            self._fields = list(row)
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self._fields)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, fieldnames=self._fields, extrasaction="ignore").writerow(row)
        if self._tb is not None:
            step = int(row["step"])
            for k, v in row.items():
                if k != "step":
                    self._tb.add_scalar(k.replace("sl_", "spatial_loss/") if k.startswith("sl_") else k, v, step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


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

"""Training logs: a CSV file (always) and TensorBoard events (when tensorboard is installed).

The paths come from the run folder (:mod:`stdann.runs.folder`), which checks that the CSV file is
stdann's own before this logger appends to it or adopts its header.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import torch

from stdann.fileio import atomic_write_text
from stdann.runs.trainlog import read_log, read_rows

__all__ = ["Interval", "RunLogger", "read_log", "read_rows"]


class Interval:
    """Sums of a log line's interval, kept on the device (no host synchronisation per step)."""

    def __init__(self, device: torch.device, now: float) -> None:
        self.task, self.acc = torch.zeros((), device=device), torch.zeros((), device=device)
        self.steps, self.clips, self.since = 0, 0, now

    def add(self, out, world_size: int) -> None:
        """Add a step's :class:`~stdann.training.step.StepOutput` (clips counted over every rank)."""
        self.task += out.task.float()
        self.acc += out.acc.float()
        self.steps += 1
        self.clips += out.clips * world_size

    def mean_task(self) -> float:
        return float(self.task) / self.steps

    def mean_acc(self) -> float:
        return float(self.acc) / self.steps

    def clips_per_s(self, now: float) -> float:
        return self.clips / max(now - self.since, 1e-9)

    def reset(self, now: float) -> None:
        self.task.zero_()
        self.acc.zero_()
        self.steps, self.clips, self.since = 0, 0, now


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

"""Training logs: a CSV file (always) and TensorBoard events (when tensorboard is installed)."""

from __future__ import annotations

import csv
from pathlib import Path


class RunLogger:
    def __init__(self, log_dir: str | Path, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self.path = Path(log_dir) / "train.csv"
        self._fields: list[str] | None = None
        self._tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file() and self.path.stat().st_size > 0:
            with open(self.path, newline="") as f:
                self._fields = next(csv.reader(f), None)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

                self._tb = SummaryWriter(str(Path(log_dir) / "tb"))
            except Exception:  # noqa: BLE001 - TensorBoard is optional
                self._tb = None

    def truncate_after(self, step: int) -> None:
        """On resume, drop rows logged after the checkpoint's step (they will be logged again)."""
        if not self.enabled or not self.path.is_file():
            return
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            return
        keep = [r for r in rows if int(float(r["step"])) <= step]
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self._fields)
            w.writeheader()
            w.writerows(keep)

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


def read_log(run_dir: str | Path) -> list[dict[str, float]]:
    path = Path(run_dir) / "logs" / "train.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in r.items() if v not in ("", None)} for r in csv.DictReader(f)]

"""Why a training run stops before its last step, or checkpoints between its scheduled ones.

:class:`Stopper` owns every such reason: Ctrl-C / SIGTERM (:class:`StopRequest`), the time budget
(``train.max_minutes``), a stop step asked for by a test, a non-finite loss
(:class:`TrainingDiverged`) and the checkpoint clock (``train.ckpt_minutes``). Under torchrun all
ranks take each decision together, at the steps that synchronise anyway (on the CPU every step; on
CUDA the log and checkpoint steps), by one small all-reduce, so that no rank waits in a collective for
a rank that has stopped.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass
from typing import Any

import torch

from stdann import distributed
from stdann.config import Config
from stdann.errors import StdannError
from stdann.runs.folder import RunFolder
from stdann.training.resume import kept_checkpoint


class TrainingDiverged(StdannError, RuntimeError):
    """The loss became NaN or Inf; the message says at which step and which checkpoint is good."""


class StopRequest:
    """First Ctrl-C / SIGTERM asks for a clean stop (checkpoint, then exit); a second one raises
    KeyboardInterrupt. Handlers are installed in the main thread only, restored by :meth:`close`.
    A signal the process was started ignoring (``nohup``, ``cmd &`` in a script) stays ignored."""

    def __init__(self) -> None:
        self.requested, self.signal = False, None
        self._old: dict[int, Any] = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._old[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread
            self._old = {}

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        if self.requested:
            raise KeyboardInterrupt
        self.requested, self.signal = True, signum

    def close(self) -> None:
        for sig, h in self._old.items():
            signal.signal(sig, h)


@dataclass(frozen=True)
class Decision:
    loss: float | None  # the step's loss read on the host (None where the step did not synchronise)
    checkpoint: bool  # the checkpoint clock asks for one at this step
    stop: str | None  # interrupted | time-budget | stopped, or None to go on


class Stopper:
    """The stop and clock-checkpoint decisions of a run (module docstring)."""

    def __init__(self, cfg: Config, run: RunFolder, device: torch.device, multi_process: bool,
                 stop_at_step: int | None, total_steps: int) -> None:
        self.run, self.multi_process, self.stop_at_step, self.total_steps = run, multi_process, stop_at_step, total_steps
        self.budget_s = 60 * cfg.train.max_minutes if cfg.train.max_minutes > 0 else math.inf
        self.ckpt_s = 60.0 * cfg.train.ckpt_minutes  # 0: no clock checkpoints
        self.sync_every_step = device.type != "cuda"  # reading the loss costs nothing on the CPU
        self.signals = StopRequest()
        self.t_start = self.last_ckpt = time.time()

    def start(self, now: float) -> None:
        """Start the clocks (every rank at the same point, after the main process's writes)."""
        self.t_start = self.last_ckpt = now

    def decide(self, step: int, loss: torch.Tensor, synchronising: bool) -> Decision:
        """After ``step``: stop or not, checkpoint by the clock or not, the same on every rank.
        Raises :class:`TrainingDiverged` on every rank when the loss is not finite on any."""
        now = time.time()
        asks = {"interrupted": self.signals.requested,
                "time-budget": now - self.t_start > self.budget_s,
                "stopped": self.stop_at_step is not None and self.stop_at_step <= step < self.total_steps}
        clock = self.ckpt_s > 0 and now - self.last_ckpt >= self.ckpt_s
        value = None
        if synchronising or self.sync_every_step:
            value = float(loss)  # one host sync, only where it is needed
            diverged, clock, *decided = distributed.agree([not math.isfinite(value), clock, *asks.values()])
            if diverged:
                where = f"loss became {value}" if not math.isfinite(value) else "the loss became non-finite on another rank"
                raise TrainingDiverged(f"{where} at step {step}; stopped. {kept_checkpoint(self.run)}. "
                                       "Lower optim.lr, set optim.clip_grad, or check the data")
        else:  # alone, decide now; under torchrun, at the next synchronising step
            decided = [False] * len(asks) if self.multi_process else list(asks.values())
            clock = clock and not self.multi_process
        return Decision(value, clock, next((name for name, yes in zip(asks, decided) if yes), None))

    def checkpointed(self) -> None:
        self.last_ckpt = time.time()

    def close(self) -> None:
        self.signals.close()

"""CPU threads when other processes share the cores (docs/reliability.md, "Under load").

PyTorch's CPU kernels run on OpenMP threads, one per core, that meet at a barrier after every
operation. When another busy process takes one of the cores, the thread that lost its core holds
up the others at every barrier, and by default the waiting threads spin, taking CPU from the very
thread they wait for: on 2 cores beside one busy process the demo's training step went from 2.5 s
to 37-44 s (as reported when this module was written, not re-measured since: benchmarks/shared_cores.py
measures it, docs/reliability.md says how). So, before torch is imported, the
``stdann`` command (:func:`configure`):

* counts the processes already running on the machine and, when they keep cores busy, sets
  ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep instead of spinning) and starts only as many
  threads as there are free cores (``OMP_NUM_THREADS``), saying so in one line;
* on a quiet machine leaves OpenMP's default (spinning) alone: PASSIVE there cost 40% per step
  (demo preset, 60 pretraining steps on 2 AVX-512 cores: 20.1 s PASSIVE vs 14.3 s ACTIVE, two
  runs each, 2026-11-23).

An explicit ``OMP_NUM_THREADS`` or ``train.threads`` always wins. A process that stdann starts for
itself (``stdann study --background``) takes its parent's decision (:func:`inherited_env`) instead
of measuring again: the parent, still running while the child starts, would count as a busy process
and halve the child's threads for hours. This module imports nothing heavy: it must run before torch
is imported.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Mapping, MutableMapping


def cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def busy_elsewhere(samples: int = 5, interval: float = 0.05) -> float:
    """How many other processes are running right now: the median over a few samples of the kernel's
    count of runnable tasks (``/proc/loadavg``) less this process; the 1-minute load average where
    that count is not available."""
    counts = []
    for i in range(samples):
        try:
            with open("/proc/loadavg") as f:
                running = int(f.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return max(0.0, os.getloadavg()[0]) if hasattr(os, "getloadavg") else 0.0
        counts.append(max(0, running - 1))
        if i + 1 < samples:
            time.sleep(interval)
    return float(statistics.median(counts))


def choose_threads(n_cores: int, busy: float) -> int:
    """Threads for ``n_cores`` cores when ``busy`` other processes are running: one per free core,
    at least one."""
    return max(1, min(n_cores, int(round(n_cores - busy))))


CONFIGURED = "STDANN_CPU_CONFIGURED"  # set in the environment of a child that keeps its parent's choice


def inherited_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a child process that stdann starts to do its parent's work: a copy of
    ``env`` (default ``os.environ``, where :func:`configure` has already put its choice) marked so that
    the child's :func:`configure` keeps that choice."""
    child = dict(os.environ if env is None else env)
    child[CONFIGURED] = "1"
    return child


def configure(env: MutableMapping[str, str] | None = None, busy: float | None = None) -> str | None:
    """Set the OpenMP environment before torch is imported (see the module docstring); returns the
    line to show the user when the thread count was lowered, else None."""
    env = os.environ if env is None else env
    if env.get(CONFIGURED) == "1":
        return None  # started by a stdann process that has chosen already (inherited_env)
    if env.get("OMP_WAIT_POLICY") and env.get("OMP_NUM_THREADS"):
        return None  # both chosen by the user: nothing to measure
    busy = busy_elsewhere() if busy is None else busy
    if busy >= 0.5:
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if env.get("OMP_NUM_THREADS"):
        return None
    n = cores()
    threads = choose_threads(n, busy)
    if threads >= n:
        return None
    env["OMP_NUM_THREADS"] = str(threads)
    return (f"[stdann] {busy:g} other process(es) are busy on this machine's {n} cores: using {threads} CPU thread(s) "
            f"instead of {n} (threads that share cores wait for each other); choose with --set train.threads=N "
            "or OMP_NUM_THREADS=N")

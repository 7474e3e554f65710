"""What the machine offers a run: memory (to refuse a configuration that cannot fit before it
allocates) and CPU cores (to choose a thread count when other processes share them)."""

from __future__ import annotations

import os

import torch

from stdann.config import Config, ConfigError
from stdann.config_checks import memory_problem


def memory_of(device: torch.device) -> tuple[float, str]:
    """(total bytes, description) of the memory a run on ``device`` allocates from."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        props = torch.cuda.get_device_properties(index)
        return float(props.total_memory), f"GPU {index} ({props.name})"
    try:
        total = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not a POSIX system: no estimate to compare with
        return float("inf"), "this machine"
    return total, "this machine's RAM"


def check_memory(cfg: Config, device: torch.device, world_size: int = 1) -> None:
    """Refuse (:class:`ConfigError`) a configuration whose memory lower bound exceeds the device's
    memory (:func:`stdann.config_checks.estimate_memory`), before anything is allocated."""
    total, where = memory_of(device)
    problem = memory_problem(cfg, total, where, world_size)
    if problem:
        raise ConfigError(problem)

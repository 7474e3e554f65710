"""The one resolution of a device name (``auto``, ``cpu``, ``cuda:N``, ``mps``), host-to-device
copies that never stall the GPU, and choosing the CUDA device of a process.

Every step draws its random parameters (clip trajectories, crops, colour matrices, key
permutations, neighborhood rows) on the CPU, so that a run is the same on every device. Copying
such a tensor with a plain ``.to("cuda")`` is synchronous: the host waits until the copy has run,
i.e. until the GPU has finished everything queued before it, and the GPU then idles while the host
prepares the next kernels. :func:`upload` copies from pinned (page-locked) memory with
``non_blocking=True`` instead: the copy is queued on the stream like a kernel and the host goes
on. PyTorch's caching host allocator keeps the pinned block alive until the copy has run.
"""

from __future__ import annotations

import torch

from stdann.errors import ConfigError

DEVICE_KINDS = ("cpu", "cuda", "mps")


def resolve_device(spec: str | torch.device | None, key: str = "train.device",
                   kinds: tuple[str, ...] = DEVICE_KINDS) -> torch.device:
    """The device ``spec`` names: ``auto`` (or None) is CUDA when available, else the CPU. A name
    torch does not know, a kind outside ``kinds``, or a GPU this machine lacks is refused with a
    :class:`~stdann.errors.ConfigError` naming ``key`` (the config key or option it came from)."""
    if spec is None or str(spec) in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise ConfigError(f"{key} = {str(spec)!r} is not valid: it must be auto, cpu, cuda, cuda:N or mps; "
                          f"set it with --device or --set train.device=VALUE") from None
    if dev.type not in kinds:
        raise ConfigError(f"{key} = {str(spec)!r}: only {', '.join(kinds)} (or auto) are supported here")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{key} = {str(spec)!r} but CUDA is not available here (torch {torch.__version__}); "
                          "use --device cpu (or auto)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"{key} = {str(spec)!r} but this machine has {torch.cuda.device_count()} GPU(s); "
                          "use cuda:0 … or auto")
    return dev


def upload(t: torch.Tensor, device: torch.device | str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``t`` on ``device`` (and in ``dtype``), without blocking the host when ``device`` is a GPU.

    A CPU tensor bound for CUDA is cast on the CPU first (small parameter tensors: cheap there, and
    the copy carries fewer bytes), pinned, then copied asynchronously. Anything else is a plain
    ``.to``, also asked for as non-blocking (a no-op where the copy is synchronous anyway)."""
    device = torch.device(device)
    if dtype is not None and t.dtype != dtype and t.device.type == "cpu":
        t = t.to(dtype)
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device=device, dtype=dtype, non_blocking=True)


def select(device: torch.device) -> torch.device:
    """Make ``device`` this process's current CUDA device (``cuda:N``), so that CUDA events, streams
    and kernels launched without an explicit device go to it rather than to GPU 0; other devices
    are returned unchanged."""
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    return device

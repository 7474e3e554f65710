"""Small real file systems for the tests of full and read-only disks (root only; skipped otherwise)."""

import contextlib
import os
import subprocess
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_tmpfs(mountpoint: Path, size: str, read_only: bool = False):
    """Mount a tmpfs of ``size`` (e.g. "64k") at ``mountpoint`` for the block; skip the test when this
    process may not mount one (not root, or no mount in this container)."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    opts = f"size={size}" + (",ro" if read_only else "")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(mountpoint)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


def remount(mountpoint: Path, options: str) -> None:
    """Change a mounted tmpfs (e.g. "size=64m" to free the disk, "ro" / "rw")."""
    subprocess.run(["mount", "-o", f"remount,{options}", str(mountpoint)], check=True, capture_output=True)

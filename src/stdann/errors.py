"""The errors a user can cause, and nothing else: every one derives from :class:`StdannError`.

The ``stdann`` command prints a :class:`StdannError` as one line (``stdann CMD: error: ...``) and
exits with its ``exit_code`` (2 unless the error says otherwise; ``--debug`` shows the traceback).
Any other exception is a bug and keeps its traceback. Messages name the problem, the file or key
concerned and the fix.

Errors the operating system raises while stdann writes (a full disk, a read-only folder, no
permission) are turned into :class:`StorageError` by :func:`storage_error`, the one place that
knows which of them are the user's to fix.
"""

from __future__ import annotations

import errno
import os
import reprlib
from pathlib import Path
from typing import Any

_SHOWN = reprlib.Repr()
_SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlist, _SHOWN.maxtuple, _SHOWN.maxdict, _SHOWN.maxlevel = 60, 60, 6, 6, 6, 3
_SHOWN.maxlong = 40


def shown(value: Any) -> str:
    """``repr(value)`` cut to about one line: an error message never prints an unbounded value
    (a huge list, a 400-digit integer, a megabyte string)."""
    return _SHOWN.repr(value)


class StdannError(Exception):
    """Base of every user-facing error; ``exit_code`` is the command's exit status."""

    exit_code = 2


class ConfigError(StdannError, ValueError):
    """A configuration problem; the message names the key, the value, the valid range and the fix.
    (Importable as ``stdann.config.ConfigError`` too, where the configuration raises it.)"""


class MissingFileError(StdannError, FileNotFoundError):
    """A file or folder that stdann needs is not there (the message says which command makes it)."""


class UsageError(StdannError, ValueError):
    """A command-line argument that cannot be used as given (the message says what to give instead)."""


class StorageError(StdannError, OSError):
    """The disk refused a write or a read: full, read-only, no permission, a folder in the way."""


_AGAIN = "free space or choose another folder, then run the command again (a training continues with --resume)"
# errno -> (what happened, what to do); the errors a user fixes, not bugs.
_STORAGE = {
    errno.ENOSPC: ("the disk is full", _AGAIN),
    errno.EDQUOT: ("the disk quota is exceeded", _AGAIN),
    errno.EROFS: ("the file system is read-only", "choose an output folder on a writable disk"),
    errno.EACCES: ("permission denied", "choose a folder you can write to, or fix its permissions"),
    errno.EPERM: ("operation not permitted", "choose a folder you can write to, or fix its permissions"),
    errno.EISDIR: ("a folder is in the way", "give a file name, not a folder"),
    errno.ENOTDIR: ("a file is in the way of a folder", "choose another path"),
    errno.ENOENT: ("no such file or folder", "check the path"),
    errno.EIO: ("an input/output error (failing disk or network file system)", "check the disk, then run the "
                "same command again"),
    errno.EMFILE: ("too many open files", "raise the limit (ulimit -n) or lower data.workers"),
}


def storage_error(e: OSError, path: str | Path | None = None) -> StorageError | None:
    """``e`` as a one-line :class:`StorageError` naming the file, the problem and the fix — or None
    when ``e`` is not one of the storage errors a user can fix (then it is a bug and stays as it is)."""
    if isinstance(e, StorageError):
        return e
    if e.errno not in _STORAGE:
        return None
    what, fix = _STORAGE[e.errno]
    where = path if path is not None else (e.filename if e.filename is not None else "")
    name = os.fsdecode(where) if where != "" else "a file"
    err = StorageError(f"{name}: {what}; {fix}")
    err.errno = e.errno  # (the file name stays in the message: setting .filename would change str(err))
    return err


NETWORK_FIX = ("if the job hangs or times out at start or in its first steps, the ranks probably cannot reach each "
               "other on the network interface NCCL/gloo chose: export GLOO_SOCKET_IFNAME=IFACE NCCL_SOCKET_IFNAME=IFACE "
               "(the interface holding the --rdzv-endpoint address; `ip -brief addr` lists them) on every node, check that "
               "--rdzv-endpoint is reachable from every node, and see NCCL_DEBUG=INFO; if one rank died (out of memory, "
               "killed), its own log says why — restart with `torchrun --max-restarts N ... --resume auto`")


class DistributedError(StdannError, RuntimeError):
    """A collective or the rendezvous failed (a rank died, timed out, or the network is wrong)."""


# torch.distributed's errors (named, so that this module does not import torch): a rank that died,
# a collective that timed out, a rendezvous that failed
_DIST_ERRORS = {"DistError", "DistBackendError", "DistNetworkError", "DistStoreError"}


def as_user_error(e: BaseException) -> StdannError | None:
    """The user-facing form of ``e`` (itself, a storage error, or a failed collective under torchrun),
    or None when ``e`` is a bug."""
    if isinstance(e, StdannError):
        return e
    if _DIST_ERRORS & {c.__name__ for c in type(e).__mro__} or (
            isinstance(e, RuntimeError) and "gloo" in str(e).lower() and "timed out" in str(e).lower()):
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        return DistributedError(f"a collective between the ranks failed ({type(e).__name__}: {first}); {NETWORK_FIX}")
    if isinstance(e, OSError):
        return storage_error(e)
    return None

"""One process at a time per folder: an OS file lock (``filelock``) on ``FOLDER/.stdann.lock``.

The lock is an ``flock`` on the lock file: the kernel drops it when its process ends, however it
ends (kill -9 included), so a lock is never stale and never needs breaking by hand. The file
itself stays behind (removing a lock file can let two processes lock two different files). Within
one process the lock is re-entrant: the demo holds its run folder and the training stages it
calls take the same lock again without blocking themselves.

While held, the lock file names its holder (pid, host, command), so that a second process can say
who has the folder.

Some cluster file systems have no ``flock`` (Lustre mounted without ``-o flock``, NFSv3 without
lockd: ``ENOLCK`` / ``EOPNOTSUPP``). There the lock is a file created atomically
(``O_CREAT | O_EXCL``, :data:`OWNER_NAME`) that names its owner's host, pid and start time, and is
removed when the lock is released; one left by a process that died on this host is taken over,
one of another host is reported with the way to remove it. A line says which lock is in use.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout

from stdann.fileio import pid_alive
from stdann.runs.errors import FolderInUse, RunFolderError

LOCK_NAME = ".stdann.lock"
OWNER_NAME = ".stdann.lock.owner"  # the lock where the file system has no flock
NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP)
_told_no_flock: set[str] = set()

_held: dict[str, tuple[FileLock, int]] = {}  # real path of a lock file -> (lock, depth) in this process


def lock_file(folder: str | Path) -> Path:
    return Path(folder) / LOCK_NAME


def _key(folder: Path) -> str:
    return os.path.realpath(lock_file(folder))


def holds(folder: str | Path) -> bool:
    """Whether this process holds ``folder``'s lock."""
    return _key(Path(folder)) in _held


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f" (process {int(info['pid'])} on {info['host']}, since {info['since']}: {info['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _sign(path: Path) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:])[:300]}
    with contextlib.suppress(OSError):
        with open(path, "w") as f:
            f.write(json.dumps(info))


def held_elsewhere(folder: str | Path) -> str | None:
    """When another process holds ``folder``'s lock: who (``" (process … on …)"``, or ``""``); else None.
    Probes with a read-only descriptor, so the holder's lock file is never truncated."""
    path = lock_file(folder)
    if _key(Path(folder)) in _held or path.is_symlink() or not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder(path)
    except OSError:
        return None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextlib.contextmanager
def folder_lock(folder: str | Path) -> Iterator[None]:
    """Hold ``folder``'s lock (creating the folder if needed) or raise :class:`FolderInUse` at once."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunFolderError(f"cannot create {folder} ({e.strerror}): choose a folder you can write to") from None
    key = _key(folder)
    if key in _held:
        lock, depth = _held[key]
        _held[key] = (lock, depth + 1)
        try:
            yield
        finally:
            lock, depth = _held[key]
            _held[key] = (lock, depth - 1)
        return
    path = lock_file(folder)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise RunFolderError(f"{path} is {'a symbolic link' if path.is_symlink() else 'a folder'}, not stdann's lock "
                             "file: stdann writes nothing through it. Remove it (what a link points to is kept)")
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:  # (a subclass of OSError: caught first)
        raise FolderInUse(
            f"{folder} is in use by another stdann process{_holder(lock_file(folder))}; "
            "wait for it to finish or stop it, then run the command again"
        ) from None
    except OSError as e:
        if e.errno not in NO_FLOCK:
            raise _cannot_lock(folder, e) from None
        with _owner_file_lock(folder, key):
            yield
        return
    _sign(lock_file(folder))
    _held[key] = (lock, 1)
    try:
        yield
    finally:
        del _held[key]
        lock.release()


def _cannot_lock(folder: Path, e: OSError) -> RunFolderError:
    return RunFolderError(f"cannot lock {folder} ({e.strerror or e}): stdann writes its lock file "
                          f"{LOCK_NAME} there; choose a folder you can write to")


def _owner_info() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:])[:300]}


@contextlib.contextmanager
def _owner_file_lock(folder: Path, key: str) -> Iterator[None]:
    """The lock where the file system has no flock: ``OWNER_NAME`` created atomically (see the module
    docstring)."""
    path = folder / OWNER_NAME
    if str(folder) not in _told_no_flock:
        _told_no_flock.add(str(folder))
        print(f"[stdann] {folder} is on a file system without flock (Lustre without -o flock, NFSv3 without lockd): "
              f"locking it with the file {OWNER_NAME} instead", file=sys.stderr)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            info = _read_owner(path)
            here = info.get("host") == socket.gethostname()
            if here and isinstance(info.get("pid"), int) and not pid_alive(info["pid"]):
                path.unlink(missing_ok=True)  # its owner died on this host: take it over
                continue
            holder = _holder(path)
            fix = ("" if here else f"; if that process is gone, delete {path}")
            raise FolderInUse(f"{folder} is in use by another stdann process{holder}; wait for it to finish or stop "
                              f"it, then run the command again{fix}") from None
        except OSError as e:
            raise _cannot_lock(folder, e) from None
    else:
        raise FolderInUse(f"{folder} is in use by another stdann process{_holder(path)}")
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(_owner_info()))
    _held[key] = (None, 1)  # type: ignore[assignment]
    try:
        yield
    finally:
        del _held[key]
        path.unlink(missing_ok=True)


def _read_owner(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


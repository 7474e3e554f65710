"""Small file helpers shared by every stage: writes that never leave a half-written file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any, Callable


def temp_path(path: str | Path) -> Path:
    """The temporary file an atomic write of ``path`` uses (beside it, hidden, named after the process)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def is_temp_of(candidate: str, name: str) -> bool:
    """Whether the file name ``candidate`` is a temporary file of an atomic write of ``name``."""
    return candidate.startswith(f".{name}.tmp-")


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, flush it to disk, then rename it over
    ``path``: a crash leaves either the old file or the new one, never a half-written one. On any
    error the temporary file is removed and the error re-raised."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically to ``path``."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda f: f.write(data))


def write_json(path: str | Path, obj: Any, **dumps_kwargs: Any) -> Path:
    """``json.dumps(obj)`` written atomically (indent 2 unless given)."""
    dumps_kwargs.setdefault("indent", 2)
    return atomic_write_text(path, json.dumps(obj, **dumps_kwargs))

"""Small file helpers shared by every stage: writes that never leave a half-written file.

An atomic write goes to a temporary file beside the target (hidden, named after the process),
is flushed to disk, then renamed over the target: a crash leaves the old file or the new one,
never a half-written one. On any error the temporary file is removed, and an error of the disk
(full, read-only, no permission) is raised as a one-line :class:`stdann.errors.StorageError`
naming the target — also when the writer (``torch.save``'s zip writer) hides it behind its own
error. A temporary file left by a process that was killed is removed by :func:`remove_stale_temps`.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
from pathlib import Path
from typing import IO, Any, Callable, Iterable

import numpy as np
import yaml

from stdann.errors import ConfigError, storage_error

_TEMP_MARK = ".tmp-"


def temp_path(path: str | Path) -> Path:
    """The temporary file an atomic write of ``path`` uses (beside it, hidden, named after the process)."""
    path = Path(path)
    return path.with_name(f".{path.name}{_TEMP_MARK}{os.getpid()}")


def is_temp_of(candidate: str, name: str) -> bool:
    """Whether the file name ``candidate`` is a temporary file of an atomic write of ``name``."""
    return candidate.startswith(f".{name}{_TEMP_MARK}")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on this host)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process: alive
    return True


def remove_stale_temps(folder: str | Path, names: Iterable[str]) -> list[Path]:
    """Remove, in ``folder``, the temporary files of atomic writes of ``names`` whose process has
    ended (killed while writing); returns them. Temporary files of live processes are left."""
    folder = Path(folder)
    wanted = set(names)
    removed = []
    if not folder.is_dir() or not wanted:
        return removed
    for p in folder.iterdir():
        name = p.name
        if not name.startswith(".") or _TEMP_MARK not in name or not p.is_file():
            continue
        target, _, pid = name[1:].rpartition(_TEMP_MARK)
        if target in wanted and pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


class _Watched:
    """A file whose ``write`` remembers the OSError it raised (``torch.save`` turns it into a
    RuntimeError about ``inline_container.cc``); every other attribute is the file's."""

    def __init__(self, f: IO[bytes]):
        self._f = f
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self._f.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


def _write_temp(path: Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Write ``path``'s temporary file completely (flushed to disk) and return it; on any error it
    is removed and a storage error is raised as :class:`~stdann.errors.StorageError`."""
    tmp = temp_path(path)
    watched = None
    try:
        with open(tmp, "wb") as f:
            watched = _Watched(f)
            write(watched)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        cause = watched.error if watched is not None and watched.error is not None else e
        user = storage_error(cause, path) if isinstance(cause, OSError) else None
        if user is not None:
            raise user from e
        raise
    return tmp


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, flush it to disk, then rename it over
    ``path`` (see the module docstring)."""
    return atomic_write_many([(path, write)])[0]


def atomic_write_many(items: list[tuple[str | Path, Callable[[IO[bytes]], Any]]]) -> list[Path]:
    """Atomic writes of several files that belong together (a run's positions): every temporary
    file is written first, then all are renamed, so an interruption while writing (the long part)
    leaves every old file as it was."""
    paths = [Path(p) for p, _ in items]
    temps: list[Path] = []
    try:
        for path, (_, write) in zip(paths, items):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                user = storage_error(e, path.parent)
                if user is not None:
                    raise user from e
                raise
            temps.append(_write_temp(path, write))
        for tmp, path in zip(temps, paths):
            try:
                os.replace(tmp, path)
            except OSError as e:
                user = storage_error(e, path)
                if user is not None:
                    raise user from e
                raise
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise
    return paths


def require_writable(folder: str | Path) -> Path:
    """Make ``folder`` (and its parents) and check that this process may write into it, before any
    long work whose results would go there; raises :class:`~stdann.errors.StorageError`."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        user = storage_error(e, folder)
        if user is not None:
            raise user from e
        raise
    if not os.access(folder, os.W_OK):
        err = OSError(errno.EROFS if _read_only(folder) else errno.EACCES, "not writable", str(folder))
        raise storage_error(err, folder) from None
    return folder


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically to ``path``."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda f: f.write(data))


def _finite(x: Any) -> Any:
    """``x`` with every NaN or ±inf float replaced by None (JSON has neither)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def write_json(path: str | Path, obj: Any, **dumps_kwargs: Any) -> Path:
    """``json.dumps(obj)`` written atomically (indent 2 unless given). Always strict JSON: a NaN or
    ±inf float is written as null (``allow_nan=False`` instead refuses it)."""
    dumps_kwargs.setdefault("indent", 2)
    if dumps_kwargs.pop("allow_nan", True):
        obj = _finite(obj)
    return atomic_write_text(path, json.dumps(obj, allow_nan=False, **dumps_kwargs))


MAX_JSON_BYTES = 256 << 20  # far more than any file stdann writes
MAX_JSON_DEPTH = 64  # stdann's files nest a few levels
MAX_JSON_DIGITS = 40  # an integer or number literal longer than this is damage, not a measurement


def _number(text: str, kind: type) -> Any:
    if len(text) > MAX_JSON_DIGITS:
        raise ValueError(f"a number of {len(text)} characters")
    value = kind(text)
    if kind is float and not math.isfinite(value):
        raise ValueError(f"a number out of range ({text[:20]})")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _depth(data: Any) -> int:
    deepest, stack = 0, [(data, 1)]
    while stack:
        x, d = stack.pop()
        deepest = max(deepest, d)
        if d > MAX_JSON_DEPTH:
            break
        if isinstance(x, dict):
            stack += [(v, d + 1) for v in x.values()]
        elif isinstance(x, list):
            stack += [(v, d + 1) for v in x]
    return deepest


def parse_json(text: str) -> Any:
    """Strict JSON with limits: no NaN/Infinity, numbers of at most :data:`MAX_JSON_DIGITS`
    characters, nesting of at most :data:`MAX_JSON_DEPTH` levels; ``ValueError`` otherwise."""
    try:
        data = json.loads(text, parse_int=lambda s: _number(s, int), parse_float=lambda s: _number(s, float),
                          parse_constant=_refuse_constant)
    except RecursionError:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
    if _depth(data) > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return data


def _read_json_text(path: Path) -> str:
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise ValueError(f"{size:,} bytes")
    return path.read_text(encoding="utf-8")


def read_json_object(path: str | Path, error: type[Exception], fix: str) -> dict:
    """The JSON object in ``path``. A file that cannot be read, is not JSON (strictly, within the
    limits of :func:`parse_json`) or holds something other than an object raises ``error`` with one
    line naming the file, why, and ``fix`` (what the user does about it): "cannot read PATH (why):
    the file is damaged; FIX"."""
    path = Path(path)
    try:
        data = parse_json(_read_json_text(path))
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        why = " ".join(str(e).split())[:120] or type(e).__name__
        raise error(f"cannot read {path} ({why}): the file is damaged; {fix}") from None
    if not isinstance(data, dict):
        raise error(f"cannot read {path} (a JSON {type(data).__name__}, not an object): the file is damaged; {fix}")
    return data


def read_json_cache(path: str | Path) -> dict:
    """A JSON object that can be made again (a cached measurement, a status line): ``{}`` when the
    file is absent, unreadable or damaged, so that the caller makes it again."""
    try:
        data = parse_json(_read_json_text(Path(path)))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def jsonable(x: Any, inf_as_text: bool = True) -> Any:
    """``x`` with numpy types made plain (arrays as lists), NaN as None, and ±inf as the strings
    "inf" / "-inf" (``inf_as_text``, metrics.json) or as None (study files)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v, inf_as_text) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v, inf_as_text) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist(), inf_as_text)
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        if math.isnan(x):
            return None
        if math.isinf(x):
            return ("inf" if x > 0 else "-inf") if inf_as_text else None
        return x
    return x


# YAML is read with one loader (parse_yaml): safe (a ``!!python`` tag is refused, nothing is ever
# constructed or run), with YAML 1.2 numbers, so ``1e-4`` and ``1e10`` are numbers, and without
# aliases (``*name``): a few hundred bytes of nested aliases expand to gigabytes ("billion laughs"),
# and a configuration never needs them.
class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, plus the floats YAML 1.1 reads as strings (``1e-4``, ``1e10``, ``.5e3``),
    minus aliases (refused where they appear, before anything is expanded)."""

    def compose_node(self, parent, index):  # noqa: D102 - PyYAML's hook
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "an alias (*name): stdann configurations do not use anchors and aliases; write the value out",
                self.peek_event().start_mark)
        return super().compose_node(parent, index)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


MAX_YAML_BYTES = 1 << 20  # a configuration is a few kB; more is not a configuration
MAX_YAML_DEPTH = 32  # nesting of mappings and lists (a configuration needs 3)

def _depth(node: yaml.Node) -> int:
    deepest, stack = 0, [(node, 1)]
    while stack:
        n, d = stack.pop()
        deepest = max(deepest, d)
        if d > MAX_YAML_DEPTH:
            return d
        if isinstance(n, yaml.SequenceNode):
            stack += [(c, d + 1) for c in n.value]
        elif isinstance(n, yaml.MappingNode):
            stack += [(v, d + 1) for _, v in n.value]
    return deepest


def parse_yaml(text: str) -> Any:
    """YAML text → plain Python values (raises ``yaml.YAMLError``; see the module docstring).
    Refused as a ``yaml.YAMLError``: more than :data:`MAX_YAML_BYTES`, aliases, nesting deeper
    than :data:`MAX_YAML_DEPTH`."""
    if len(text) > MAX_YAML_BYTES:
        raise yaml.YAMLError(f"{len(text):,} characters: a stdann configuration is a few kilobytes "
                             f"(at most {MAX_YAML_BYTES:,} characters are read)")
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise yaml.YAMLError(f"nesting deeper than {MAX_YAML_DEPTH} levels: not a stdann configuration") from None
        if node is None:
            return None
        if _depth(node) > MAX_YAML_DEPTH:
            raise yaml.YAMLError(f"nesting deeper than {MAX_YAML_DEPTH} levels: not a stdann configuration")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def yaml_problem(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    problem = getattr(e, "problem", None) or (str(e).splitlines() or [type(e).__name__])[0]
    if "!!python" in str(e) or "tag:yaml.org,2002:python" in str(e):
        problem = "a !!python tag (stdann configurations hold plain values only; nothing is ever constructed or run)"
    return f"{at}: {problem}"


def read_yaml(path: str | Path, what: str = "config file") -> Any:
    """The YAML content of a file, or a :class:`ConfigError` naming the file, where it is broken and
    the fix (a missing file, binary data, malformed YAML, a ``!!python`` tag)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} {p} does not exist{' (it is a folder)' if p.is_dir() else ''}; check the path")
    raw = p.read_bytes()
    try:
        if b"\x00" in raw:
            raise UnicodeDecodeError("utf-8", raw, raw.index(b"\x00"), raw.index(b"\x00") + 1, "NUL byte")
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {p} is not a text file (binary data): it is not YAML or it is damaged; "
                          "give a YAML file of config sections (e.g. optim: {batch_size: 64})") from None
    try:
        return parse_yaml(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {p} is not valid YAML{yaml_problem(e)}; fix that line "
                          "(e.g. optim: {batch_size: 64})") from None

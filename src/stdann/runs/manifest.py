"""The manifest of a stdann folder and the one guard on every path stdann writes or deletes there.

The manifest ``FOLDER/.stdann-files`` lists, one relative path per line, every file stdann wrote
in the folder. A path is entered *before* its file is written, so a crash never leaves a file of
stdann's that the manifest does not know. Rules:

* the manifest is read whole and strictly (:func:`read_manifest`): a line that is not a clean
  relative path (``..``, an absolute path, a NUL or other control character, a name too long for
  a file system) makes the whole file damaged, and a damaged manifest stops every write and every
  delete with one line naming it — nothing is deleted on the word of a damaged record;
* a path is used only through :func:`guarded_path`, which refuses any path whose folders below
  the root are symbolic links or files: a write or a delete never leaves the real folder, and a
  link a user put there is never followed (a link itself is never stdann's: stdann writes none);
* stdann's bookkeeping files (marker, manifest, lock) must be plain files, never links.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from stdann.errors import shown
from stdann.fileio import atomic_write_text
from stdann.runs.errors import RunFolderError

MANIFEST = ".stdann-files"
MAX_PATH_CHARS = 1024  # a path stdann writes is far shorter; longer is damage
MAX_NAME_BYTES = 255  # the longest file name common file systems allow
MAX_MANIFEST_BYTES = 32 << 20  # a million long paths; more is not a manifest


class ManifestError(RunFolderError):
    """A damaged manifest, or a path stdann must not write or delete (through a link, outside the folder)."""


def clean_rel(rel: str) -> str:
    """``rel`` as a normalised relative path (``a/b``); ``ValueError`` for anything that is not a
    plain path inside a folder: empty, absolute, ``..``, control characters, over-long names."""
    text = str(rel)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError(f"a path with a control character: {shown(text)}")
    if len(text) > MAX_PATH_CHARS:
        raise ValueError(f"a path of {len(text):,} characters (at most {MAX_PATH_CHARS})")
    parts = [p for p in text.replace(os.sep, "/").split("/") if p not in ("", ".")]
    if not parts or text.startswith("/") or ".." in parts:
        raise ValueError(f"not a path inside the folder: {shown(text)}")
    if any(len(p.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES for p in parts):
        raise ValueError(f"a name longer than {MAX_NAME_BYTES} bytes in {shown(text)}")
    return "/".join(parts)


def _damaged(path: Path, why: str) -> ManifestError:
    return ManifestError(
        f"{path} is damaged ({why}): it is stdann's record of the files it wrote in {path.parent}, so stdann will "
        f"delete or replace nothing there. Restore it (or remove the bad line), or move your own files out of "
        f"{path.parent} and delete that folder yourself, or choose another folder"
    )


def bookkeeping_ok(path: Path) -> None:
    """Refuse a bookkeeping file (marker, manifest, lock) that is a link or a folder."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        kind = "a symbolic link" if path.is_symlink() else "a folder"
        raise ManifestError(f"{path} is {kind}, not stdann's file: stdann writes nothing through it. Remove it "
                            f"(what a link points to is kept), or choose another folder")


def read_manifest(folder: str | Path) -> list[str]:
    """The paths of ``folder``'s manifest, in order, without repeats (``[]`` when there is none);
    a damaged manifest raises :class:`ManifestError` naming the first bad line."""
    path = Path(folder) / MANIFEST
    if not path.exists() and not path.is_symlink():
        return []
    bookkeeping_ok(path)
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise _damaged(path, f"{size:,} bytes, far more than stdann writes")
        raw = path.read_bytes()
    except OSError as e:
        raise ManifestError(f"cannot read {path} ({e.strerror or e}): fix its permissions, or choose another folder") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise _damaged(path, f"line {line} is not text") from None
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # a last line cut short by a crash mid-append: never written
    out, seen = [], set()
    for i, line in enumerate(text.split("\n")[:-1], start=1):
        try:
            rel = clean_rel(line)
        except ValueError as e:
            raise _damaged(path, f"line {i} is {e}") from None
        if rel not in seen:
            seen.add(rel)
            out.append(rel)
    return out


def append_manifest(folder: str | Path, rel: str) -> None:
    """Add ``rel`` (already clean) as the manifest's last line, flushed to disk."""
    path = Path(folder) / MANIFEST
    bookkeeping_ok(path)
    with open(path, "a", encoding="utf-8") as f:
        if f.tell() > 0:
            with open(path, "rb") as r:  # a last line cut short by a crash: end it before appending
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    f.write("\n")
        f.write(rel + "\n")
        f.flush()
        os.fsync(f.fileno())


def write_manifest(folder: str | Path, rels: Iterable[str]) -> None:
    """Replace the manifest (atomically) with ``rels``."""
    path = Path(folder) / MANIFEST
    bookkeeping_ok(path)
    atomic_write_text(path, "".join(r + "\n" for r in rels))


def link_in(root: Path, rel: str, *, include_last: bool) -> Path | None:
    """The first of ``root/rel``'s folders (and, with ``include_last``, the path itself) that is a
    symbolic link or a file in the way of a folder, or None."""
    p = root
    parts = rel.split("/")
    for i, part in enumerate(parts):
        p = p / part
        last = i == len(parts) - 1
        if last and not include_last:
            break
        if p.is_symlink():
            return p
        if not last and p.exists() and not p.is_dir():
            return p
    return None


def guarded_path(root: Path, rel: str, *, what: str) -> Path:
    """``root/rel`` for ``what`` ("write", "delete"): refused with one line when the path passes
    through a symbolic link or a file below ``root``, is a link itself, or resolves outside ``root``."""
    bad = link_in(root, rel, include_last=True)
    if bad is not None:
        kind = "a symbolic link" if bad.is_symlink() else "a file where a folder should be"
        raise ManifestError(f"{bad} is {kind}: stdann will not {what} {root / rel} through it. Remove it (what a "
                            f"link points to is kept) or move it away, then run the command again")
    target = root / rel
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(target.parent)]) != real_root:
        raise ManifestError(f"{target} resolves outside {root}: stdann will not {what} it")
    return target

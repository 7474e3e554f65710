"""Errors of run folders: each message names the folder or file, the problem and the fix."""

from __future__ import annotations

from stdann.errors import StdannError


class RunFolderError(StdannError, RuntimeError):
    """A folder that cannot be used as asked (not a stdann run, nothing to resume, a file stdann
    did not write in the way, ...)."""


class RunExistsError(RunFolderError):
    """``--out`` already holds a run and neither ``--resume`` nor ``--overwrite`` was given."""


class FolderInUse(RunFolderError):
    """Another live process holds the folder's lock."""

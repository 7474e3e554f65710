"""Run folders: the one owner of their layout, marker, manifest, lock, writes and checkpoints.

Layer rule (docs/architecture.md, "Layers"): ``stdann.runs`` imports only the layers below it
(``config``, ``topography``, ``data``, ``models`` and the core modules) — never ``training``,
``reports``, ``orchestration`` or ``cli``, so that analysis can read runs without importing training.
"""

from stdann.runs.checkpoint import FORMAT, CheckpointError, load_backbone
from stdann.runs.errors import FolderInUse, RunExistsError, RunFolderError
from stdann.runs.folder import RunFolder
from stdann.runs.lock import folder_lock
from stdann.runs.training import training_folder

__all__ = ["FORMAT", "CheckpointError", "FolderInUse", "RunExistsError", "RunFolder", "RunFolderError",
           "folder_lock", "load_backbone", "training_folder"]

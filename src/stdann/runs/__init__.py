"""Run folders: the one owner of their layout, marker, manifest, lock, writes and checkpoints.

Layer rule: ``stdann.runs`` may import ``stdann.config``, ``models``, ``topography``, ``data`` and
``fileio`` — never ``training``, ``ephys``, ``reports`` or ``cli``, so that analysis can read runs
without importing training.
"""

from stdann.runs.checkpoint import FORMAT, CheckpointError, load_backbone
from stdann.runs.errors import FolderInUse, RunExistsError, RunFolderError
from stdann.runs.folder import RunFolder, training_folder
from stdann.runs.lock import folder_lock

__all__ = ["FORMAT", "CheckpointError", "FolderInUse", "RunExistsError", "RunFolder", "RunFolderError",
           "folder_lock", "load_backbone", "training_folder"]

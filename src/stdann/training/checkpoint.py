"""Moved to :mod:`stdann.runs.checkpoint` (the run folder owns the checkpoint format). This module
only keeps old imports working; import from ``stdann.runs.checkpoint`` in new code."""

from stdann.runs.checkpoint import (  # noqa: F401 - re-exported for old imports
    FORMAT,
    CheckpointError,
    atomic_save,
    backbone_state,
    checkpoint_path,
    config_from_checkpoint,
    describe_mismatch,
    load_backbone,
    load_state_checked,
    safe_load,
)

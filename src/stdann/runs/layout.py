"""Every name of a run folder's layout (paths relative to the run folder), in one place.

::

    config.yaml               the resolved Config
    run.json                  status, step, versions, the writing process
    checkpoints/last.pt       training state; init.pt = the step-0 weights; step_NNNNNN.pt snapshots
    positions/<block>.npz     unit positions (LayerPositions)
    logs/train.csv, logs/tb/  training log, TensorBoard events
    swap.json, pretrain/      the recipe's swap summary and its contrastive-only run (a run folder)
    metrics.json, tables/, figures/, report.html    analysis and report outputs
    .stdann-run, .stdann-files, .stdann.lock    the marker, the manifest, the lock
"""

from stdann.runs.lock import LOCK_NAME
from stdann.runs.manifest import MANIFEST

MARKER = ".stdann-run"
STAGING_PREFIX = ".stdann-staging-"  # + pid: outputs being written, moved into place by RunFolder.publish
BOOKKEEPING = (MARKER, MANIFEST, LOCK_NAME)

CONFIG = "config.yaml"
STATUS = "run.json"
CHECKPOINTS = "checkpoints"
POSITIONS = "positions"
LOGS = "logs"
TRAIN_LOG = "logs/train.csv"
TENSORBOARD = "logs/tb"
SWAP = "swap.json"
PRETRAIN = "pretrain"
METRICS = "metrics.json"
TABLES = "tables"
FIGURES = "figures"
REPORT = "report.html"
CONDITION = "condition.json"

TRAINING_STATE = (CONFIG, STATUS, CHECKPOINTS, LOGS)  # what a training run writes about itself
TRAINING_INPUTS = (POSITIONS, SWAP, PRETRAIN)  # kept by `train --overwrite`: the run's inputs
LOG_HEADER = "step,epoch,lr,loss"  # how stdann's train.csv starts

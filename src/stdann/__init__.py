"""stdann — spatiotemporal topographic deep networks.

A 3D ResNet-18 whose units sit on simulated cortical sheets, trained on video with Momentum
Contrast plus a spatial loss, and probed with in-silico electrophysiology (drifting gratings,
random dots, plaids) to measure direction tuning, direction maps and pinwheels.

Pipeline, one sub-package per stage (their import order: docs/architecture.md, "Layers"):

- :mod:`stdann.models`      — the 3D ResNet-18 backbone and the MoCo wrapper
- :mod:`stdann.topography`  — cortical sheets, unit positions, neighborhoods, spatial loss, swaps
- :mod:`stdann.data`        — built-in generated video, video folders, clip cache, augmentation
- :mod:`stdann.runs`        — the run folder: layout, marker, lock, safe writes, checkpoints
- :mod:`stdann.training`    — the training loop and step, schedule, logging, readouts, benchmark
- :mod:`stdann.ephys`       — stimuli, recording, tuning metrics, population bias, maps, pinwheels
- :mod:`stdann.reports`     — figures, the HTML report (Jinja2 templates), Markdown tables
- :mod:`stdann.orchestration` — pipelines that tie training, ephys and reports together (analysis,
  recipe, demo, studies)
- :mod:`stdann.cli`         — the ``stdann`` command
"""

__version__ = "0.1.0"

# The one statement of the direction convention (stimuli, metrics, maps, figures, reports).
DIRECTION_CONVENTION = (
    "0° = motion to the right (increasing column), 90° = motion upward on the screen "
    "(decreasing row), angles counter-clockwise"
)

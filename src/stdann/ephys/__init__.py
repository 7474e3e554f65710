"""In-silico electrophysiology: stimuli, recording, tuning metrics, sheet maps, run analysis.

Modules: ``stimuli`` (gratings, plaids, random-dot kinematograms as model-input clips),
``recording`` (time-averaged block responses), ``tuning`` (DSI, DI, CV, axial ratio, bandwidth,
pattern/component index, bootstrap CIs), ``maps`` (direction/axial maps, column spacing,
pinwheels, smoothness, controls), ``analyze`` (``analyze_run``), ``reference/macaque_mt.yaml``.

Direction convention: 0° = motion to the right (increasing column index), 90° = motion upward on
the screen (decreasing row index), counter-clockwise. (Submodules are imported explicitly, so that
``stdann.config`` can import ``stdann.ephys.config`` without loading torch-heavy code.)
"""

"""In-silico electrophysiology: stimuli, recording, tuning metrics, sheet maps, the analysis record.

Modules: ``stimuli`` (gratings, plaids, random-dot kinematograms and the blank screen as
model-input clips), ``recording`` (time-averaged block responses, BatchNorm re-estimation),
``sampling`` (each block's strides read from the network; which grating conditions it samples
without aliasing, phases, dot-field offsets), ``controls`` (hand-built direction-blind and
motion-energy networks: tests of the measurement), ``tuning`` (DSI, DI, CV,
axial ratio, bandwidth, pattern/component index, exact CIs), ``population`` (population direction
bias R and its chance level), ``maps`` (direction/axial maps, kernel choice, column spacing,
pinwheels, smoothness, controls), ``analyze`` (one block / one network, the metrics.json record),
``verdicts`` (trained vs untrained, map order), ``registry`` (the one list of reported metrics),
``macaque`` (``reference/macaque_mt.yaml`` and the comparison rows), ``outputs`` (metrics.json and
tables). ephys computes and writes numbers; it imports neither training nor reports (loading a
run's networks and drawing figures is ``stdann.orchestration.run_analysis``'s).

Direction convention: 0° = motion to the right (increasing column index), 90° = motion upward on
the screen (decreasing row index), counter-clockwise. (Submodules are imported explicitly, so that
``stdann.config`` can import ``stdann.ephys.config`` without loading torch-heavy code.)
"""

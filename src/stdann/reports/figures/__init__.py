"""Every figure stdann draws (matplotlib object API on the Agg canvas; no pyplot state).

``run`` (all figures of an analysed run), ``maps`` (unit-level and smoothed maps, smoothness),
``tuning`` (polar tuning curves, histograms), ``study`` (sweep and emergence studies),
``training`` (training curve), ``positions`` (unit positions on a sheet, swap before/after), ``common`` (canvas, footer, hues).
"""

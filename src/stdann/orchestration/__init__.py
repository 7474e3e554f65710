"""Orchestration: the pipelines that tie the layers together (above training, ephys and reports).

``analysis`` (``analyze_run``: load a run's networks, record and compute with ``stdann.ephys``,
write metrics.json and tables, draw figures with ``stdann.reports.figures``; ``evaluate_network``
for studies), ``ephys_benchmark`` (``stdann bench ephys``). Nothing below this package imports it,
except ``stdann.orchestration.study``, which runs trainings and their analyses and belongs here.
"""

"""Orchestration: the pipelines that tie the layers together (above training, ephys and reports).

``analysis`` (``analyze_run``: load a run's networks, record and compute with ``stdann.ephys``,
write metrics.json and tables, draw figures with ``stdann.reports.figures``; ``evaluate_network``
for studies), ``recipe`` (pretraining → positions → swaps → joint training; the one swap stage),
``demo`` (``stdann demo``), ``study`` (``stdann sweep`` / ``emergence``), ``protocol``
(``stdann study``), ``ephys_benchmark`` (``stdann bench ephys``). Only ``stdann.cli`` imports this
package (docs/architecture.md, "Layers").
"""

"""Checkpoints: atomic writes, safe loads (``weights_only=True``), and the backbone of a run.

Filled in by the training stage; the functions named in docs/architecture.md are the contract.
"""

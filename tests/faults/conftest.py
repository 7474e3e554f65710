"""The fault-injection suite: every test here counts trials (most are marked slow; the hostile-input rows
of test_hostile.py run in the default tier).

Each test records one row of ``docs/reliability.md`` — what was done, how many trials, how many held —
through the ``ledger`` fixture, then asserts that every trial held. At the end of the session the rows
are printed as a Markdown table (and written as JSON to ``$STDANN_FAULTS_TABLE`` when that is set).

Reproduce everything: ``pytest -m slow tests/faults``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from fault_helpers import ROWS, Row

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))  # the video helpers of the data tests


# A test here runs tens to hundreds of commands (an hour and more on a busy 2-core machine): the project's
# per-test limit (pyproject: timeout = 900) would stop it half-way. Every command it runs has its own
# time limit (fault_helpers.stdann, communicate(timeout=...)); the test as a whole gets hours.
TEST_TIMEOUT_S = 6 * 3600


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT_S))


@pytest.fixture
def ledger(request):
    """``ledger(name)`` → a :class:`Row` recorded for the summary table (command = this test's node id)."""

    def make(name: str, note: str = "") -> Row:
        node = request.node.nodeid.split("[")[0]
        tier = "-m slow " if request.node.get_closest_marker("slow") else ""
        row = Row(name, f"pytest {tier}'{node}'", note=note)
        ROWS.append(row)
        return row

    request.addfinalizer(_write_table)  # row by row: a suite stopped half-way keeps what it measured
    return make


def _write_table() -> None:
    path = os.environ.get("STDANN_FAULTS_TABLE")
    if path:
        Path(path).write_text(json.dumps([r.__dict__ for r in ROWS], indent=1))


def pytest_terminal_summary(terminalreporter):
    if not ROWS:
        return
    tr = terminalreporter
    tr.write_sep("=", "fault-injection summary (docs/reliability.md)")
    tr.write_line("| fault | trials | held | failed | reproduce |")
    tr.write_line("|---|---|---|---|---|")
    for r in ROWS:
        tr.write_line(f"| {r.name}{f' ({r.note})' if r.note else ''} | {r.trials} | {r.held} | {r.trials - r.held} "
                      f"| `{r.command}` |")
    path = os.environ.get("STDANN_FAULTS_TABLE")
    if path:
        Path(path).write_text(json.dumps([r.__dict__ for r in ROWS], indent=1))

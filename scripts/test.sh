#!/usr/bin/env bash
# Run the test suite (creates the environment if missing). Extra arguments go to pytest.
#   bash scripts/test.sh            every test but the slow ones (what CI runs; ~2.5 min on 2 cores)
#   bash scripts/test.sh --fast     also skips the heavy ones (whole commands in subprocesses): the inner loop
#   bash scripts/test.sh -m slow    the slow tier: the fault-injection suite and torchrun runs (hours)
#   bash scripts/test.sh tests/models/test_r3d.py
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$(bash "$root/scripts/env.sh" | tail -n 1)"
cd "$root"
if [ "${1:-}" = "--fast" ]; then shift; set -- -m "not slow and not heavy" "$@";
elif [ $# -eq 0 ]; then set -- -m "not slow"; fi
# tests/reports/test_report.py renders the HTML report in a real headless browser. As root, install
# Debian's chromium if it is missing (best effort; the test fails when root and it is still
# missing, and skips with a reason when not root).
if [ "$(id -u)" -eq 0 ]; then
  command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || true
fi
exec "$py" -m pytest -q "$@"

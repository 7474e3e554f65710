#!/usr/bin/env bash
# Run the test suite (creates the environment if missing). Extra arguments go to pytest,
# e.g.  bash scripts/test.sh -m slow   or   bash scripts/test.sh tests/test_models.py
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$(bash "$root/scripts/env.sh" | tail -n 1)"
cd "$root"
if [ $# -eq 0 ]; then set -- -m "not slow"; fi
exec "$py" -m pytest -q "$@"

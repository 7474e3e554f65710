#!/usr/bin/env bash
# The end-to-end demo on built-in generated video (creates the environment if missing).
# Extra arguments go to `stdann demo`, e.g.  bash scripts/demo.sh --preset smoke --out runs/smoke
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$(bash "$root/scripts/env.sh" | tail -n 1)"
cd "$root"
exec "$py" -m stdann demo "$@"

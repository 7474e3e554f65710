#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment if it is missing or stale.
# Usage: source-free; prints the python to use on its last line:  PY=$(bash scripts/env.sh | tail -1)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${STDANN_VENV:-$root/.venv}"
torch_req="${STDANN_TORCH:-torch==2.13.0}"
stamp="$venv/.stdann-stamp"
want="$(cat "$root/pyproject.toml" "$root/scripts/env.sh" | sha256sum | cut -c1-16)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[stdann] setting up environment in $venv (one time, a few minutes)" >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2
  # Torch first, pinned: an unpinned torch would pull several GB of CUDA packages.
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$torch_req" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -e "$root[test]" >&2
  echo "$want" > "$stamp"
fi
echo "$venv/bin/python"

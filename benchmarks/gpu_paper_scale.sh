#!/usr/bin/env bash
# Paper-scale GPU figures for docs/benchmarks.md, in one command (needs a CUDA GPU):
#
#   bash benchmarks/gpu_paper_scale.sh [RESULTS_DIR]        (default: $OUT or benchmarks/results)
#
# Runs, each printing one JSON object (also saved as RESULTS_DIR/<name>.json):
#   1. train_paper        bench train, paper preset (batch 256 pairs = 512 clips of 16x112², width 64,
#                         queue 65,536, spatial loss 8 blocks x 4 neighborhoods): optimised step vs the
#                         plain fp32/eager baseline vs alpha=0. The fp32 baseline may not fit in 80 GB at
#                         batch 256; it is then reported as "error" and step 2 gives the ratio.
#   2. train_paper_b64    the same at batch 64 pairs (both variants fit): optimised / baseline ratio.
#   3. train_paper_tuned  optimised step only, torch.compile + cudnn.benchmark (what the trainer could use).
#   4. ephys_paper        bench ephys, paper preset: record + analyse all eight blocks, full stimulus set.
# Paste the printed tables into docs/benchmarks.md ("Training step" and "Electrophysiology").
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
RES=${1:-${OUT:-benchmarks/results}}
mkdir -p "$RES"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch: this script measures GPU figures only')"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit,driver_version --format=csv | tee "$RES/gpu.txt" || true
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())" | tee -a "$RES/gpu.txt"

run() {
  local name=$1; shift
  echo "== $name: stdann $*" >&2
  if $PY -m stdann "$@" --json > "$RES/$name.json"; then
    cat "$RES/$name.json"; echo
    $PY - "$RES/$name.json" <<'PYEOF' >&2
import json, sys
r = json.load(open(sys.argv[1]))
if r["benchmark"] == "train":
    from stdann.training.benchmark import format_train as f
else:
    from stdann.orchestration.ephys_benchmark import format_ephys as f
print(f(r))
PYEOF
  else
    echo "!! $name failed (see above)" >&2
  fi
}

run train_paper       bench train --preset paper --device cuda --steps 20 --warmup 5
run train_paper_b64   bench train --preset paper --device cuda --steps 20 --warmup 5 --batch-size 64 --no-ablation
run train_paper_tuned bench train --preset paper --device cuda --steps 20 --warmup 15 --no-baseline --no-ablation \
                      --cudnn-benchmark --set train.compile=true
run ephys_paper       bench ephys --preset paper --device cuda
echo "results in $RES" >&2

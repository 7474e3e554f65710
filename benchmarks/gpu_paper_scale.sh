#!/usr/bin/env bash
# Paper-scale GPU protocol for short allocations (every call ends within CALL_MINUTES, default 9):
#
#   bash benchmarks/gpu_paper_scale.sh session       # the first GPU session in ONE call (<= CALL_MINUTES): positions once,
#                                                    # bench 256 pairs (no baseline) and 64 pairs (with it), a 2-step
#                                                    # profiler table, ~SESSION_TRAIN_MINUTES of paper-scale training at
#                                                    # alpha 0.25 with held-out top-1 every 100 steps; one tar in $OUT
#   bash benchmarks/gpu_paper_scale.sh bench         # (a) trainer's step vs plain fp32 baseline vs alpha=0, paper batch
#   bash benchmarks/gpu_paper_scale.sh bench-b64     #     the same at 64 pairs/step (an fp32 baseline that fits)
#   bash benchmarks/gpu_paper_scale.sh bench-compile #     the trainer's step with train.compile=true
#   bash benchmarks/gpu_paper_scale.sh bench-ephys   #     bench ephys, paper preset
#   bash benchmarks/gpu_paper_scale.sh train         # (b) paper-scale training, continued by every call
#   bash benchmarks/gpu_paper_scale.sh analyze       # (c) electrophysiology of the trained network beside the untrained one
#   bash benchmarks/gpu_paper_scale.sh status        #     where the run stands (no GPU work)
#   bash benchmarks/gpu_paper_scale.sh all           #     everything in order, on a machine without a per-call limit
#
# Needs only python3 with torch (+ numpy, scipy, PyYAML, tqdm; matplotlib and Jinja2 for `analyze`):
# no PyAV (the data is the built-in generated video), no pip install; it runs `python3 -m stdann` with
# PYTHONPATH=src. `train` runs, one after the other, as far as the call's time allows:
#   1. RUN/pretrain  contrastive-only pretraining (alpha = 0), PRE_STEPS steps
#   2. RUN/joint/positions  swap pre-optimisation of positions on the pretrained network (only with SWAP_STEPS > 0)
#   3. RUN/joint     joint training, alpha = ALPHA, from the pretrained weights (train.init_from), JOINT_STEPS steps
# Each training gets train.max_minutes = what is left of the call minus RESERVE_MINUTES (model set-up and the
# final checkpoint) and stops in time with a checkpoint; the next call resumes it (--resume). The stages are
# the recipe's (stdann demo), run as separate commands so that each is time-bounded.
#
# Where things go: RUN (default runs/gpu-paper, git-ignored) holds the checkpoints (~0.4 GB each at paper
# scale): it must stay on the machine between calls. Small results (bench JSON, train.csv, run.json,
# metrics.json, tables, figures, report.html) are copied to RES = $OUT/gpu_paper_scale (or
# benchmarks/results/gpu_paper_scale without $OUT) after every call.
#
# Settings (environment): PRESET (paper), DEVICE (cuda), ALPHA (0.25), PRE_STEPS (30 % of the preset's
# schedule, as the recipe), JOINT_STEPS (the rest), SWAP_STEPS (0), CALL_MINUTES (9), RESERVE_MINUTES (2.5),
# BENCH_STEPS (10), BENCH_WARMUP (3), STIMULI ("gratings rdk plaids"), PYTHON; for `session`: SESSION_BATCH (256),
# B64 (64, the batch of the baseline comparison), SESSION_STEPS (3000, the schedule's length: the warm-up is 5 % of
# it), SESSION_TRAIN_MINUTES (4). SMOKE=1: the smoke preset on
# the CPU, a few steps, RUN = runs/gpu-paper-smoke (a dry run of every stage, seconds to minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi

CMD=${1:-help}
if [ "${SMOKE:-0}" = 1 ]; then
  PRESET=${PRESET:-smoke}; DEVICE=${DEVICE:-cpu}; PRE_STEPS=${PRE_STEPS:-3}; JOINT_STEPS=${JOINT_STEPS:-3}
  SWAP_STEPS=${SWAP_STEPS:-2}; BENCH_STEPS=${BENCH_STEPS:-2}; BENCH_WARMUP=${BENCH_WARMUP:-1}
  STIMULI=${STIMULI:-gratings}; RUN=${2:-runs/gpu-paper-smoke}; EXTRA_SET=(--set train.threads=1)
else
  PRESET=${PRESET:-paper}; DEVICE=${DEVICE:-cuda}; SWAP_STEPS=${SWAP_STEPS:-0}
  BENCH_STEPS=${BENCH_STEPS:-10}; BENCH_WARMUP=${BENCH_WARMUP:-3}
  STIMULI=${STIMULI:-gratings rdk plaids}; RUN=${2:-runs/gpu-paper}; EXTRA_SET=()
fi
ALPHA=${ALPHA:-0.25}
if [ "${SMOKE:-0}" = 1 ]; then B64=${B64:-4}; SESSION_BATCH=${SESSION_BATCH:-8}; SESSION_STEPS=${SESSION_STEPS:-6}; SESSION_TRAIN_MINUTES=${SESSION_TRAIN_MINUTES:-1}
else SESSION_BATCH=${SESSION_BATCH:-256}; SESSION_STEPS=${SESSION_STEPS:-3000}; SESSION_TRAIN_MINUTES=${SESSION_TRAIN_MINUTES:-4}; fi
CALL_MINUTES=${CALL_MINUTES:-9}
RESERVE_MINUTES=${RESERVE_MINUTES:-2.5}
RES=${OUT:-$ROOT/benchmarks/results}/gpu_paper_scale
# session: the results gather beside the run and only their tar goes to $OUT (the device tool brings back
# at most 8 files, 2 folders deep)
[ "$CMD" = session ] && RES="$RUN/session_results" && rm -rf "$RES"
mkdir -p "$RES" "$RUN"
T0=$(date +%s)
DEADLINE=$(( T0 + ${CALL_MINUTES%.*} * 60 ))
log() { echo "[gpu_paper_scale $(date +%H:%M:%S)] $*" >&2; }
left_s() { echo $(( DEADLINE - $(date +%s) )); }

preflight() {  # the modules a sub-command needs, named if missing (no package index on the GPU machine)
  local mods="torch numpy scipy yaml tqdm"
  [ "$1" = analyze ] && mods="$mods matplotlib jinja2"
  $PY - "$DEVICE" $mods <<'PYEOF'
import importlib.util, sys
missing = [m for m in sys.argv[2:] if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing Python modules: {' '.join(missing)} (python {sys.version.split()[0]})")
import torch
if sys.argv[1].startswith("cuda") and not torch.cuda.is_available():
    sys.exit("no CUDA GPU visible to torch (DEVICE=cuda); SMOKE=1 runs the protocol on the CPU")
PYEOF
  if [ "$DEVICE" != cpu ] && [ ! -f "$RES/gpu.txt" ]; then
    nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit,driver_version --format=csv > "$RES/gpu.txt" 2>/dev/null || true
    $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())" >> "$RES/gpu.txt"
  fi
}

bounded() {  # bounded SECONDS CMD...: SIGTERM at SECONDS (stdann checkpoints and exits 143), KILL 20 s later
  local s=$1; shift
  timeout -s TERM -k 20 "$s" "$@"
}

bench() {  # bench NAME ARGS...: one `stdann bench` run, its JSON saved as RES/NAME.json and printed as a table
  local name=$1; shift
  log "bench $name: stdann $*"
  if bounded "$(( $(left_s) - 10 ))" $PY -m stdann "$@" --json > "$RES/$name.json"; then
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
    log "!! $name failed or ran out of time (rc $?)"
  fi
}

run_status() {  # run_status DIR: finished | started | new
  $PY - "$1" <<'PYEOF'
import json, sys
from pathlib import Path
d = Path(sys.argv[1])
try:
    status = json.loads((d / "run.json").read_text()).get("status")
except (OSError, ValueError):
    status = None
print("finished" if status == "finished" else "started" if (d / "checkpoints" / "last.pt").is_file() else "new")
PYEOF
}

stage_steps() {  # the recipe's split of the preset's schedule: pretrain_fraction of it, then the rest
  $PY - "$PRESET" "$1" <<'PYEOF'
import sys
from stdann.config import load_config
cfg = load_config(sys.argv[1])
total = cfg.optim.total_steps()
pre = int(round(cfg.topography.pretrain_fraction * total))
print(pre if sys.argv[2] == "pre" else total - pre)
PYEOF
}

train_stage() {  # train_stage DIR ALPHA STEPS [INIT_FROM]: train DIR for what is left of the call, or finish it
  local dir=$1 alpha=$2 steps=$3 init=${4:-} state
  state=$(run_status "$dir")
  [ "$state" = finished ] && { log "$dir: finished"; return 0; }
  local left=$(( $(left_s) - 20 ))
  local minutes
  minutes=$($PY -c "print(round(max(0.0, ($left - 60 * $RESERVE_MINUTES) / 60), 2))")
  if [ "$($PY -c "print(int($minutes >= 0.5))")" = 0 ]; then
    log "$dir: not enough time left in this call ($left s); run 'train' again"; return 3
  fi
  local args=(--no-progress --set "train.max_minutes=$minutes" "${EXTRA_SET[@]}")
  if [ "$state" = started ]; then
    log "$dir: resuming for $minutes min"
    args=(train --out "$dir" --resume "${args[@]}")
  else
    log "$dir: starting ($steps steps, alpha $alpha) for $minutes min"
    args=(train --preset "$PRESET" --out "$dir" --device "$DEVICE" --steps "$steps" --set "topography.alpha=$alpha" "${args[@]}")
    [ -n "$init" ] && args+=(--set "train.init_from=$init")
  fi
  local rc=0
  bounded "$left" $PY -m stdann "${args[@]}" || rc=$?
  save_small "$dir"
  [ "$rc" = 0 ] || [ "$rc" = 143 ] || { log "!! $dir: stdann train exited with $rc"; return "$rc"; }
  [ "$(run_status "$dir")" = finished ] || { log "$dir: stopped with a checkpoint; run 'train' again to continue"; return 3; }
}

save_small() {  # the small files of a run folder into RES/<name>/
  local dir=$1 dest="$RES/$(basename "$1")"
  mkdir -p "$dest"
  for f in run.json config.yaml logs/train.csv swap.json metrics.json report.html; do
    [ -f "$dir/$f" ] && cp "$dir/$f" "$dest/" || true
  done
  for d in tables figures; do
    [ -d "$dir/$d" ] && mkdir -p "$dest/$d" && cp -r "$dir/$d/." "$dest/$d/" || true
  done
}

do_train() {
  preflight train
  local pre=${PRE_STEPS:-$(stage_steps pre)} joint=${JOINT_STEPS:-$(stage_steps joint)}
  train_stage "$RUN/pretrain" 0 "$pre" || return $(( $? == 3 ? 0 : $? ))
  if [ "${SWAP_STEPS}" -gt 0 ] && [ ! -f "$RUN/joint/swap.json" ] && [ "$(run_status "$RUN/joint")" = new ]; then
    log "swap pre-optimisation of positions ($SWAP_STEPS steps per block) into $RUN/joint"
    bounded "$(( $(left_s) - 10 ))" $PY -m stdann positions optimize "$RUN/joint" --from "$RUN/pretrain" \
      --steps "$SWAP_STEPS" --device "$DEVICE" --no-progress
    save_small "$RUN/joint"
  fi
  train_stage "$RUN/joint" "$ALPHA" "$joint" "$RUN/pretrain" || return $(( $? == 3 ? 0 : $? ))
  log "training done: $RUN/joint (next: analyze)"
}

do_analyze() {
  preflight analyze
  [ -f "$RUN/joint/checkpoints/last.pt" ] || { log "no $RUN/joint/checkpoints/last.pt yet: run 'train' first"; return 2; }
  [ "$(run_status "$RUN/joint")" = finished ] || log "note: $RUN/joint is not finished; analysing its last checkpoint"
  # shellcheck disable=SC2086
  bounded "$(( $(left_s) - 30 ))" $PY -m stdann analyze "$RUN/joint" --stimuli $STIMULI --device "$DEVICE" --no-progress
  bounded 180 $PY -m stdann report "$RUN/joint" || log "report failed (rc $?)"
  save_small "$RUN/joint"
}

do_session() {  # everything of a first GPU session in one call; results packed into one tar under $OUT (or RES)
  preflight train
  export STDANN_CACHE_DIR="$RUN/cache"  # positions made once, read by the benchmarks and the training
  log "positions of every block (cached by geometry in $STDANN_CACHE_DIR)"
  $PY - "$PRESET" <<'PYEOF' 2>&1 | tee "$RES/positions.txt" >&2
import sys, time
from stdann.config import load_config
from stdann.topography import sheets_from_config
from stdann.topography.cache import cached_model_positions
cfg = load_config(sys.argv[1])
t = time.perf_counter()
pos = cached_model_positions(cfg.model.width, cfg.data.frames, cfg.data.size, list(cfg.topography.blocks),
                             sheets_from_config(cfg.topography), seed=cfg.topography.position_seed,
                             n_windows=cfg.topography.n_windows)
print(f"positions of {len(pos)} blocks ({sum(p.num_units for p in pos.values())} units): {time.perf_counter() - t:.1f} s")
PYEOF
  bench train_b${SESSION_BATCH} bench train --preset "$PRESET" "${BENCH_COMMON[@]}" --batch-size "$SESSION_BATCH" --no-baseline
  bench train_b${B64:-64}_baseline bench train --preset "$PRESET" "${BENCH_COMMON[@]}" --batch-size "${B64:-64}" --no-ablation
  log "profiler: 2 steps of the trainer's step"
  bounded "$(( $(left_s) - 30 ))" $PY benchmarks/profile_step.py --preset "$PRESET" --device "$DEVICE" --steps 2 --warmup 1 \
    --out "$RES/profile.txt" "${EXTRA_SET[@]}" > /dev/null || log "!! profiler failed or ran out of time (rc $?)"
  local left minutes steps warm
  left=$(( $(left_s) - 45 ))
  minutes=$($PY -c "print(round(max(0.0, min(${SESSION_TRAIN_MINUTES}, ($left - 60 * $RESERVE_MINUTES) / 60)), 2))")
  steps=${SESSION_STEPS}
  # a warm-up of 5 % of the steps (the preset's is 5 of 200 epochs: 2.5 %; at a few hundred steps a longer one is safer)
  warm=$($PY -c "
from stdann.config import load_config
c = load_config('$PRESET'); print(round(0.05 * $steps * c.optim.batch_size / c.optim.epoch_size, 4))")
  if [ "$($PY -c "print(int($minutes >= 0.5))")" = 1 ]; then
    log "training $RUN/session: $steps steps at most, alpha $ALPHA, $minutes min, warm-up $warm epochs, held-out every 100 steps"
    bounded "$(( $(left_s) - 20 ))" $PY -m stdann train --preset "$PRESET" --out "$RUN/session" --device "$DEVICE" --steps "$steps" \
      --no-progress --overwrite --set "topography.alpha=$ALPHA" --set "optim.warmup_epochs=$warm" --set train.eval_every=100 \
      --set "train.max_minutes=$minutes" --set train.ckpt_minutes=2 "${EXTRA_SET[@]}" 2>&1 | tail -n 40 >&2 || true
    save_small "$RUN/session"
  else
    log "!! no time left to train ($left s)"
  fi
  do_status > "$RES/status.txt" 2>/dev/null || true
  local tarball="${OUT:-$ROOT/benchmarks/results}/gpu_session.tar.gz"
  tar -czf "$tarball" -C "$RES" .
  log "packed $(tar -tzf "$tarball" | wc -l) entries into $tarball"
}

do_status() {
  for d in "$RUN/pretrain" "$RUN/joint" "$RUN/session"; do
    [ -d "$d" ] || continue
    echo "$d: $(run_status "$d")"
    [ -f "$d/logs/train.csv" ] && tail -n 1 "$d/logs/train.csv"
  done
  return 0
}

BENCH_COMMON=(--device "$DEVICE" --steps "$BENCH_STEPS" --warmup "$BENCH_WARMUP" "${EXTRA_SET[@]}")
case "$CMD" in
  bench) preflight bench; bench train_paper bench train --preset "$PRESET" "${BENCH_COMMON[@]}" ;;
  bench-b64) preflight bench; bench train_paper_b64 bench train --preset "$PRESET" "${BENCH_COMMON[@]}" --batch-size "${B64:-64}" --no-ablation ;;
  bench-compile)
    preflight bench
    bench train_paper_compile bench train --preset "$PRESET" "${BENCH_COMMON[@]}" --no-baseline --no-ablation --set train.compile=true ;;
  bench-ephys) preflight bench; bench ephys_paper bench ephys --preset "$PRESET" --device "$DEVICE" "${EXTRA_SET[@]}" ;;
  session) do_session ;;
  train) do_train ;;
  analyze) do_analyze ;;
  status) do_status ;;
  all)
    DEADLINE=$(( T0 + 10 ** 7 ))
    preflight analyze
    bench train_paper bench train --preset "$PRESET" "${BENCH_COMMON[@]}"
    bench train_paper_b64 bench train --preset "$PRESET" "${BENCH_COMMON[@]}" --batch-size "${B64:-64}" --no-ablation
    bench ephys_paper bench ephys --preset "$PRESET" --device "$DEVICE" "${EXTRA_SET[@]}"
    do_train && do_analyze ;;
  *) sed -n '2,37p' "$0"; exit 2 ;;
esac
do_status > "$RES/status.txt" 2>/dev/null || true
log "results in $RES; run folder $RUN"

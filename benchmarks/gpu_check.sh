#!/usr/bin/env bash
# One prepared check for a lent GPU machine (no network there; this script installs nothing).
#
#   benchmarks/gpu_check.sh            # on the GPU machine, from the repository root
#   benchmarks/gpu_check.sh --dry-run  # print the steps and exit
#   benchmarks/gpu_check.sh --cpu      # the same steps on the CPU, smallest sizes (to check that it runs)
#
# Steps (each under its own time limit, so that one slow step cannot eat the lease):
#   1. the environment: Python, torch, CUDA device, whether RecBole is importable;
#   2. benchmarks/side_by_side.py --device cuda on a few models (genrec_lib, and RecBole
#      when it is installed), ML-100K (shipped with the library);
#   3. benchmarks/scaling.py --device cuda on the synthetic sizes (CUDA-synchronised seconds,
#      peak GPU memory beside peak resident memory).
# Everything is written under $OUT when it is set (the device tool brings $OUT back), else
# under build/gpu_check/. Nothing in genrec_lib/records/ is touched: copy a record there
# yourself once you have read it.
#
# Settings (environment variables): PYTHON (default python3), SIDE_MODELS (default
# "ease bpr multvae sasrec"), SIDE_LIBRARIES (default genrec_lib, and recbole when importable), SIDE_TIMEOUT (s, default 240), SCALING_SIZES (default
# "0.1M 1M 10M 20M"), SCALING_MODELS (default all), SCALING_TIMEOUT (s per run, default 120),
# THREADS (CPU threads, default 4; 1 with --cpu).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DEVICE=cuda
DRY=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    --cpu) DEVICE=cpu ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$arg' (use --dry-run, --cpu or --help)" >&2; exit 2 ;;
  esac
done

PYTHON="${PYTHON:-python3}"
OUTDIR="${OUT:-$ROOT/build/gpu_check}"
SIDE_MODELS="${SIDE_MODELS:-ease bpr multvae sasrec}"
SIDE_TIMEOUT="${SIDE_TIMEOUT:-240}"
SCALING_SIZES="${SCALING_SIZES:-0.1M 1M 10M 20M}"
SCALING_MODELS="${SCALING_MODELS:-ease itemknn bpr multvae diffrec sasrec}"
SCALING_TIMEOUT="${SCALING_TIMEOUT:-120}"
THREADS="${THREADS:-4}"
if [ "$DEVICE" = cpu ]; then  # the smallest check that every step runs, on one thread
  THREADS=1
  SIDE_MODELS="${SIDE_MODELS_CPU:-bpr}"
  SCALING_SIZES=0.1M
  SCALING_MODELS="${SCALING_MODELS_CPU:-ease bpr}"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1  # nothing may download

LIBRARIES="${SIDE_LIBRARIES:-}"
if [ -z "$LIBRARIES" ]; then
  LIBRARIES=genrec_lib
  if "$PYTHON" -c "import recbole" >/dev/null 2>&1; then LIBRARIES="genrec_lib recbole"; fi
fi

# shellcheck disable=SC2086
STEPS=(
  "$PYTHON -c 'import platform, torch; print(platform.platform(), \"python\", platform.python_version(), \"torch\", torch.__version__); print(\"cuda\", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"-\"); print(\"libraries: $LIBRARIES\")'"
  "timeout $SIDE_TIMEOUT $PYTHON benchmarks/side_by_side.py --device $DEVICE --threads $THREADS --models $SIDE_MODELS --libraries $LIBRARIES --recbole-seq-epochs 20 --work ${TMPDIR:-/tmp}/genrec-gpu-check-sbs --out $OUTDIR --note gpu_check.sh"
  "$PYTHON benchmarks/scaling.py --device $DEVICE --sizes $SCALING_SIZES --models $SCALING_MODELS --timeout $SCALING_TIMEOUT --memory-limit-gb 100 --cache ${TMPDIR:-/tmp}/genrec-scaling --record $OUTDIR/scaling_$DEVICE.json --plot $OUTDIR/scaling_$DEVICE.png"
)

if [ "$DRY" = 1 ]; then
  printf '%s\n' "output folder: $OUTDIR" "${STEPS[@]}"
  exit 0
fi
if [ "$DEVICE" = cuda ] && ! "$PYTHON" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "gpu_check.sh: torch sees no CUDA device here; run it on the GPU machine, or with --cpu to check the steps" >&2
  exit 1
fi
mkdir -p "$OUTDIR"
LOG="$OUTDIR/gpu_check.log"
: > "$LOG"
status=0
for step in "${STEPS[@]}"; do
  echo "== $step" | tee -a "$LOG"
  start=$(date +%s)
  if ! bash -c "$step" >>"$LOG" 2>&1; then
    echo "!! step failed (exit status above in $LOG)" | tee -a "$LOG"
    status=1
  fi
  echo "-- $(( $(date +%s) - start )) s" | tee -a "$LOG"
done
tail -n 25 "$LOG"
ls -l "$OUTDIR"
exit $status

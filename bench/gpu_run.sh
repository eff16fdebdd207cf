#!/usr/bin/env bash
# The one command for a lent GPU machine: every GPU figure the project
# reports, in under 9 minutes, each stage on its own timeout and log (a
# failing stage is recorded and the next one runs).
#
#   here, once:   python bench/gpu_pack.py          # .gpu_pack/: CelebA, wheels
#   on the GPU:   device run, carry [".gpu_pack"], command:
#                 bash bench/gpu_run.sh
#   here, CPU:    bash bench/gpu_run.sh --smoke --pack DIR --out DIR
#
# Stages: carried wheels installed; JAX's version and devices; a 200-step
# digits run through main.py; bench/gpu_report.py (matmul peaks, images/s and
# useful MFU of celeba_small and celeba in float32 and bfloat16 at batch 100
# and 1000, determinism); bench/torch_reference.py on the same GPU (PyTorch
# eager and torch.compile); configs/celeba.py trained on the packed subset for
# the time left, then evaluated and traversed. --smoke runs the same stages on
# the CPU with tiny settings (tests/test_gpu_run.py), so the script cannot rot.
#
# Writes at most 8 files to the output folder ($OUT on the device machine):
# summary.txt, gpu_report.json, torch_reference.json, metrics.json,
# metrics.txt, figures.tar (traversals, samples), logs.tar.gz.
set -uo pipefail
cd "$(dirname "$0")/.."

SMOKE=0
PACK=.gpu_pack
OUTDIR="${OUT:-runs/gpu_run}"
BUDGET_S=530          # the whole script; the device's one command has 600
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=1; BUDGET_S=900 ;;
    --pack) PACK="$2"; shift ;;
    --out) OUTDIR="$2"; shift ;;
    --budget_s) BUDGET_S="$2"; shift ;;
    *) echo "gpu_run.sh: unknown argument $1 (use --smoke, --pack DIR," \
            "--out DIR, --budget_s N)" >&2; exit 2 ;;
  esac
  shift
done
if [ ! -d "$PACK" ]; then
  echo "gpu_run.sh: pack folder $PACK does not exist; run python" \
       "bench/gpu_pack.py first and carry it (or pass --pack DIR)." >&2
  exit 2
fi
START=$(date +%s)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_run.XXXXXX")
LOGS="$WORK/logs"
mkdir -p "$LOGS" "$OUTDIR"
SUMMARY="$WORK/summary.txt"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=3
PYTHON="${PYTHON:-python3}"

left() { echo $(( BUDGET_S - ($(date +%s) - START) )); }

# stage NAME SECONDS COMMAND...: runs COMMAND under a timeout, its output in
# logs/NAME.log, and one line of the summary: name, exit code, seconds.
stage() {
  local name="$1" limit="$2"; shift 2
  local remaining; remaining=$(left)
  if [ "$limit" -gt "$remaining" ]; then limit="$remaining"; fi
  if [ "$limit" -lt 5 ]; then
    echo "$name: skipped (no time left)" | tee -a "$SUMMARY"
    return 0
  fi
  local t0; t0=$(date +%s)
  echo "== $name (limit ${limit}s)"
  timeout -k 10 "$limit" "$@" > "$LOGS/$name.log" 2>&1
  local code=$?
  local status="ok"
  if [ "$code" -eq 124 ] || [ "$code" -eq 137 ]; then status="timed out";
  elif [ "$code" -ne 0 ]; then status="failed"; fi
  echo "$name: $status (exit $code, $(( $(date +%s) - t0 ))s)" | tee -a "$SUMMARY"
  tail -n 4 "$LOGS/$name.log" | sed 's/^/    /'
  return 0
}

if [ "$SMOKE" -eq 1 ]; then
  DIGITS_STEPS=20
  DIGITS_ARGS=("--config.model.rung_widths=((8, 16), (32,), (32,))"
               --config.batch_size=16 --config.log_every=10)
  REPORT_ARGS=(--quick --dtypes=float32 --skip_resume)
  TORCH_ARGS=(--device cpu --configs default --batch 16 --rounds 1 --steps 1
              --torch_forms eager)
  # No image grid inside the tiny run (a compile of its own): the traverse
  # stage draws from its checkpoint.
  CELEBA_ARGS=(--config.image_size=16 --config.batch_size=8
               "--config.model.rung_widths=((8, 8), (8, 8), (16,), (16,))"
               --config.num_train_steps=10 --config.log_every=5
               --config.eval_every=10 --config.image_every=1000
               --config.checkpoint_every=10)
  EVAL_ARGS=(--probe_train_size=40 --decoder_images=8 --classifier_steps=5
             --arithmetic_triples=4)
  TRAIN_MINUTES=3
else
  DIGITS_STEPS=200
  DIGITS_ARGS=(--config.log_every=100)
  # The user's config first: rows are written as they finish, so a stage
  # stopped by its limit still returns what it measured.
  REPORT_ARGS=(--configs=celeba,celeba_small --dtypes=float32,bfloat16
               --batch_sizes=100,1000 --skip_resume)
  TORCH_ARGS=(--device cuda --configs celeba --batch 100 --rounds 3
              --steps 20 --torch_forms eager,compiled)
  CELEBA_ARGS=(--config.log_every=500)
  EVAL_ARGS=(--probe_train_size=5000 --decoder_images=300
             --classifier_steps=500 --arithmetic_triples=50)
  TRAIN_MINUTES=""
fi

# Carried wheels (the image lacks ml_collections) on the path of every stage.
if ls "$PACK"/wheels/*.whl > /dev/null 2>&1; then
  stage wheels 60 "$PYTHON" -m pip install -q --no-index --no-deps \
    --no-compile --no-cache-dir --upgrade --target "$WORK/site" \
    "$PACK"/wheels/*.whl
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi

stage devices 60 "$PYTHON" -c "
import jax, jaxlib, sys
print('python', sys.version.split()[0], 'jax', jax.__version__, 'jaxlib',
      jaxlib.__version__)
print('devices', jax.devices())
import importlib.util as u
print('tensorflow installed:', u.find_spec('tensorflow') is not None)
"

stage digits 120 "$PYTHON" main.py --workdir="$WORK/digits" \
  --config.num_train_steps="$DIGITS_STEPS" "${DIGITS_ARGS[@]}" \
  --config.cache_dir="$WORK/cache"

stage gpu_report 140 "$PYTHON" bench/gpu_report.py "${REPORT_ARGS[@]}" \
  --out="$WORK/gpu_report.json"

stage torch_reference 100 "$PYTHON" bench/torch_reference.py \
  "${TORCH_ARGS[@]}" --out "$WORK/torch_reference.json"

# Training gets what is left but the evaluation's and traversal's share.
AFTER_TRAIN_S=120
if [ -z "$TRAIN_MINUTES" ]; then
  TRAIN_MINUTES=$(awk -v s="$(( $(left) - AFTER_TRAIN_S - 60 ))" \
                  'BEGIN { m = s / 60; if (m < 1) m = 1; printf "%.1f", m }')
fi
stage celeba_train $(( $(left) - AFTER_TRAIN_S )) "$PYTHON" main.py \
  --config=configs/celeba.py --config.data_dir="$PACK/celeba" \
  --workdir="$WORK/celeba" --config.max_train_minutes="$TRAIN_MINUTES" \
  --config.cache_dir="$WORK/cache" "${CELEBA_ARGS[@]}"

stage celeba_evaluate 90 "$PYTHON" main.py --mode=evaluate \
  --workdir="$WORK/celeba" "${EVAL_ARGS[@]}"

stage celeba_traverse 30 "$PYTHON" main.py --mode=traverse \
  --workdir="$WORK/celeba" --steps=8

# At most 8 files back.
cp "$SUMMARY" "$OUTDIR/summary.txt"
for f in gpu_report.json torch_reference.json; do
  [ -f "$WORK/$f" ] && cp "$WORK/$f" "$OUTDIR/$f"
done
for f in metrics.json metrics.txt; do
  [ -f "$WORK/celeba/eval/$f" ] && cp "$WORK/celeba/eval/$f" "$OUTDIR/$f"
done
if [ -d "$WORK/celeba/figures" ]; then
  tar -cf "$OUTDIR/figures.tar" -C "$WORK/celeba" figures
fi
tar -czf "$OUTDIR/logs.tar.gz" -C "$WORK" logs
echo "== summary (${BUDGET_S}s budget, $(( $(date +%s) - START ))s used)"
cat "$SUMMARY"
echo "wrote $(ls "$OUTDIR" | tr '\n' ' ')to $OUTDIR"
rm -rf "$WORK"

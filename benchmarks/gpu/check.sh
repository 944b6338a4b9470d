#!/usr/bin/env bash
# The GPU check (issue #26), one call on a bare GPU machine in at most 8 minutes: installs the carried wheels and
# lm_jax, prints the devices and versions, runs the tests that mean something on a GPU, then `python -m
# benchmarks.gpu` (the cuDNN LSTM backend against the scan, the AWD-LSTM config and the step-time suite against
# PyTorch with cuDNN, as far as the time allows). Everything goes under $OUT: check.log, tests.log,
# tests-parallel.log and benchmarks/results/gpu-<device>.{md,json,png}. benchmarks/README.md: the one call.
#
#   OUT=DIR bash benchmarks/gpu/check.sh
# Settings (environment): BUDGET_S (default 470: seconds from the start to the report), TESTS_S (default 150: the
# tests' share), SIZES (default small,medium: step-time sizes, in order), PARTS (default cudnn,awd,step_time),
# SKIP_TESTS=1 (a second call for the configs the first left out: SKIP_TESTS=1 PARTS=step_time SIZES=medium),
# PYTHON (default python3), WHEELS (default gpu-wheels).
# DRY_RUN=1: the same steps on a CPU (CI, benchmarks/gpu/test_check.py): nothing installed, the tests only
# collected (CI runs them), the measurements at cut sizes with the cuDNN kernel replaced by its reference.
set -uo pipefail
cd "$(dirname "$0")/../.."
START=$(date +%s)
: "${OUT:?set OUT to the folder the results go to}"
BUDGET_S=${BUDGET_S:-470} TESTS_S=${TESTS_S:-150} SIZES=${SIZES:-small,medium} PARTS=${PARTS:-cudnn,awd,step_time}
SKIP_TESTS=${SKIP_TESTS:-0}
PYTHON=${PYTHON:-python3} WHEELS=${WHEELS:-gpu-wheels} DRY_RUN=${DRY_RUN:-0}
TESTS=(tests/test_fidelity.py tests/test_steps.py tests/test_precision.py tests/test_transformer.py
       tests/test_resume.py tests/test_cudnn_lstm.py)
PARALLEL_TESTS=(tests/test_parallel.py)  # simulated host devices: one GPU cannot hold a mesh of 2 or 4
mkdir -p "$OUT/benchmarks/results"
exec > >(tee "$OUT/check.log") 2>&1
step() { echo "== $(( $(date +%s) - START )) s: $*"; }
status=0

step "install"
if [ "$DRY_RUN" = 1 ]; then
  export JAX_PLATFORMS=cpu
  echo "dry run: nothing installed; this Python has lm_jax's dependencies"
else
  SITE=/tmp/lm_jax_site
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$WHEELS"/*.whl \
    || { echo "no wheels in $WHEELS/: run 'make gpu-wheels' and carry $WHEELS"; exit 2; }
  export PYTHONPATH="$PWD:$SITE"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-build-isolation -e . || status=1
fi

step "devices and versions"
"$PYTHON" - <<'EOF' || status=1
import importlib.metadata, platform
import jax
print("jax.devices():", jax.devices())
for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "torch", "numpy", "ml_collections", "tensorboardX",
             "lm_jax"):
  try:
    print(f"{name} {importlib.metadata.version(name)}")
  except importlib.metadata.PackageNotFoundError:
    print(f"{name} not installed")
import torch
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
print("python", platform.python_version(), "| torch cuda", torch.version.cuda, "| cudnn",
      torch.backends.cudnn.version(), "| torch sees", gpu)
EOF

TESTS_SUMMARY=""
if [ "$SKIP_TESTS" = 1 ]; then
  step "tests skipped (SKIP_TESTS=1)"
elif [ "$DRY_RUN" = 1 ]; then
  step "tests: collected only (CI runs them)"
  "$PYTHON" -m pytest -q -p no:cacheprovider --collect-only "${TESTS[@]}" "${PARALLEL_TESTS[@]}" > "$OUT/tests.log" 2>&1
  TESTS_SUMMARY="dry run: $(tail -n 1 "$OUT/tests.log")"
else
  step "tests on the GPU: ${TESTS[*]}; ${PARALLEL_TESTS[*]} on simulated CPU devices"
  # Full float32 (no TF32) as the fidelity tests' tolerances assume; several processes share the one GPU.
  JAX_DEFAULT_MATMUL_PRECISION=highest XLA_PYTHON_CLIENT_PREALLOCATE=false timeout "$TESTS_S" \
    "$PYTHON" -m pytest -q -p no:cacheprovider -n 8 "${TESTS[@]}" > "$OUT/tests.log" 2>&1
  gpu_tests=$?
  JAX_PLATFORMS=cpu timeout $(( TESTS_S / 2 )) "$PYTHON" -m pytest -q -p no:cacheprovider -n 4 "${PARALLEL_TESTS[@]}" \
    > "$OUT/tests-parallel.log" 2>&1
  parallel_tests=$?
  TESTS_SUMMARY="on the GPU: $(tail -n 1 "$OUT/tests.log") (exit $gpu_tests); test_parallel on simulated CPU \
devices: $(tail -n 1 "$OUT/tests-parallel.log") (exit $parallel_tests); exit 124: stopped at the time limit"
  [ "$gpu_tests" = 0 ] && [ "$parallel_tests" = 0 ] || status=1
  tail -n 30 "$OUT/tests.log" "$OUT/tests-parallel.log"
fi

step "measurements: python -m benchmarks.gpu"
DEADLINE=$(( START + BUDGET_S - 20 ))
DRY_FLAG=(); [ "$DRY_RUN" = 1 ] && DRY_FLAG=(--dry_run)
timeout $(( DEADLINE - $(date +%s) + 60 )) "$PYTHON" -m benchmarks.gpu --deadline="$DEADLINE" --parts="$PARTS" \
  --sizes="$SIZES" --tests_summary="$TESTS_SUMMARY" --output_dir="$OUT/benchmarks/results" "${DRY_FLAG[@]}" \
  || status=1
step "done (exit $status): $(ls "$OUT"/benchmarks/results)"
exit $status

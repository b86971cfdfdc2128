#!/usr/bin/env bash
# The checks worth a CUDA machine's minutes (issue 21), stage by stage; run from the project root there.
# Each stage has its own timeout and all of them share one budget (BUDGET seconds, default 560, to fit
# one 600 s device call): a stage that hangs ends at its timeout, and a stage that no longer fits is
# skipped and named in the summary, so one slow stage cannot swallow the others. Results go to $OUT
# (default ./gpu-out): summary.txt, one log per stage, profile traces. Wheels for packages the machine
# lacks (fvcore, iopath, yacs, termcolor: `pip download --no-deps`) go in ./.whl.
# Usage: bash .ci/gpu-checks.sh                  # every stage, in order of value, as far as the budget goes
#        STAGES="user" bash .ci/gpu-checks.sh     # chosen stages only (a second call: the user's command)
# A rehearsal on a CPU (no install, a tiny model): SKIP_INSTALL=1 DEVICE=cpu MODEL=vit_s:depth=2,width=0.125 \
#        BATCH=2 EPOCH_STEPS=2 STAGES="epochs profile compiled" bash .ci/gpu-checks.sh
# Stages: cuda-tests epochs profile compiled cnnsplitter benchmarks user
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-./gpu-out}; mkdir -p "$OUT"; T=$(mktemp -d); T0=$(date +%s); BUDGET=${BUDGET:-560}
STAGES=${STAGES:-"cuda-tests epochs profile compiled cnnsplitter benchmarks user"}
export PYTHONUNBUFFERED=1
say() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$OUT/summary.txt"; }
# stage NAME TIMEOUT COMMAND...: run COMMAND with min(TIMEOUT, what is left) seconds, log in $OUT/NAME.log
stage() {
  local name=$1 limit=$2; shift 2
  case " $STAGES " in *" $name "*) ;; *) return 0 ;; esac
  local left=$(( BUDGET - ($(date +%s) - T0) - 5 ))
  (( left < limit )) && limit=$left
  if (( limit < 20 )); then say "$name: skipped, ${left}s of the budget left"; return 0; fi
  say "$name: up to ${limit}s"
  timeout -k 5 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  say "$name: exit $rc$( (( rc == 124 || rc == 137 )) && echo ' (timed out)')"
}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$T/site" .whl/*.whl && export PYTHONPATH="$T/site"
fi
if [ -z "${SKIP_INSTALL:-}" ]; then python3 -m pip install -q --no-index --no-deps --no-build-isolation . 2>&1 | tail -2; fi
command -v bench >/dev/null || { say "bench not installed"; exit 1; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | tee -a "$OUT/summary.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$OUT/summary.txt"
EPOCH_STEPS=${EPOCH_STEPS:-391}
PROFILE="python3 tests/benchmarks/profile_step.py --device ${DEVICE:-cuda} --model ${MODEL:-vgg16} --batch ${BATCH:-128}"

# the CUDA tests of the default suite
stage cuda-tests 90 python3 -m pytest -m cuda -p no:cacheprovider -o addopts="" -q
# a 50,000-image VGG16 epoch (391 steps of 128) per method, eager, bf16 autocast (goal: masked <= 1.5x standard)
stage epochs 120 $PROFILE --methods standard,mwt,nemo --steps $EPOCH_STEPS
grep -h "images) in" "$OUT/epochs.log" 2>/dev/null | tee -a "$OUT/summary.txt"
# the masked step on CUDA: operations, kernels per step, host syncs; traces in $OUT/profile/<method>/
stage profile 60 $PROFILE --methods standard,mwt --steps 5 --profile-steps 5 --out "$OUT/profile"
grep -h "operations per step\|kernels per step" "$OUT/profile.log" 2>/dev/null | tee -a "$OUT/summary.txt"
# the same epoch with the loss function compiled into CUDA graphs (launch overhead gone)
stage compiled 120 $PROFILE --methods standard,mwt --steps $EPOCH_STEPS --compile reduce-overhead
grep -h "images) in" "$OUT/compiled.log" 2>/dev/null | tee -a "$OUT/summary.txt"
# CNNSplitter's search speed: candidate modules scored per second
stage cnnsplitter 60 python3 -m pytest tests/benchmarks/test_cnnsplitter_speed.py -m cuda --benchmark-only \
  -p no:cacheprovider -o addopts="" --benchmark-columns=median,iqr,rounds
# the GPU benchmarks in their own call: masked steps, modules against models (dense and former ViT join), memory
stage benchmarks 150 python3 -m pytest tests/benchmarks -m cuda -k "not compiled and not cnnsplitter" \
  --benchmark-only -p no:cacheprovider -o addopts="" --benchmark-columns=median,iqr,rounds --benchmark-sort=name
grep -h -A60 "modbench ratios" "$OUT/benchmarks.log" 2>/dev/null | tee -a "$OUT/summary.txt"
# the user's command as typed (device auto), with the latency columns
run_user() {
  ( cd "$T" && s=$(date +%s) && bench run --methods nemo,mwt --models vgg16,vit --out runs;
    echo "exit $? wall $(( $(date +%s) - s )) s"; bench report --runs runs --format md )
}
stage user 300 bash -c "$(declare -f run_user); T=$T run_user"
tail -12 "$OUT/user.log" 2>/dev/null | tee -a "$OUT/summary.txt"
say "done"

#!/usr/bin/env bash
# Tune the baselines' free hyperparameters (GA lr, IU alpha, SCRUB lr, BS lr) once, on the all-matched CIFAR-100 task
# (forget "boy", "girl"), cpu recipe, seed 0 -- never on the mismatch tasks (issue 3).
# One JSON per grid point under docs/results/cifar100/tuning/ (existing ones skipped),
# then tuning.md / tuning.csv; the value with the lowest Gap to the reference wins.
# Usage: scripts/tune_baselines.sh [JOBS]   (parallel jobs, default 1; each gets 1 thread
# when JOBS > 1 so they do not fight over the cores)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${1:-1}"
out=docs/results/cifar100/tuning
mkdir -p "$out"
data="${TARF_DATA:-../shared/datasets}"
grid=(
  "ga lr 1e-5" "ga lr 3e-5" "ga lr 1e-4" "ga lr 3e-4" "ga lr 1e-3" "ga lr 3e-3"
  "iu alpha 1" "iu alpha 3" "iu alpha 10" "iu alpha 30" "iu alpha 100"
  "scrub lr 5e-4" "scrub lr 2e-3" "scrub lr 5e-3" "scrub lr 2e-2"
  "bs lr 1e-5" "bs lr 3e-5" "bs lr 1e-4" "bs lr 3e-4" "bs lr 1e-3" "bs lr 1e-2"
)
[ "$jobs" -gt 1 ] && export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
for g in "${grid[@]}"; do
  set -- $g
  f="$out/${1}_${2}${3}_s0.json"
  [ -s "$f" ] && continue
  echo "$f tarf unlearn --dataset cifar100 --data-root $data --model-labels class --forget boy,girl --target boy,girl --method $1 --set $2=$3 --recipe cpu --seed 0 --out $f"
done | xargs -P "$jobs" -L 1 sh -c 'f="$1"; shift; "$@" > "${f%.json}.log" 2>&1 && echo "done: $f" || echo "FAILED: $f (see ${f%.json}.log)"' sh
tarf report "$out"/*.json --md "$out/tuning.md" --csv "$out/tuning.csv" --layout table1

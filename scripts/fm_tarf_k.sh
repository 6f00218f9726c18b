#!/usr/bin/env bash
# TARF's k on Fashion-MNIST (the paper gives none), cpu recipe: chosen on the all-matched
# task only, as the baselines' tuning (docs/baselines.md). CIFAR-10's k = 0.02, the
# previous default, drives the model to non-finite losses (docs/benchmarks.md).
# One JSON per k in docs/results/fashion-mnist/tarf-k/ (existing ones skipped), then a table.
# Usage: [JOBS=2] [SEED=0] scripts/fm_tarf_k.sh [K ...]
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/results/fashion-mnist/tarf-k
mkdir -p "$out"
data="${TARF_DATA:-../shared/datasets}"
jobs="${JOBS:-2}"
seed="${SEED:-0}"
[ "$jobs" -gt 1 ] && export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
ks="${*:-0.0005 0.001 0.002}"
for k in $ks; do
  f="$out/tarf_all-matched_k${k}_s${seed}.json"
  [ -s "$f" ] && continue
  echo "$f tarf unlearn --dataset fashion-mnist --data-root $data --model-labels class --forget Sneaker --target Sneaker --method tarf --set k=$k --recipe cpu --seed $seed --out $f"
done | xargs -P "$jobs" -L 1 sh -c 'f="$1"; shift; "$@" > "${f%.json}.log" 2>&1 && echo "done: $f" || echo "FAILED: $f"' sh
tarf report "$out"/*_s*.json --md "$out/table.md" --csv "$out/results.csv"

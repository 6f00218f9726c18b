#!/usr/bin/env bash
# The paper's four CIFAR-100 tasks (forget "boy", "girl"; concept "people") for the given
# methods, cpu recipe, one seed; one JSON per run under docs/results/cifar100/, existing
# results skipped (rerunning resumes). Then the table and CSV behind docs/results.md.
# Usage: [JOBS=2] scripts/cifar100_four_tasks.sh [SEED] [METHOD ...]   (default: 0 tarf)
# JOBS > 1 runs that many at once, one torch thread each (RTE is then measured per thread).
set -euo pipefail
cd "$(dirname "$0")/.."
seed="${1:-0}"; shift || true
methods=("${@:-tarf}")
jobs="${JOBS:-1}"
out=docs/results/cifar100
mkdir -p "$out"
data="${TARF_DATA:-../shared/datasets}"
[ "$jobs" -gt 1 ] && export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
for m in "${methods[@]}"; do
  for spec in "class boy,girl all-matched" "class people target-mismatch" \
              "superclass boy,girl model-mismatch" "superclass people data-mismatch"; do
    set -- $spec
    f="$out/${m}_${3}_s${seed}.json"
    [ -s "$f" ] && { echo "skip $f" >&2; continue; }
    echo "$f tarf unlearn --dataset cifar100 --data-root $data --model-labels $1 --forget boy,girl --target $2 --method $m --recipe cpu --seed $seed --out $f"
  done
done | xargs -P "$jobs" -L 1 sh -c 'f="$1"; shift; "$@" > "${f%.json}.log" 2>&1 && echo "done: $f" || echo "FAILED: $f (see ${f%.json}.log)"' sh
tarf report "$out"/*_s*.json --md "$out/table.md" --csv "$out/results.csv" --layout table1

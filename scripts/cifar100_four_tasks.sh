#!/usr/bin/env bash
# The paper's four CIFAR-100 tasks (forget "boy", "girl"; concept "people") for the given
# methods, cpu recipe, one seed; one JSON per run under docs/results/cifar100/, existing
# results skipped (rerunning resumes). Then the table and CSV behind docs/results.md.
# Usage: scripts/cifar100_four_tasks.sh [SEED] [METHOD ...]   (default: 0 tarf)
set -euo pipefail
cd "$(dirname "$0")/.."
seed="${1:-0}"; shift || true
methods=("${@:-tarf}")
out=docs/results/cifar100
mkdir -p "$out"
data="${TARF_DATA:-../shared/datasets}"
for m in "${methods[@]}"; do
  for spec in "class boy,girl all-matched" "class people target-mismatch" \
              "superclass boy,girl model-mismatch" "superclass people data-mismatch"; do
    set -- $spec
    f="$out/${m}_${3}_s${seed}.json"
    [ -s "$f" ] && { echo "skip $f"; continue; }
    tarf unlearn --dataset cifar100 --data-root "$data" --model-labels "$1" --forget boy,girl \
      --target "$2" --method "$m" --recipe cpu --seed "$seed" --out "$f"
  done
done
tarf report "$out"/*.json --md "$out/table.md" --csv "$out/results.csv"

#!/usr/bin/env bash
# RTE on an otherwise idle machine (run nothing else meanwhile): the four TARF tasks and
# FT / IU on all matched, CIFAR-100, cpu recipe, seed 0, all cores; plus `tarf speed`.
# Results (same metrics as the main runs, cleaner wall times) in docs/results/cifar100/timing/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/results/cifar100/timing
mkdir -p "$out"
data="${TARF_DATA:-../shared/datasets}"
tarf speed --dataset cifar100 --recipe cpu | tee "$out/speed.txt"
for spec in "tarf class boy,girl all-matched" "tarf class people target-mismatch" \
            "tarf superclass boy,girl model-mismatch" "tarf superclass people data-mismatch" \
            "ft class boy,girl all-matched" "iu class boy,girl all-matched" "scrub class boy,girl all-matched"; do
  set -- $spec
  f="$out/${1}_${4}_s0.json"
  [ -s "$f" ] && continue
  tarf unlearn --dataset cifar100 --data-root "$data" --model-labels "$2" --forget boy,girl \
    --target "$3" --method "$1" --recipe cpu --seed 0 --out "$f" > "${f%.json}.log" 2>&1
  echo "done: $f"
done
tarf report "$out"/*_s0.json --layout table1 --md "$out/table.md"

#!/usr/bin/env bash
# RTE on an otherwise idle machine (run nothing else meanwhile): the four TARF tasks and
# FT / IU / SCRUB on all matched, cpu recipe, seed 0, all cores; plus `tarf speed`.
#   scripts/time_alone.sh [cifar100|fashion-mnist]
# Results (same metrics as the main runs, cleaner wall times) in docs/results/DATASET/timing/.
# For Fashion-MNIST it also trains one model alone (the seed-1 all-matched reference, which
# a seed-1 bench then reuses) to time the denominator of RTE / retrain time cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
dataset="${1:-cifar100}"
case "$dataset" in
  cifar100) forget=boy,girl; concept=people ;;
  fashion-mnist) forget=Sneaker; concept=footwear ;;
  *) echo "unknown dataset $dataset (cifar100 or fashion-mnist)" >&2; exit 2 ;;
esac
out=docs/results/$dataset/timing
mkdir -p "$out"
data="${TARF_DATA:-../shared/datasets}"
[ -s "$out/speed.txt" ] || tarf speed --dataset "$dataset" --recipe cpu | tee "$out/speed.txt" || true
if [ "$dataset" = fashion-mnist ] && [ ! -s "$out/train_alone.txt" ]; then
  start=$(date +%s)
  tarf train --dataset "$dataset" --data-root "$data" --model-labels class --exclude "$forget" \
    --recipe cpu --seed 1 > "$out/train_alone.log" 2>&1
  echo "retrained all-matched reference, seed 1, alone: $(( $(date +%s) - start )) s" | tee "$out/train_alone.txt"
fi
for spec in "tarf class $forget all-matched" "tarf class $concept target-mismatch" \
            "tarf superclass $forget model-mismatch" "tarf superclass $concept data-mismatch" \
            "ft class $forget all-matched" "iu class $forget all-matched" "scrub class $forget all-matched"; do
  set -- $spec
  f="$out/${1}_${4}_s0.json"
  [ -s "$f" ] && continue
  tarf unlearn --dataset "$dataset" --data-root "$data" --model-labels "$2" --forget "$forget" \
    --target "$3" --method "$1" --recipe cpu --seed 0 --out "$f" > "${f%.json}.log" 2>&1
  echo "done: $f"
done
tarf report "$out"/*_s0.json --layout table1 --md "$out/table.md"

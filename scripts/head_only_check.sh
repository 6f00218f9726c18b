#!/usr/bin/env bash
# Does "only the classifier learns in Phases II-III" (--set frozen_blocks=-1; the
# stopgrad study's frozen-9 on cpunet) carry beyond the CIFAR-100 people tasks it was
# found on? TARF with and without it on Fashion-MNIST (the four footwear tasks) and on the
# target-mismatch task of three more CIFAR-100 concepts (scripts/held_out_concepts.sh;
# scripts/auto_vs_prior.sh's known-prior runs are the default to compare with).
# cpu recipe; references are the benchmark's (cached). Existing results are skipped.
# Usage: scripts/head_only_check.sh [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/held_out_concepts.sh
seed="${1:-0}"
data="${TARF_DATA:-../shared/datasets}"
tarf bench --dataset fashion-mnist --data-root "$data" --forget Sneaker --concept footwear \
  --tasks all --methods tarf --set frozen_blocks=-1 --seeds "$seed," --recipe cpu \
  --out docs/results/fashion-mnist/frozen-head
out=docs/results/cifar100/frozen-head
mkdir -p "$out"
for spec in "${HELD_OUT_CONCEPTS[@]}"; do
  set -- $spec
  f="$out/tarf_${1}_head_s${seed}.json"
  [ -s "$f" ] && continue
  tarf unlearn --dataset cifar100 --data-root "$data" --model-labels class --forget "$2" \
    --target "$1" --method tarf --set frozen_blocks=-1 --recipe cpu --seed "$seed" --out "$f"
done
tarf report "$out"/*_s*.json docs/results/cifar100/auto-vs-prior/tarf_*_known_s"$seed".json \
  --md "$out/table.md" --csv "$out/results.csv"

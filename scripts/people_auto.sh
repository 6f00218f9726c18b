#!/usr/bin/env bash
# TARF with --prior auto on the CIFAR-100 "people" tasks where something can hide in D_un
# (target and data mismatch; all matched and model mismatch have n = 0 by the task, so
# their auto runs are the benchmark's runs). The known-prior runs to compare with are the
# benchmark's docs/results/cifar100/tarf_*_s<SEED>.json. cpu recipe, references cached.
# Usage: scripts/people_auto.sh [SEED]   (writes docs/results/cifar100/tarf-auto/)
set -euo pipefail
cd "$(dirname "$0")/.."
seed="${1:-0}"
data="${TARF_DATA:-../shared/datasets}"
out=docs/results/cifar100/tarf-auto
mkdir -p "$out"
for labels_task in class:target-mismatch superclass:data-mismatch; do
  labels=${labels_task%%:*}; task=${labels_task#*:}
  f="$out/tarf_${task}_auto_s${seed}.json"
  [ -s "$f" ] && continue
  tarf unlearn --dataset cifar100 --data-root "$data" --model-labels "$labels" \
    --forget boy,girl --target people --prior auto --method tarf --recipe cpu \
    --seed "$seed" --out "$f" > "${f%.json}.log" 2>&1
done
tarf report --layout runs "$out"/*_s*.json docs/results/cifar100/tarf_{target,data}-mismatch_s*.json \
  --md "$out/table.md" --csv "$out/results.csv"

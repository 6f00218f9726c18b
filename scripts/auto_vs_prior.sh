#!/usr/bin/env bash
# TARF with the known prior against TARF with --prior auto on the target-mismatch task of
# three more CIFAR-100 concepts (scripts/held_out_concepts.sh), cpu recipe; the same for
# TARF-I (instance level, Algorithm 2) with the known fraction (i-known) and with
# --prior auto (i-auto, beta from D_f's own I_con). One JSON per run in
# docs/results/cifar100/auto-vs-prior/ (existing ones skipped), then a table. The
# "people" runs are in docs/results/cifar100/ (known prior) and
# docs/results/cifar100/tarf-auto/ (auto).
# Usage: [JOBS=2] [PRIORS="known auto"] scripts/auto_vs_prior.sh [SEED]
# (PRIORS picks a subset of the four; the class-level pair alone is half the runs)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/held_out_concepts.sh
seed="${1:-0}"
jobs="${JOBS:-2}"
priors="${PRIORS:-known auto i-known i-auto}"
out=docs/results/cifar100/auto-vs-prior
mkdir -p "$out"
data="${TARF_DATA:-../shared/datasets}"
[ "$jobs" -gt 1 ] && export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
# known-prior runs first: each trains its concept's reference, the auto runs reuse it
for prior in $priors; do
  for spec in "${HELD_OUT_CONCEPTS[@]}"; do
    set -- $spec
    f="$out/tarf_${1}_${prior}_s${seed}.json"
    [ -s "$f" ] && continue
    extra=""
    case "$prior" in
      auto) extra="--prior auto" ;;
      i-known) extra="--set identification=instance" ;;
      i-auto) extra="--prior auto --set identification=instance" ;;
    esac
    echo "$f tarf unlearn --dataset cifar100 --data-root $data --model-labels class --forget $2 --target $1 $extra --method tarf --recipe cpu --seed $seed --out $f"
  done
done | xargs -r -P "$jobs" -L 1 sh -c 'f="$1"; shift; "$@" > "${f%.json}.log" 2>&1 && echo "done: $f" || echo "FAILED: $f" ' sh
tarf report "$out"/*_s*.json --md "$out/table.md" --csv "$out/results.csv"

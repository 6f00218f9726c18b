#!/usr/bin/env bash
# TARF-I (instance-level identification, Algorithm 2) on the CIFAR-100 "people" tasks
# where something hides in D_un: with the known fraction prior, with --prior auto (β from
# D_f's own I_con, the default) and with --prior auto on the largest-gap rule.
# Usage: scripts/tarf_instance.sh SEED   (writes docs/results/cifar100/tarf-instance/)
set -euo pipefail
seed=${1:-0}
out=docs/results/cifar100/tarf-instance
mkdir -p "$out"
for labels_task in class:target-mismatch superclass:data-mismatch; do
  labels=${labels_task%%:*}; task=${labels_task#*:}
  for prior in known auto auto-gap; do
    f="$out/tarf-i_${task}_${prior}_s${seed}.json"
    [ -s "$f" ] && continue
    extra=()
    [ "$prior" != known ] && extra+=(--prior auto)
    [ "$prior" = auto-gap ] && extra+=(--set auto_instance_rule=gap)
    tarf unlearn --dataset cifar100 --data-root "${TARF_DATA:-../shared/datasets}" \
      --model-labels "$labels" --forget boy,girl --target people "${extra[@]}" \
      --method tarf --set identification=instance --recipe cpu --seed "$seed" --out "$f"
  done
done
tarf report --layout runs "$out"/*_s*.json --md "$out/table.md" --csv "$out/results.csv"

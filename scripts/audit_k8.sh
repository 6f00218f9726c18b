#!/usr/bin/env bash
# The audited CIFAR-100 benchmark at the issue's default K = 8 references (docs/audit.md,
# docs/benchmarks.md "The stronger audit"): every method, seed 0, one task after another
# so that a session's worth of compute leaves whole tasks behind (references are cached
# in $TARF_CACHE; a killed run resumes where it stopped).
# Usage: [TASKS="target-mismatch all-matched ..."] scripts/audit_k8.sh
# Writes docs/results/cifar100-audit-k8/ (K = 3 results stay in docs/results/cifar100-audit).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${TARF_DATA:-../shared/datasets}"
tasks=(${TASKS:-target-mismatch all-matched data-mismatch model-mismatch})
for task in "${tasks[@]}"; do
  tarf bench --dataset cifar100 --data-root "$data" --forget boy,girl --concept people \
    --tasks "$task" --methods all --seeds 1 --recipe cpu --audit 8 \
    --out docs/results/cifar100-audit-k8 --jobs 2
done

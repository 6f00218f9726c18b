# The three held-out CIFAR-100 concepts of docs/identification.md with the two classes
# handed over as D_f (those `tarf analyze identify` chose for seed 0): "concept given".
# Sourced by scripts/auto_vs_prior.sh and scripts/head_only_check.sh, so they compare
# the same requests.
HELD_OUT_CONCEPTS=(
  "trees maple_tree,oak_tree"
  "fruit_and_vegetables pear,sweet_pepper"
  "vehicles_1 bus,motorcycle"
)

"""tarf: concept-level machine unlearning under label-domain mismatch."""

from tarf.domains import Level, TaskKind, classify
from tarf.hierarchy import LabelHierarchy, builtin_hierarchy
from tarf.request import Partitions, Prior, UnlearningRequest

__version__ = "0.1.0"

__all__ = [
    "Level",
    "TaskKind",
    "classify",
    "LabelHierarchy",
    "builtin_hierarchy",
    "Partitions",
    "Prior",
    "UnlearningRequest",
]

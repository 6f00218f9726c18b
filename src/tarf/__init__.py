"""tarf: concept-level machine unlearning under label-domain mismatch."""

from tarf.domains import Level, TaskKind, classify
from tarf.hierarchy import LabelHierarchy, builtin_hierarchy
from tarf.request import Partitions, Prior, UnlearningRequest

__version__ = "0.1.0"

# The API for a user's own model and data (tarf.api) loads on first use: it pulls in every
# method, which `import tarf` for the taxonomy alone should not pay for.
_API = ("TarfWarning", "evaluate", "load_hierarchy", "make_request", "summary", "unlearn")


def __getattr__(name: str):
    if name in _API:
        from tarf import api

        return getattr(api, name)
    raise AttributeError(f"module 'tarf' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})


__all__ = [
    "Level",
    "TaskKind",
    "classify",
    "LabelHierarchy",
    "builtin_hierarchy",
    "Partitions",
    "Prior",
    "UnlearningRequest",
    "TarfWarning",
    "evaluate",
    "load_hierarchy",
    "make_request",
    "summary",
    "unlearn",
]

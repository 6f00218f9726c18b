"""``--prior auto``: how much of the concept hides in ``D_un``, estimated from Phase I.

One rule at both levels, :func:`largest_gap`: sort the signal (class level: each class's
loss rise or accuracy drop; instance level: ``log I_con`` of each scored sample), take the
largest gap between neighbours in the top half, in robust standard deviations
(``1.4826 · MAD``), and accept it, with the values above it as the concept, only when it
exceeds the ``1 − α`` quantile of the same statistic on as many standard normal values
(:func:`gap_threshold`). Instance level uses :func:`forget_calibrated_cut` by default;
:func:`auto_count` and :func:`concept_can_hide` add what the task states. What the rules
find on real data: ``docs/identification.md``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np
import torch

from tarf.domains import target_is_data

ALPHA = 0.01  # false-positive rate of the auto rule on Gaussian noise
RULE = (
    "largest gap between neighbouring values in the top half of the sorted signal, in "
    "robust SDs (1.4826 MAD); accepted when above the 99% quantile of the same statistic "
    "for Gaussian noise of the same size"
)
_MC_DRAWS = 20000
_MC_SEED = 20240611


def concept_can_hide(task: str) -> bool:
    """Whether concept data can be left in ``D_un`` at all, by the task's definition.

    When the target concept is the forget data itself (``L_T = L_D``: all matched,
    model mismatch, random forgetting, scenario No. 6), ``D_uf = D_t \\ D_f`` is empty
    and ``n = 0`` needs no estimate. This is the only case where the data cannot decide:
    the same ``D_f``, ``D_un`` and model are a target mismatch when the user means the
    wider concept. The task is what the user states (under TARF's ``preset=paper`` it also picks the paper's ``k``);
    ``auto`` only estimates the count.
    """
    return not target_is_data(task)


@dataclass(frozen=True)
class GapDecision:
    """The auto rule's decision on one signal, with what it was based on."""

    n: int  # values above the accepted cut; 0 = no group stands out
    m: int  # values considered (NaN dropped)
    cut: int  # values above the largest gap, accepted or not (0 if m < 3)
    statistic: float  # that gap, in robust SDs
    threshold: float  # the statistic's 1 - alpha quantile on Gaussian noise of size m
    median: float
    scale: float  # 1.4826 * MAD (mean absolute deviation * 1.2533 if the MAD is 0)
    above: float  # the value just above the cut
    below: float  # the value just below the cut

    @property
    def margin(self) -> float:
        """Statistic minus threshold: > 0 accepted (n = cut), <= 0 rejected (n = 0)."""
        return self.statistic - self.threshold

    def to_dict(self) -> dict[str, float | int]:
        d = asdict(self)
        d["margin"] = self.margin
        return {k: _round(v) for k, v in d.items()}


def _round(v: float | int) -> float | int:
    if isinstance(v, float) and math.isfinite(v):
        return float(f"{v:.4g}")  # 4 significant digits: signals range from 1e-4 to 1e2
    return v


def robust_center_scale(v: np.ndarray) -> tuple[float, float]:
    """Median and ``1.4826 · MAD`` (the SD for Gaussian data); when more than half the
    values tie (MAD = 0, e.g. quantised accuracy drops), ``1.2533 ·`` mean absolute
    deviation instead. Zero only when all values are equal."""
    med = float(np.median(v))
    dev = np.abs(v - med)
    scale = 1.4826 * float(np.median(dev))
    if scale == 0.0:
        scale = 1.2533 * float(dev.mean())
    return med, scale


def _top_gaps(x: np.ndarray) -> np.ndarray:
    """Gaps between neighbours in the top half of each row of ``x`` (sorted descending)."""
    half = x.shape[-1] // 2
    return x[..., :half] - x[..., 1 : half + 1]


@lru_cache(maxsize=64)
def gap_threshold(m: int, alpha: float = ALPHA) -> float:
    """The ``1 − alpha`` quantile of :func:`largest_gap`'s statistic over ``m`` standard
    normal values: Monte Carlo with a fixed seed (so decisions are reproducible), in
    chunks so that ``m = 10,000`` (instance level) stays within memory."""
    if m < 3:
        return math.inf
    rng = np.random.default_rng(_MC_SEED + m)
    draws = max(1000, min(_MC_DRAWS, 20_000_000 // m))
    chunk = max(1, 2_000_000 // m)
    stats = []
    for start in range(0, draws, chunk):
        x = rng.standard_normal((min(chunk, draws - start), m))
        x = -np.sort(-x, axis=1)
        med = np.median(x, axis=1, keepdims=True)
        scale = 1.4826 * np.median(np.abs(x - med), axis=1)
        stats.append(_top_gaps(x).max(axis=1) / scale)
    return float(np.quantile(np.concatenate(stats), 1 - alpha))


def largest_gap(
    values: torch.Tensor | np.ndarray | list[float], alpha: float = ALPHA
) -> GapDecision:
    """The auto rule (module docstring): how many of the largest ``values`` stand apart.

    NaN values (classes absent from ``D_un``) are ignored. The ``n`` values it selects
    are the ``n`` largest; callers take them in the same descending order.
    """
    v = torch.as_tensor(values, dtype=torch.float64).flatten().numpy()
    v = -np.sort(-v[~np.isnan(v)])
    m = len(v)
    if m < 3:
        med = float(np.median(v)) if m else math.nan
        return GapDecision(0, m, 0, math.nan, math.inf, med, math.nan, math.nan, math.nan)
    med, scale = robust_center_scale(v)
    threshold = gap_threshold(m, alpha)
    if scale == 0.0:  # all values equal: nothing stands out
        return GapDecision(0, m, 0, 0.0, threshold, med, 0.0, float(v[0]), float(v[0]))
    gaps = _top_gaps(v) / scale
    j = int(np.argmax(gaps))
    stat = float(gaps[j])
    n = j + 1 if stat > threshold else 0
    return GapDecision(n, m, j + 1, stat, threshold, med, scale, float(v[j]), float(v[j + 1]))


# TARFConfig.auto_floor: what class-level auto does when the gap test declines
AUTO_FLOORS = ("largest-gap", "none")


def auto_count(decision: GapDecision, task: str, floor: str = "largest-gap") -> tuple[int, str]:
    """How many of the ranked classes ``--prior auto`` sets aside on ``task``, and why.

    * The target is the forget data itself (:func:`concept_can_hide` false): 0, "task".
    * The gap test accepts: its cut, "data".
    * It declines, but the task states a concept wider than ``D_f`` (target or data
      mismatch), so at least one of the concept's model classes is in ``D_un`` and
      ``n = 0`` is not an answer. With ``floor="largest-gap"`` the test's own candidate
      cut (the largest gap in the top half) is taken, "task floor"; its margin (negative)
      says how unsure it is. With ``floor="none"``: 0, "data".
    """
    if not concept_can_hide(task):
        return 0, "task"
    if decision.n > 0:
        return decision.n, "data"
    if floor == "largest-gap" and decision.cut > 0:
        return decision.cut, "task floor"
    return 0, "data"


FORGET_RULE = (
    "samples of D_un at least as disturbed by Phase I as the forget data itself: I_con at "
    "or above the given quantile of D_f's own I_con"
)
MAX_SET_ASIDE = 0.5  # a cut that takes more of the scored samples is declined


def forget_calibrated_cut(
    icon: torch.Tensor, icon_forget: torch.Tensor, quantile: float = 0.05
) -> dict[str, float | int | str]:
    """Instance level's ``auto`` rule: ``β`` is the ``quantile`` of ``I_con`` over ``D_f``,
    and the scored samples of ``D_un`` at or above it are set aside: the forget data
    shows how far the concept's samples move in Phase I, and the hidden ones move with it
    (representational gravity), so no gap in ``D_un``'s own values is needed. Declines
    (``n = 0``) when Phase I did not move ``D_f`` or the cut would take more than
    ``MAX_SET_ASIDE`` of the scored samples (``D_f`` no more disturbed than ``D_un``).
    """
    icon, icon_forget = icon.double().flatten(), icon_forget.double().flatten()
    beta = float(torch.quantile(icon_forget, quantile)) if len(icon_forget) else math.nan
    moved = math.isfinite(beta) and beta > 0
    above = int((icon >= beta).sum()) if moved else 0
    why = None
    if not moved:
        why = "Phase I did not change the forget data's loss"
    elif above > MAX_SET_ASIDE * len(icon):
        why = f"the cut would set aside {above} of {len(icon)} samples: D_f is not set apart"
    out: dict[str, float | int | str] = {
        "n": 0 if why else above, "m": len(icon), "beta": _round(beta), "quantile": quantile,
        "above": above, "forget_median": _round(float(icon_forget.median())),
        "scored_median": _round(float(icon.median())),
    }  # fmt: skip
    if why:
        out["declined"] = why
    return out


def log_icon(icon: torch.Tensor) -> torch.Tensor:
    """``log I_con`` for the instance-level rule: I_con spans orders of magnitude, and in
    log space a rescaled I_con is only shifted, which the rule ignores. Exact zeros
    (unchanged losses) are floored at 1e-6 of the median positive I_con."""
    icon = icon.double()
    positive = icon[icon > 0]
    if len(positive) == 0:
        return torch.zeros_like(icon)
    return icon.clamp_min(1e-6 * float(positive.median())).log()

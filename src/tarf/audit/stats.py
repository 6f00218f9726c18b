"""The audit's statistics, pure functions (NumPy in, numbers out): per-example scores,
U-LiRA against retrained references, the NeurIPS 2023 challenge's epsilon, forgetting
quality and score, the concept probe, and :func:`summarize`, which puts them together."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

# Fewer unlearned models than this: one-sided test (NLL under the retrained Gaussian only).
TWO_SIDED_MIN_UNLEARNED = 4
# A Gaussian fitted on fewer models than this gets one std pooled over the examples
# (LiRA's "fixed variance"): a per-example std from a handful of models is mostly noise.
PER_EXAMPLE_STD_MIN_MODELS = 16
MIN_STD = 1e-3
SCORE_CLIP = 1e4  # non-finite scores (a diverged model) become -SCORE_CLIP
EPS_BIN_WIDTH, EPS_BINS, EPS_DELTA = 0.5, 13, 1e-5


def logit_confidence(logits: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> np.ndarray:
    """``log p_y - log(1 - p_y)`` per row, stably: ``z_y - logsumexp(z_{-y})``.

    Non-finite results (NaN logits of a diverged model) count as ``-SCORE_CLIP``, and
    every score is clipped to ``[-SCORE_CLIP, SCORE_CLIP]`` so that the statistics stay finite.
    """
    z = torch.as_tensor(logits).double()
    y = torch.as_tensor(y).long().view(-1, 1)
    true = z.gather(1, y).flatten()
    others = z.scatter(1, y, float("-inf")).logsumexp(1)
    s = (true - others).numpy()
    s = np.where(np.isnan(s), -SCORE_CLIP, s)
    return np.clip(s, -SCORE_CLIP, SCORE_CLIP)


def fit_gaussian(scores: np.ndarray, pooled: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-example mean and std of ``scores`` (models x examples), std floored at ``MIN_STD``.

    ``pooled`` (default: when fewer than ``PER_EXAMPLE_STD_MIN_MODELS`` models) uses one
    std for all examples, the root mean of the per-example variances.
    """
    scores = np.asarray(scores, dtype=np.float64)
    m = len(scores)
    if m < 2:
        raise ValueError("a Gaussian needs the scores of at least 2 models")
    if pooled is None:
        pooled = m < PER_EXAMPLE_STD_MIN_MODELS
    mu = scores.mean(0)
    var = scores.var(0, ddof=1)
    sd = np.full_like(mu, math.sqrt(var.mean())) if pooled else np.sqrt(var)
    return mu, np.maximum(sd, MIN_STD)


def gaussian_nll(x: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return 0.5 * ((x - mu) / sd) ** 2 + np.log(sd) + 0.5 * math.log(2 * math.pi)


def lira_statistics(
    ref: np.ndarray,
    unl: np.ndarray,
    pair: Sequence[int | None] | None = None,
    two_sided: bool | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """U-LiRA statistics of every (model, example): higher = looks less retrained.

    ``ref`` (K x N) and ``unl`` (S x N) are per-example scores of the retrained and the
    unlearned models. Every model is scored against a retrained Gaussian fitted on K - 1
    references: reference k against the fit without k; unlearned model j against the fit
    without reference ``pair[j]`` (the one sharing its seed), or, with no pair, the mean
    over the K leave-one-out fits. One-sided: the statistic is the negative
    log-likelihood under that Gaussian. Two-sided (default when S >=
    ``TWO_SIDED_MIN_UNLEARNED``): minus, in addition, the NLL under a Gaussian fitted on
    the unlearned models (leave-one-out for an unlearned model), i.e. the log-likelihood
    ratio ``log N_unlearned(s) - log N_retrained(s)``.
    """
    ref, unl = np.asarray(ref, np.float64), np.asarray(unl, np.float64)
    k, s = len(ref), len(unl)
    if k < 3:
        raise ValueError("U-LiRA needs at least 3 references (2 left after leave-one-out)")
    pair = list(pair) if pair is not None else [None] * s
    if len(pair) != s:
        raise ValueError("one pair index (or None) per unlearned model")
    two = s >= TWO_SIDED_MIN_UNLEARNED if two_sided is None else two_sided
    if two and s < 3:
        raise ValueError("the two-sided test needs at least 3 unlearned models")
    loo = [fit_gaussian(np.delete(ref, i, 0)) for i in range(k)]
    t_ref = np.stack([gaussian_nll(ref[i], *loo[i]) for i in range(k)])
    t_unl = np.stack([
        gaussian_nll(unl[j], *loo[p]) if p is not None
        else np.mean([gaussian_nll(unl[j], *f) for f in loo], 0)
        for j, p in enumerate(pair)
    ])  # fmt: skip
    if two:
        t_ref = t_ref - gaussian_nll(ref, *fit_gaussian(unl))
        t_unl = t_unl - np.stack(
            [gaussian_nll(unl[j], *fit_gaussian(np.delete(unl, j, 0))) for j in range(s)]
        )
    info = {
        "statistic": "two-sided: log N_unlearned(s) - log N_retrained(s)"
        if two
        else "one-sided: -log N_retrained(s) (too few unlearned models for their own Gaussian)",
        "std": "pooled over examples" if k - 1 < PER_EXAMPLE_STD_MIN_MODELS else "per example",
        "references": k,
        "unlearned_models": s,
    }
    return t_ref, t_unl, info


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float) -> float:
    """The highest true-positive rate at a false-positive rate of at most ``fpr``."""
    from sklearn.metrics import roc_curve

    f, t, _ = roc_curve(labels, scores)
    return float(t[f <= fpr].max())


def attack_summary(t_ref: np.ndarray, t_unl: np.ndarray) -> dict[str, float]:
    """AUC and TPR at 1 % and 0.1 % FPR of "unlearned" vs "retrained" over every
    (model, example) pair, in percent (50 = indistinguishable)."""
    from sklearn.metrics import roc_auc_score

    scores = np.concatenate([np.ravel(t_unl), np.ravel(t_ref)])
    labels = np.concatenate([np.ones(np.size(t_unl)), np.zeros(np.size(t_ref))])
    return {
        "AUC": 100.0 * float(roc_auc_score(labels, scores)),
        "TPR@1%FPR": 100.0 * tpr_at_fpr(labels, scores, 0.01),
        "TPR@0.1%FPR": 100.0 * tpr_at_fpr(labels, scores, 0.001),
    }


def epsilon_from_rates(fpr: np.ndarray, fnr: np.ndarray, delta: float = EPS_DELTA) -> np.ndarray:
    """The challenge's per-example epsilon from attacks' (FPR, FNR), over the last axis.

    Per attack ``max(log((1 - delta - FPR) / FNR), log((1 - delta - FNR) / FPR))``; an
    attack with FPR = FNR = 0 (perfect) or with both logs undefined (FPR = FNR = 1: the
    reversed attack is perfect) gives infinity; one with exactly one of FPR, FNR zero is
    discarded; epsilon is the maximum over attacks and 0.
    """
    fpr, fnr = np.asarray(fpr, np.float64), np.asarray(fnr, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        e1 = np.log(1.0 - delta - fpr) - np.log(fnr)
        e2 = np.log(1.0 - delta - fnr) - np.log(fpr)
    e = np.fmax(e1, e2)  # NaN only when both are
    e = np.where(np.isnan(e), np.inf, e)
    both0, one0 = (fpr == 0) & (fnr == 0), (fpr == 0) ^ (fnr == 0)
    e = np.where(both0, np.inf, np.where(one0, -np.inf, e))
    return np.maximum(e.max(-1), 0.0)


def per_example_epsilon(ref: np.ndarray, unl: np.ndarray, delta: float = EPS_DELTA) -> np.ndarray:
    """Epsilon per example (column) from threshold attacks on the per-model values ``ref``
    (K x N, retrained) and ``unl`` (S x N, unlearned): every observed value is a
    threshold, "unlearned" above it and, reversed, below it (unlearning may leave a
    sample more or less confident than retraining does)."""
    ref, unl = np.asarray(ref, np.float64), np.asarray(unl, np.float64)
    thr = np.concatenate([ref, unl])  # (M, N)
    fpr = (ref[None] >= thr[:, None]).mean(1)  # (M, N): "unlearned" when value >= threshold
    fnr = (unl[None] < thr[:, None]).mean(1)
    fpr, fnr = np.concatenate([fpr, 1 - fpr]), np.concatenate([fnr, 1 - fnr])  # both ways
    return epsilon_from_rates(fpr.T, fnr.T, delta)


def epsilon_scores(
    eps: np.ndarray, bin_width: float = EPS_BIN_WIDTH, bins: int = EPS_BINS
) -> np.ndarray:
    """Per-example score ``2 / 2**k``, ``k`` the bin index of epsilon (bins of
    ``bin_width`` from 0; k = 1 for epsilon in [0, bin_width), so the top score is 1;
    infinity falls in the last bin, 2 / 2**bins)."""
    k = np.digitize(np.asarray(eps, np.float64), np.arange(bins) * bin_width)
    return 2.0 / 2.0**k


def forgetting_quality(eps: np.ndarray, **kw: Any) -> float:
    """``F``: the mean per-example score (1 = every example in the lowest epsilon bin)."""
    return float(np.mean(epsilon_scores(eps, **kw)))


def epsilon_summary(eps: np.ndarray) -> dict[str, Any]:
    eps = np.asarray(eps, np.float64)
    k = np.digitize(eps, np.arange(EPS_BINS) * EPS_BIN_WIDTH)
    median = float(np.median(eps))
    return {
        "median": median if np.isfinite(median) else None,  # None: more than half unbounded
        "inf_fraction": float(np.isinf(eps).mean()),
        # examples per bin k = 1..EPS_BINS (epsilon in [(k-1)/2, k/2); the last bin is >= 6)
        "bin_counts": np.bincount(k, minlength=EPS_BINS + 1)[1:].tolist(),
    }


def utility_adjusted(f: float, ra_u: float, ta_u: float, ra_r: float, ta_r: float) -> float:
    """The challenge's final score: ``F x (RA_u / RA_r) x (TA_u / TA_r)``."""
    return float(f * (ra_u / ra_r) * (ta_u / ta_r)) if ra_r and ta_r else float("nan")


def concept_probe(
    pos: np.ndarray, neg: np.ndarray, seed: int = 0, c: float = 1.0
) -> dict[str, float]:
    """Logistic regression "concept vs not" on standardised features: trained on a seeded
    half of ``pos`` (concept) and of ``neg`` (the rest), tested on the other halves.
    Balanced accuracy and AUC in percent (50 = the concept cannot be read out)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    if len(pos) < 2 or len(neg) < 2:
        return {"balanced_accuracy": float("nan"), "AUC": float("nan"), "n_train": 0, "n_test": 0}
    rng = np.random.default_rng(seed)
    halves = [np.array_split(rng.permutation(len(a)), 2) for a in (pos, neg)]
    x_tr = np.concatenate([pos[halves[0][0]], neg[halves[1][0]]])
    y_tr = np.r_[np.ones(len(halves[0][0])), np.zeros(len(halves[1][0]))]
    x_te = np.concatenate([pos[halves[0][1]], neg[halves[1][1]]])
    y_te = np.r_[np.ones(len(halves[0][1])), np.zeros(len(halves[1][1]))]
    x_tr, x_te = np.nan_to_num(x_tr), np.nan_to_num(x_te)
    clf = make_pipeline(
        StandardScaler(), LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
    )
    clf.fit(x_tr, y_tr)
    return {
        "balanced_accuracy": 100.0 * float(balanced_accuracy_score(y_te, clf.predict(x_te))),
        "AUC": 100.0 * float(roc_auc_score(y_te, clf.decision_function(x_te))),
        "n_train": len(y_tr),
        "n_test": len(y_te),
    }


def null_auc(t_ref: np.ndarray) -> list[float]:
    """The U-LiRA AUC each reference would get in the unlearned model's place (its
    leave-one-out statistics against the other references'): what a genuinely retrained
    model scores, so the spread to read one unlearned model's AUC against."""
    from sklearn.metrics import roc_auc_score

    k, n = t_ref.shape
    labels = np.r_[np.ones(n), np.zeros((k - 1) * n)]
    return [
        100.0 * float(roc_auc_score(labels, np.r_[t_ref[i], np.delete(t_ref, i, 0).ravel()]))
        for i in range(k)
    ]


def summarize(
    ref_scores: np.ndarray,
    unl_scores: np.ndarray,
    pair: Sequence[int | None],
    ra_u: float,
    ta_u: float,
    ra_r: float,
    ta_r: float,
    delta: float = EPS_DELTA,
    groups: Sequence[str] | None = None,
) -> dict[str, Any]:
    """U-LiRA, epsilon, F and the utility-adjusted score of unlearned models' scores
    against the references' (the numbers a report stores). ``groups`` (one name per
    example, e.g. its class) adds ``by_class``: examples, score shift and U-LiRA AUC per
    group, which says which classes of a wider concept are over- or under-forgotten."""
    ref_scores, unl_scores = np.asarray(ref_scores), np.asarray(unl_scores)
    t_ref, t_unl, info = lira_statistics(ref_scores, unl_scores, pair)
    null = null_auc(t_ref)
    # Epsilon from threshold attacks on the scores themselves, as in the challenge (a
    # threshold chosen on the models a fitted statistic came from picks up its
    # leave-one-out shifts), without the references that share a seed (an
    # initialisation) with an unlearned model, as long as two remain.
    keep = [i for i in range(len(ref_scores)) if i not in set(pair)]
    keep = keep if len(keep) >= 2 else list(range(len(ref_scores)))
    eps = per_example_epsilon(ref_scores[keep], unl_scores, delta)
    f = forgetting_quality(eps)
    # which side of the references the unlearned models fall on: negative = less
    # confident in the forgotten labels than retrained models (over-forgetting), positive
    # = more (not forgotten enough)
    diff = unl_scores - ref_scores.mean(axis=0, keepdims=True)
    shift = float(np.median(diff))
    by_class = {}
    group_of = np.asarray(groups if groups is not None else [])
    for name in dict.fromkeys(group_of.tolist()):
        cols = group_of == name
        by_class[name] = {
            "examples": int(cols.sum()),
            "score_shift": float(np.median(diff[:, cols])),
            "AUC": attack_summary(t_ref[:, cols], t_unl[:, cols])["AUC"],
        }
    return {
        **info,
        "examples": int(ref_scores.shape[1]),
        "score_shift": shift,
        **attack_summary(t_ref, t_unl),
        "null_AUC": {"min": min(null), "median": float(np.median(null)), "max": max(null)},
        "epsilon": {**epsilon_summary(eps), "references": len(keep)},
        "delta": delta,
        "F": f,
        "RA_ratio": ra_u / ra_r if ra_r else float("nan"),
        "TA_ratio": ta_u / ta_r if ta_r else float("nan"),
        "score": utility_adjusted(f, ra_u, ta_u, ra_r, ta_r),
        **({"by_class": by_class} if by_class else {}),
    }

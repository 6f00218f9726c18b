"""The paper's metrics (docs/design.md): UA, RA, TA, MIA-efficacy, Gap, UA-F, UA-R."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

from tarf.request import Partitions
from tarf.training import forward_logits

METRIC_KEYS = ("UA", "RA", "TA", "MIA")


def _acc(pred: torch.Tensor, y: torch.Tensor) -> float:
    return 100.0 * (pred == y).float().mean().item() if len(y) else float("nan")


def true_label_confidence(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Softmax probability of the true label: the MIA's one feature. A diverged model's
    non-finite logits count as confidence 0 (the SVC cannot take NaN)."""
    conf = logits.float().softmax(1).gather(1, y.view(-1, 1)).flatten()
    return torch.nan_to_num(conf, nan=0.0).numpy().astype(np.float64)


def mia_efficacy(
    member_conf: np.ndarray, nonmember_conf: np.ndarray, target_conf: np.ndarray
) -> float:
    """MIA-efficacy as in the public SalUn / sparse-unlearning code.

    An RBF SVC (C=3, gamma="auto") learns member (train) vs non-member (test) from the
    true-label confidence; the score is 100 x the fraction of the target data it calls
    non-member. Higher means the target data looks less like training data.
    """
    from sklearn.svm import SVC

    if len(target_conf) == 0:
        return float("nan")
    x = np.concatenate([member_conf, nonmember_conf]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(member_conf)), np.zeros(len(nonmember_conf))])
    clf = SVC(C=3, gamma="auto", kernel="rbf")
    clf.fit(x, y)
    pred = clf.predict(target_conf.reshape(-1, 1))
    return 100.0 * float((pred == 0).mean())


def mia_extrapolated(
    member_conf: np.ndarray, nonmember_conf: np.ndarray, target_conf: np.ndarray
) -> float:
    """Percent of the target's confidences below every confidence the MIA's attack was fit
    on: there its verdict is the SVC's extrapolation, which can flip between 0 and 100
    from one model to the next (a fully forgotten D_t on a model that is almost always
    right)."""
    fit = np.concatenate([member_conf, nonmember_conf])
    if len(target_conf) == 0 or len(fit) == 0:
        return float("nan")
    return 100.0 * float((target_conf < fit.min()).mean())


def evaluate(
    model: nn.Module,
    x_train: torch.Tensor,
    y_train_model: torch.Tensor,
    x_test: torch.Tensor,
    y_test_model: torch.Tensor,
    parts: Partitions,
    device: torch.device,
    seed: int,
    model_mismatch: bool = False,
) -> dict[str, float]:
    """UA (on D_t), RA (on D_r), TA (on test_r), MIA (on D_t; with MIA_extrapolated, the
    percent of D_t outside the attack's range); UA-F / UA-R for model mismatch.

    Labels are in the model's domain. One batched forward pass over the train split
    and one over test_r; the MIA's members are |test_r| samples of D_r drawn with ``seed``.
    """
    needed = torch.cat([parts.target, parts.remaining]).unique()
    logits = forward_logits(model, x_train[needed], device)
    logits_train = torch.zeros(len(y_train_model), logits.shape[1])
    logits_train[needed] = logits
    logits_test = forward_logits(model, x_test[parts.test_remaining], device)
    pred = logits_train.argmax(1)
    y_test_r = y_test_model[parts.test_remaining]
    out = {
        "UA": _acc(pred[parts.target], y_train_model[parts.target]),
        "RA": _acc(pred[parts.remaining], y_train_model[parts.remaining]),
        "TA": _acc(logits_test.argmax(1), y_test_r),
    }
    g = torch.Generator().manual_seed(seed)
    n_mem = min(len(parts.test_remaining), len(parts.remaining))
    members = parts.remaining[torch.randperm(len(parts.remaining), generator=g)[:n_mem]]
    member_conf = true_label_confidence(logits_train[members], y_train_model[members])
    test_conf = true_label_confidence(logits_test, y_test_r)
    target_conf = true_label_confidence(logits_train[parts.target], y_train_model[parts.target])
    out["MIA"] = mia_efficacy(member_conf, test_conf, target_conf)
    out["MIA_extrapolated"] = mia_extrapolated(member_conf, test_conf, target_conf)
    if model_mismatch:
        out["UA-F"] = _acc(pred[parts.forget], y_train_model[parts.forget])
        out["UA-R"] = _acc(pred[parts.affected_remaining], y_train_model[parts.affected_remaining])
    return out


def gap(metrics: dict[str, float], reference: dict[str, float]) -> float:
    """Mean absolute difference to the retrained reference over UA, RA, TA, MIA (those
    both hold: without test data TA and MIA are missing or None)."""
    diffs = [
        abs(metrics[k] - reference[k])
        for k in METRIC_KEYS
        if metrics.get(k) is not None
        and reference.get(k) is not None
        and not math.isnan(metrics[k] - reference[k])
    ]
    return float(np.mean(diffs)) if diffs else float("nan")

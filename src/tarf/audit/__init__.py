"""A stronger audit than the paper's MIA: per-example likelihood ratios and a concept probe.

Design, in four steps (definitions and sources in ``docs/audit.md``):

1. **Per-example scores.** For a model and each sample of ``D_t``, the logit-scaled
   confidence ``log p_y - log(1 - p_y)`` of its model label, computed from the logits as
   ``z_y - logsumexp(z_{-y})``.
2. **References.** ``K`` retrained references, i.e. the task's reference for seeds
   ``0..K-1``, exactly ``cache.trained_model(..., parts.remaining, recipe, s, ...,
   "retrained")`` (the model cache shares them with ``tarf unlearn`` and ``tarf bench``).
   Each reference's statistics (its scores on ``D_t``, RA, TA, its concept probe) are
   cached on disk, one JSON per reference under a hash of its model key and the
   partitions (:func:`reference_stats`), so K can grow and every run reuses them.
3. **U-LiRA** (Hayes et al. 2024). Per example, a Gaussian is fitted to the references'
   scores, always leaving out the model being scored (leave-one-out), so a reference is
   never judged against a fit that contains itself; an unlearned model of seed ``s`` is
   judged against the fit without reference ``s``, which shares its initialisation. The
   statistic is the negative log-likelihood under that Gaussian (one-sided) or, with at
   least ``TWO_SIDED_MIN_UNLEARNED`` unlearned models, the log-likelihood ratio of an
   unlearned-model Gaussian against it. AUC and TPR at low FPR of telling unlearned from
   retrained pool all (model, example) pairs. From threshold attacks on the scores, per
   example, the NeurIPS 2023 challenge's epsilon and forgetting quality ``F``
   (Triantafillou et al. 2024), times ``RA_u / RA_r`` and ``TA_u / TA_r`` (references' mean).
4. **Concept probe.** A logistic regression on standardised penultimate features,
   concept (``D_t``) vs ``D_r`` (a subsample), trained on a seeded half of each and
   tested on the other half: how well the concept can still be read out of the features.

Three modules: ``stats`` holds the pure functions (NumPy in, numbers out); ``measure``
runs models: :func:`audit_run` audits one unlearned model (what ``tarf bench --audit``
stores under ``"audit"``), :func:`audit_request` runs a method for several seeds and
audits them together (``tarf audit``); ``text`` turns the result of ``audit_request``
into the table ``tarf audit`` prints (:func:`format_audit`).
"""

from tarf.audit.measure import (
    AUDIT_VERSION,
    PROBE_REMAINING,
    audit_request,
    audit_run,
    hiding,
    model_stats,
    reference_stats,
    stats_key,
    stats_path,
    target_classes,
)
from tarf.audit.stats import (
    EPS_BIN_WIDTH,
    EPS_BINS,
    EPS_DELTA,
    MIN_STD,
    PER_EXAMPLE_STD_MIN_MODELS,
    SCORE_CLIP,
    TWO_SIDED_MIN_UNLEARNED,
    attack_summary,
    concept_probe,
    epsilon_from_rates,
    epsilon_scores,
    epsilon_summary,
    fit_gaussian,
    forgetting_quality,
    gaussian_nll,
    lira_statistics,
    logit_confidence,
    null_auc,
    per_example_epsilon,
    summarize,
    tpr_at_fpr,
    utility_adjusted,
)
from tarf.audit.text import format_audit

__all__ = [
    "AUDIT_VERSION",
    "EPS_BINS",
    "EPS_BIN_WIDTH",
    "EPS_DELTA",
    "MIN_STD",
    "PER_EXAMPLE_STD_MIN_MODELS",
    "PROBE_REMAINING",
    "SCORE_CLIP",
    "TWO_SIDED_MIN_UNLEARNED",
    "attack_summary",
    "audit_request",
    "audit_run",
    "concept_probe",
    "epsilon_from_rates",
    "epsilon_scores",
    "epsilon_summary",
    "fit_gaussian",
    "forgetting_quality",
    "format_audit",
    "gaussian_nll",
    "hiding",
    "lira_statistics",
    "logit_confidence",
    "model_stats",
    "null_auc",
    "per_example_epsilon",
    "reference_stats",
    "stats_key",
    "stats_path",
    "summarize",
    "target_classes",
    "tpr_at_fpr",
    "utility_adjusted",
]

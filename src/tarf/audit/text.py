"""The audit as text: the table ``tarf audit`` prints."""

from __future__ import annotations

from typing import Any

from tarf.report import markdown_table

HEADER = ["seed", "UA", "RA", "TA", "Gap", "U-LiRA AUC", "(retrained: min-max)", "TPR@1%FPR",
          "TPR@0.1%FPR", "F", "score", "probe BA", "probe BA (retrained)"]  # fmt: skip


def format_audit(result: dict[str, Any]) -> str:
    """The result of :func:`tarf.audit.audit_request` as a headline (method, task,
    references), one table row per unlearned model and one for all of them pooled, how to
    read it and, when the concept has several classes, the score shift and AUC per class."""
    rows = [_row(str(r["seed"]), r["audit"], r["metrics"]) for r in result["runs"]]
    pooled = result["pooled"]
    if len(result["runs"]) > 1:
        rows.append(_row("pooled", pooled, {}))
    refs = result["references"]
    ra, ta = pooled["reference_RA"], pooled["reference_TA"]
    by_class = "; ".join(
        f"{c} {v['score_shift']:+.2f} / {v['AUC']:.1f}"
        for c, v in (pooled.get("by_class") or {}).items()
    )
    return (
        f"{result['method']} on {result['task']} ({result['dataset']}, {result['recipe']}); "
        f"{len(refs['seeds'])} retrained references (RA {ra:.2f}, TA {ta:.2f}); "
        f"{pooled['examples']} target examples\n"
        + markdown_table(HEADER, rows)
        + f"\nstatistic: {_statistics(result)}; std {pooled['std']}. AUC, TPR and probe in %: "
        "AUC 50 and TPR ~ FPR = indistinguishable from retrained (min-max: the AUC each "
        "reference gets in the unlearned model's place); F, score: 1 = best."
        + (f"\nby class{' (pooled)' if len(result['runs']) > 1 else ''}, score shift / U-LiRA AUC: {by_class} (shift < 0: over-forgotten, "
           "> 0: under-forgotten)" if by_class else "")
    )  # fmt: skip


def _statistics(result: dict[str, Any]) -> str:
    """The test behind each row: one line when every row uses the same, else per row."""
    said = {str(r["seed"]): r["audit"]["statistic"] for r in result["runs"]}
    if len(result["runs"]) > 1:
        said["pooled"] = result["pooled"]["statistic"]
    if len(set(said.values())) == 1:
        return next(iter(said.values()))
    runs = {v for k, v in said.items() if k != "pooled"}
    if len(runs) == 1:
        return f"per seed {runs.pop()}; pooled {said['pooled']}"
    return "; ".join(f"{k}: {v}" for k, v in said.items())


def _row(name: str, a: dict[str, Any], m: dict[str, Any]) -> list[Any]:
    p, null = a["probe"], a["null_AUC"]
    return [name, m.get("UA"), m.get("RA"), m.get("TA"), m.get("Gap"), a["AUC"],
            f"{null['min']:.1f}-{null['max']:.1f}", a["TPR@1%FPR"], a["TPR@0.1%FPR"],
            f"{a['F']:.3f}", f"{a['score']:.3f}", p["unlearned"]["balanced_accuracy"],
            p["retrained"]["balanced_accuracy"]]  # fmt: skip

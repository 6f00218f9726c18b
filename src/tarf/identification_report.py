"""The lines a run's summary gives TARF's identification: what was set aside, how the
count was decided, and the top of the ranking (:func:`tarf.report.run_lines`)."""

from __future__ import annotations

import math
from typing import Any

from tarf.methods.tarf_identify import NEARNESS

# How each nearness signal's values read in the summary.
NEARNESS_UNITS = {
    "features": "cosine to D_f, original model",
    "outputs": "D_f's mean log-probability of it, D_f's labels ruled out, original model",
}


def _signed(value: float | None, digits: int = 3) -> str:
    """A signed number with ``digits`` significant digits: small differences stay visible."""
    # + 0.0 turns a negative zero into zero: "+0", never "-0"
    return "?" if value is None or math.isnan(value) else f"{value + 0.0:+.{digits}g}"


def identification_lines(report: dict[str, Any]) -> list[str]:
    """What TARF's identification set aside (how many, from the prior or estimated, and
    why) and the top of its ranking (by representation, or after Phase I); nothing for
    other methods."""
    ident = report.get("identification")
    if not ident:
        return []
    source = ident.get("n_source", "prior")
    if ident.get("skipped"):
        return [f"set aside nothing ({ident['skipped']})"]
    if ident.get("level") == "class":
        what = f"set aside {', '.join(map(str, ident['classes'])) or 'nothing'} ({source} n={ident['n']})"
    else:
        what = (
            f"set aside {ident['set_aside_samples']} of {ident['scored_samples']} scored "
            f"samples ({source}, fraction {ident['fraction']:.4f})"
        )
    auto = ident.get("auto")
    if auto and "beta" in auto:  # instance level, calibrated on D_f
        what += (
            f"; decided by the {auto['decided_by']}: I_con at or above {auto['beta']:.3g}, "
            f"the {auto['quantile']:.0%} quantile of D_f's own"
            + (f" (declined: {auto['declined']})" if auto.get("declined") else "")
        )
    elif auto:
        what += (
            f"; decided by the {auto['decided_by']}: largest gap {auto['statistic']:.2f} "
            f"robust SDs vs threshold {auto['threshold']:.2f} (margin {_signed(auto['margin'])})"
        )
        if auto.get("gap_between"):
            what += f", between {auto['gap_between'][0]} and {auto['gap_between'][1]}"
    lines = [what]
    signal = ident.get("signal")
    near = ident.get(NEARNESS.get(signal, ""))
    if ident.get("level") == "class" and near:
        top = ", ".join(f"{c} ({v:.3f})" for c, v in list(near.items())[:5])
        lines.append(f"top of the {signal} ranking ({NEARNESS_UNITS[signal]}): {top}")
    elif ident.get("level") == "class" and ident.get("drops"):
        loss = ident.get("loss_increase", {})
        top = ", ".join(
            f"{c} (loss {_signed(loss.get(c))} nats, accuracy {_signed(-d)} points)"
            for c, d in list(ident["drops"].items())[:5]
        )
        lines.append(f"top of the {ident.get('signal', 'accuracy')} ranking after Phase I: {top}")
    return lines

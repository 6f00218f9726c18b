"""Target identification across concepts (paper Fig. 4a and 13), with a known or estimated prior.

For every superclass of a hierarchy taken as the target concept, with ``given`` of its
classes handed over as ``D_f`` (a target-mismatch request on the class model), run
TARF's Phase I once and ask: do the concept's other classes rise to the top of the
ranking of per-class loss increase (and accuracy drop)? Scored three ways against the
truth (the concept's classes not given):

* ``oracle``: the top ``n`` classes, ``n`` = the true count (the paper's prior);
* ``auto``: the classes ``--prior auto`` sets aside (:func:`tarf.identify.auto_count`);
* ``top10``: how many of them are among the ten largest (the paper's Fig. 13 view).

Phase I sees only ``D_f``, ``D_un`` and the model (the same :class:`UnlearnData` the
method gets); the truth is used for scoring only. One JSON per (concept, seed) is
written atomically with the settings it was made with, and skipped when present, so an
interrupted sweep resumes; runs made with other settings are refused, not mixed in.
"""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path
from typing import Any

import torch

from tarf.data.core import ImageDataset
from tarf.domains import Level
from tarf.identify import auto_count, largest_gap
from tarf.io import write_json, write_text
from tarf.methods.base import UnlearnContext, config_dict, config_diff
from tarf.methods.tarf import TARF
from tarf.methods.tarf_identify import NEARNESS
from tarf.recipes import Recipe
from tarf.request import UnlearningRequest

# ranked by: nearness to D_f under the original model, in representation (the class mean
# of tarf_identify.feature_nearness, a cosine) or in its outputs (output_nearness: D_f's
# mean log-probability of the class with D_f's labels ruled out, nats) | mean loss
# increase over Phase I (nats) | accuracy drop (points); the nearness signals only where
# the run measured them (runs made before they were recorded lack them)
SIGNALS = ("features", "outputs", "loss", "accuracy")


def given_classes(hierarchy, superclass: int, given: int, seed: int) -> list[str]:
    """The ``given`` classes of ``superclass`` handed over as ``D_f``: a seeded choice
    (the same for every run with this seed), in the hierarchy's class order."""
    members = hierarchy.classes_of(superclass)
    rng = random.Random(f"{seed}:{hierarchy.superclass_names[superclass]}")
    chosen = sorted(rng.sample(members, given))
    return [hierarchy.class_names[c] for c in chosen]


def score(ranked: list[str], chosen: list[str], truth: set[str]) -> dict[str, Any]:
    """Precision and recall of ``chosen`` against ``truth``, and the truth's ranks.

    Precision of an empty choice is 1 when the truth is empty too, else 0 (nothing
    right was found); recall of an empty truth is 1 (nothing to find)."""
    hits = len(set(chosen) & truth)
    return {
        "n": len(chosen),
        "precision": hits / len(chosen) if chosen else float(not truth),
        "recall": hits / len(truth) if truth else 1.0,
        "ranks": {c: ranked.index(c) + 1 for c in sorted(truth) if c in ranked},
        "top10_hits": len(set(ranked[:10]) & truth),
    }


def identify_concept(
    ds: ImageDataset,
    original: torch.nn.Module,
    superclass: int,
    given: int,
    recipe: Recipe,
    seed: int,
    device: torch.device,
    tarf_params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Phase I for one concept; the ranking under both signals and the three scores."""
    from tarf.run import unlearn_data

    h = ds.hierarchy
    concept = h.superclass_names[superclass]
    forget = given_classes(h, superclass, given, seed)
    request = UnlearningRequest.from_names(h, forget, Level.CLASS, [concept])
    data = unlearn_data(ds, request)
    truth = {h.class_names[c] for c in h.classes_of(superclass)} - set(forget)
    ctx = UnlearnContext(
        device=device, recipe=recipe, seed=seed, task=request.task.name,
        dataset=ds.name, train_size=len(ds.y_train),
    )  # fmt: skip
    method = TARF(**{**(tarf_params or {}), "stop_after_identification": True})
    torch.manual_seed(seed)
    result = method.run(original, data, ctx)
    ident = result.identification
    out: dict[str, Any] = {
        "dataset": ds.name,
        "concept": concept,
        "given": forget,
        "truth": sorted(truth),
        "seed": seed,
        "task": request.task.name,
        "k": result.details.get("k"),  # Phase II's k (Phase I's weight only with phase1=pass)
        "phase1": result.details.get("phase1"),  # phase1=chance or floor: steps and target
        "signal": ident["signal"],  # the signal the run's identification ranked by
        "signals": {},
        "warnings": list(result.warnings),  # Phase I moved nothing, a margin within noise
    }
    values = {"loss": ident["loss_increase"], "accuracy": ident["drops"]}
    for signal, key in NEARNESS.items():
        if key in ident:
            values[signal] = ident[key]
    for signal in (s for s in SIGNALS if s in values):
        v = values[signal]
        ranked = sorted(v, key=lambda c: -v[c])
        decision = largest_gap([v[c] for c in ranked])
        # What --prior auto does on this target-mismatch request (tarf.identify.auto_count).
        # An all-matched request ("forget exactly the given classes") hands TARF the same
        # data, so the data alone would estimate the same n; there the task sets n = 0.
        n, decided_by = auto_count(decision, request.task.name, method.config.auto_floor)
        auto = ranked[:n]
        out["signals"][signal] = {
            "top10": {c: v[c] for c in ranked[:10]},
            "oracle": score(ranked, ranked[: len(truth)], truth),
            "auto": {
                **score(ranked, auto, truth),
                "decision": decision.to_dict(),
                "decided_by": decided_by,
            },
        }
    return out


def sweep(
    ds: ImageDataset,
    recipe: Recipe,
    seeds: list[int],
    device: torch.device,
    out_dir: str | Path,
    given: int = 2,
    concepts: list[str] | None = None,
    tarf_params: dict[str, Any] | None = None,
    log=print,
) -> list[dict[str, Any]]:
    """Identification for every concept (superclass with more than ``given`` classes)
    and seed; results under ``out_dir/runs``, summaries beside them."""
    from tarf.cache import prepare_dataset, trained_model
    from tarf.training import progress

    ds = prepare_dataset(ds, recipe)
    h = ds.hierarchy
    out_dir = Path(out_dir)
    ids = [s for s in range(h.num_superclasses) if len(h.classes_of(s)) > given]
    if concepts:
        ids = [h.resolve(c)[1] for c in concepts]
        for name, s in zip(concepts, ids):
            if h.resolve(name)[0] != Level.SUPERCLASS:
                raise ValueError(f"{name!r} is a class; --concepts takes superclass names")
            if len(h.classes_of(s)) <= given:
                raise ValueError(
                    f"{name!r} has {len(h.classes_of(s))} classes: nothing is left to identify "
                    f"when {given} are given (use a smaller --given)"
                )
    if not ids:
        largest = max(len(h.classes_of(s)) for s in range(h.num_superclasses))
        raise ValueError(
            f"no superclass of {h.name} has more than {given} classes (the largest has "
            f"{largest}): nothing is left to identify; use a smaller --given"
        )
    ids = list(dict.fromkeys(ids))  # a concept named twice runs (and counts) once
    tarf_params = dict(tarf_params or {})
    check_params(tarf_params)
    # what a run file was made with (TARF's whole config, as a bench report holds it): a
    # folder of runs made otherwise is refused, not resumed
    config = config_dict(TARF(**tarf_params))
    settings = json.loads(json.dumps({"dataset": ds.name, "recipe": recipe.name,
                                      "config": config}))  # fmt: skip
    path_of = {
        (seed, s): out_dir / "runs" / f"{_slug(h.superclass_names[s])}_s{seed}.json"
        for seed in seeds for s in ids
    }  # fmt: skip
    done = {key: _read(path) for key, path in path_of.items() if path.exists()}
    for (seed, s), r in done.items():
        differs = _other_settings(r, settings, given_classes(h, s, given, seed))
        if differs:
            raise ValueError(
                f"{path_of[(seed, s)]} was made with {', '.join(t for t, _ in differs.values())}; "
                f"this run asks for {', '.join(m for _, m in differs.values())}: give another "
                f"--out, or delete {out_dir / 'runs'} to redo its runs"
            )
    results = []
    everything = torch.arange(len(ds.y_train))
    for seed in seeds:
        original = None  # trained (or fetched) only when a run of this seed is missing
        for s in progress(ids, desc=f"identify (seed {seed})"):
            if (seed, s) in done:
                results.append(done[(seed, s)])
                continue
            if original is None:
                probe_request = UnlearningRequest.from_names(
                    h, [h.class_names[h.classes_of(ids[0])[0]]], Level.CLASS, prior_classes=0
                )
                original = trained_model(
                    ds, probe_request, everything, recipe, seed, device, "original"
                ).model
            r = identify_concept(ds, original, s, given, recipe, seed, device, tarf_params)
            r.update(recipe=recipe.name, config=settings["config"])  # (dataset: in r)
            write_json(path_of[(seed, s)], r)
            signal = _ranked_by(r)
            sig = r["signals"][signal]
            log(
                f"{r['concept']} (given {', '.join(r['given'])}; seed {seed}; ranked by "
                f"{signal}): oracle recall {sig['oracle']['recall']:.2f}, auto "
                f"n={sig['auto']['n']} P={sig['auto']['precision']:.2f} "
                f"R={sig['auto']['recall']:.2f}"
            )
            for warning in r["warnings"]:
                log(f"warning: {r['concept']}, seed {seed}: {warning}")
            results.append(r)
    write_summary(results, out_dir)
    return results


def check_params(tarf_params: dict[str, Any]) -> None:
    """Settings the sweep cannot score, refused before any work."""
    if tarf_params.get("identification", "class") != "class":
        raise ValueError(
            "identification=instance sets aside samples, not classes, so there is no class "
            "ranking to score; leave it out (tarf analyze identify studies identification=class)"
        )


def _other_settings(
    run: dict[str, Any], settings: dict[str, Any], given: list[str]
) -> dict[str, tuple[str, str]]:
    """What a run file was made with that differs from this sweep: what -> (the file's,
    this sweep's). Its given classes (their count, or a hierarchy grouping them
    otherwise), dataset, recipe and TARF's whole config; a run written before its config
    was recorded is compared on what it does record, its ranking signal and ``k``."""
    out = {}
    if run["given"] != given:
        out["given"] = (f"given {', '.join(run['given'])}", f"given {', '.join(given)}")
    for key in ("dataset", "recipe"):
        if run.get(key) not in (None, settings[key]):
            out[key] = (f"--{key} {run[key]}", f"--{key} {settings[key]}")
    mine, config = settings["config"], run.get("config")
    if config is None:
        # (its k is the one it resolved: comparable only with a k this sweep sets)
        made = {"class_signal": _ranked_by(run), "k": run.get("k") if mine.get("k") else None}
        made = {k: v for k, v in made.items() if v is not None and v != mine.get(k)}
    else:
        made = {k: have for k, (have, _) in config_diff(config, mine).items()}
    if made:
        out["config"] = (_set_text(made), _set_text({k: mine.get(k) for k in made}))
    return out


def _set_text(config: dict[str, Any]) -> str:
    """Settings as ``--set`` options a user could type (lists comma-joined; None, "derived
    from the run", as ``none``)."""

    def text(v: Any) -> str:
        if isinstance(v, (list, tuple)):
            return ",".join(map(str, v))
        return "none" if v is None else str(v)

    return " ".join(f"--set {k}={text(v)}" for k, v in sorted(config.items()))


def _ranked_by(r: dict[str, Any]) -> str:
    """The signal a run ranked by (runs written before it was recorded: ``loss``)."""
    return r["signal"] if r.get("signal") in r["signals"] else "loss"


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name).strip("-")


def _read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def summary_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (concept, seed, signal) with the three scores."""
    rows = []
    for r in results:
        for signal, s in r["signals"].items():
            rows.append({
                "concept": r["concept"], "seed": r["seed"], "signal": signal,
                "given": "+".join(r["given"]), "n_true": len(r["truth"]),
                "oracle_recall": round(s["oracle"]["recall"], 3),
                "top10_hits": s["oracle"]["top10_hits"],
                "auto_n": s["auto"]["n"], "auto_precision": round(s["auto"]["precision"], 3),
                "auto_recall": round(s["auto"]["recall"], 3),
                "auto_margin": s["auto"]["decision"].get("margin"),
            })  # fmt: skip
    return rows


def write_summary(results: list[dict[str, Any]], out_dir: str | Path) -> None:
    """``identification.csv`` (every row), ``identification.md`` (per-concept table and
    means per signal) and ``identification.png`` (the top-10 of each concept)."""
    out_dir = Path(out_dir)
    rows = summary_rows(results)
    if not rows:
        return
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
    write_text(out_dir / "identification.csv", buf.getvalue())
    warned = [
        f"- {r['concept']}, seed {r['seed']}: {w}" for r in results for w in r.get("warnings", [])
    ]
    notes = (
        "\nWarnings of the runs (TARF's own, as `tarf unlearn` prints them):\n\n"
        + "\n".join(warned)
        + "\n"
    )
    write_text(out_dir / "identification.md", markdown(rows) + (notes if warned else ""))
    plot_top10(results, out_dir / "identification.png", _ranked_by(results[0]))


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def markdown(rows: list[dict[str, Any]]) -> str:
    cols = ["concept", "given", "n_true", "seed", "signal", "oracle_recall", "top10_hits",
            "auto_n", "auto_precision", "auto_recall", "auto_margin"]  # fmt: skip
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    lines += ["", "| signal | runs | oracle recall | top-10 hits / n | auto precision | "
              "auto recall | auto n = n_true | auto n = 0 |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for signal in sorted({r["signal"] for r in rows}):
        rs = [r for r in rows if r["signal"] == signal]
        lines.append(
            f"| {signal} | {len(rs)} | {_mean([r['oracle_recall'] for r in rs]):.3f} | "
            f"{_mean([r['top10_hits'] / r['n_true'] for r in rs]):.3f} | "
            f"{_mean([r['auto_precision'] for r in rs]):.3f} | "
            f"{_mean([r['auto_recall'] for r in rs]):.3f} | "
            f"{sum(r['auto_n'] == r['n_true'] for r in rs)}/{len(rs)} | "
            f"{sum(r['auto_n'] == 0 for r in rs)}/{len(rs)} |"
        )
    return "\n".join(lines) + "\n"


PLOT_UNITS = {
    "features": "nearness to D_f in representation, original model, cosine",
    "outputs": "D_f's mean log-probability of the class, D_f's labels ruled out, original model, nats",
    "loss": "mean loss increase over Phase I, nats",
    "accuracy": "accuracy drop over Phase I, points",
}


def plot_top10(results: list[dict[str, Any]], path: str | Path, signal: str = "loss") -> None:
    """Paper Fig. 13 as one grid: a row per concept, its ten largest ``signal`` values
    left to right, the concept's other classes blue, everything else grey; the auto
    rule's cut as a black bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tarf.io import atomic_write

    rs = sorted((r for r in results), key=lambda r: (r["concept"], r["seed"]))
    fig, ax = plt.subplots(figsize=(13, 0.42 * len(rs) + 1.2))
    for i, r in enumerate(rs):
        s = r["signals"].get(signal) or r["signals"][_ranked_by(r)]
        for j, (c, v) in enumerate(s["top10"].items()):
            colour = "#4a7fd6" if c in r["truth"] else "#d0d0d0"
            ax.add_patch(plt.Rectangle((j, i - 0.42), 0.96, 0.84, color=colour))
            ax.text(j + 0.48, i, f"{c}\n{v:.2f}", ha="center", va="center", fontsize=6)
        n = s["auto"]["n"]
        if 0 < n <= 10:  # solid where the test decided, dashed where the task's floor did
            floor = s["auto"].get("decided_by") == "task floor"
            ax.plot([n - 0.02, n - 0.02], [i - 0.45, i + 0.45], color="black", lw=2,
                    linestyle="--" if floor else "-")  # fmt: skip
    ax.set_xlim(0, 10)
    ax.set_ylim(len(rs) - 0.5, -0.5)
    ax.set_yticks(range(len(rs)))
    ax.set_yticklabels([f"{r['concept']} (s{r['seed']}; given {'+'.join(r['given'])})"
                        for r in rs], fontsize=7)  # fmt: skip
    ax.set_xticks([x + 0.48 for x in range(10)])
    ax.set_xticklabels([str(x + 1) for x in range(10)])
    unit = PLOT_UNITS[signal]
    ax.set_xlabel(f"rank ({unit})\nblue: the concept's other classes; "
                  "black bar: --prior auto's cut (dashed: the task's floor)")  # fmt: skip
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    plt.close(fig)

"""The library entry points for a user's own model and data.

    model2, report = tarf.unlearn(model, (x, y), request, method="tarf", test=(xt, yt))
    metrics = tarf.evaluate(model2, (x, y), request, test=(xt, yt), reference=retrained)

``model`` is any ``torch.nn.Module`` classifier (logits out), trained however the user
likes; ``data`` is ``(x, y)`` tensors or arrays, or a ``torch.utils.data.Dataset`` of
``(x, y)`` pairs, with ``y`` the class ids (or names) of the hierarchy's classes, the
finest level, whatever the model predicts. The same request -> partitions -> method ->
metrics path as ``tarf unlearn`` runs on it; only the original model comes from the
user instead of tarf's cache, and the retrained reference too, if there is one.

What reaches the model: uint8 images become floats in [0, 1] (``x / 255``, what
torchvision's ``ToTensor`` gives, and what tarf's own models take); float data reaches it
unchanged, in its own shape. Everything is held in memory, as elsewhere in tarf.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import json
import math
import numbers
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from tarf.adapter import (
    DataLike,
    InputAdapter,
    PreparedData,
    check_label_domain,
    check_label_mapping,
    first_input,
    infer_model_labels,
    label_mapping_problem,
    model_device,
)
from tarf.devices import pick_device
from tarf.domains import RANDOM
from tarf.hierarchy import LabelHierarchy
from tarf.methods.base import Method, UnlearnContext, get_method
from tarf.metrics import evaluate as _paper_metrics
from tarf.metrics import gap
from tarf.recipes import Recipe
from tarf.report import run_summary
from tarf.request import UnlearningRequest
from tarf.run import execute, make_unlearn_data
from tarf.schema import Report
from tarf.training import forward_logits


class TarfWarning(UserWarning):
    """A result not to trust as it stands: a run that likely failed (it forgot little, its
    identification is noise, it damaged the model), a label mapping that cannot be
    right, a reference not retrained without the concept. The message names the cause
    and the fix; the report (or :func:`evaluate`'s result) holds it under ``warnings``."""


HierarchyLike = LabelHierarchy | Mapping[str, Any] | str | Path
RequestLike = UnlearningRequest | Mapping[str, Any]

__all__ = [
    "DataLike", "HierarchyLike", "RequestLike", "InputAdapter", "TarfWarning", "evaluate",
    "load_hierarchy",
    "make_request", "summary", "unlearn",
]  # fmt: skip


def load_hierarchy(
    hierarchy: HierarchyLike, class_names: Sequence[str] | None = None
) -> LabelHierarchy:
    """A :class:`LabelHierarchy`, a dict (``{class: superclass}`` or ``{superclass:
    [classes]}``, either with an optional ``"class_order"`` list), or a JSON/YAML file of
    either. ``class_names`` (the class of each label id, in order) or ``class_order`` fixes
    the ids; by default they follow the order classes are listed in."""
    if isinstance(hierarchy, LabelHierarchy):
        return hierarchy
    if isinstance(hierarchy, (str, Path)):
        return LabelHierarchy.from_file(hierarchy, class_order=class_names)
    if isinstance(hierarchy, Mapping):
        return LabelHierarchy.from_dict("user", hierarchy, class_names, where="hierarchy")
    raise ValueError(
        "hierarchy must map class names to superclass names ({'boy': 'people', ...}), "
        "superclasses to class lists ({'people': ['boy', ...]}), or be a JSON/YAML file of "
        f"either; got {type(hierarchy).__name__}"
    )


def make_request(
    hierarchy: HierarchyLike,
    forget: str | Sequence[str] | None = None,
    target: str | Sequence[str] | None = None,
    *,
    model_labels: str = "class",
    prior: int | str | None = None,
    class_names: Sequence[str] | None = None,
    task: str | None = None,
    forget_fraction: float | None = None,
    forget_seed: int = 0,
) -> UnlearningRequest:
    """A deletion request: the forget data's names, the concept (``target``, ground truth
    for evaluation only), the model's label level and, optionally, TARF's prior (a count,
    or ``"auto"`` to estimate it). Unknown names fail here, with the closest valid ones.

    ``forget_fraction``: forget only a seeded part of each forget class (the sub-set
    level), drawn with ``forget_seed``. ``task="random"``: random forgetting, a seeded
    ``forget_fraction`` (default 0.1) of the whole training set, every class; it takes
    no ``forget``, ``target`` or prior > 0 (the drawn samples are the target)."""
    if task not in (None, RANDOM):
        raise ValueError(
            f"task={task!r}: only {RANDOM!r} (random forgetting) is given by name; the other "
            "tasks follow from forget, target and model_labels"
        )
    if task is None and forget is None:
        raise ValueError(
            "give forget (the names of the forget data), or task='random' for random forgetting"
        )
    h = load_hierarchy(hierarchy, class_names)
    return UnlearningRequest.from_names(
        h, forget, model_labels, target, prior, forget_fraction, forget_seed, task == RANDOM
    )


def _resolve_request(
    request: RequestLike, hierarchy: HierarchyLike | None, model: nn.Module, x: Any
) -> UnlearningRequest:
    if isinstance(request, UnlearningRequest):
        if hierarchy is not None:
            raise ValueError(
                "hierarchy= is for a dict request; a make_request result holds its own "
                "hierarchy: drop hierarchy=, or make the request with it"
            )
        return request
    if not isinstance(request, Mapping):
        raise ValueError("request must be an UnlearningRequest (tarf.make_request) or a dict")
    if (hierarchy is None) == ("hierarchy" not in request):
        raise ValueError(
            "a dict request needs one hierarchy: hierarchy=... or request['hierarchy'], "
            + ("not both" if hierarchy is not None else "none was given")
        )
    spec = dict(request)
    keys = list(inspect.signature(make_request).parameters)
    for key in spec:
        if key not in keys:
            close = difflib.get_close_matches(str(key), keys, n=1)
            raise ValueError(
                f"request key {key!r} is not one of make_request's"
                + (f" (closest: {close[0]!r})" if close else "")
                + f"; valid: {', '.join(keys)}"
            )
    h = load_hierarchy(spec.pop("hierarchy", hierarchy), spec.pop("class_names", None))
    if spec.get("model_labels") is None:
        spec["model_labels"] = infer_model_labels(model, h, first_input(x))
    return make_request(h, **spec)


def _recipe(train_epochs: int, batch_size: int, augment: bool, image_like: bool) -> Recipe:
    """The budget rule needs the original's training length (one run costs at most a
    tenth of it); augmentation (crop + flip) only for images, on request."""
    for name, value in (("train_epochs", train_epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name}={value!r}: give a whole number >= 1")
    aug = augment and image_like
    return Recipe(
        name="user", arch="user", epochs=train_epochs, batch_size=batch_size, lr=0.0,
        schedule="onecycle", crop_pad=2 if aug else 0, flip=aug, unlearn_batch_size=batch_size,
    )  # fmt: skip


def _metrics(
    model: nn.Module,
    prep: PreparedData,
    request: UnlearningRequest,
    device: torch.device,
    seed: int,
) -> dict[str, float | None]:
    """UA, RA, TA, MIA (docs/design.md); without test data, only UA and RA."""
    mm = request.task.ua_split
    p = prep.parts
    if prep.has_test and len(p.test_remaining):
        return _paper_metrics(
            model, prep.x, prep.y_model, prep.x_test, prep.y_test_model, p, device, seed, mm
        )
    pred = forward_logits(model, prep.x, device).argmax(1)

    def acc(idx: torch.Tensor) -> float:
        return (
            100.0 * (pred[idx] == prep.y_model[idx]).float().mean().item() if len(idx) else math.nan
        )

    out: dict[str, float | None] = {
        "UA": acc(p.target),
        "RA": acc(p.remaining),
        "TA": None,
        "MIA": None,
    }
    if mm:
        out["UA-F"], out["UA-R"] = acc(p.forget), acc(p.affected_remaining)
    return out


def _notes(request: UnlearningRequest, prep: PreparedData, has_reference: bool) -> list[str]:
    notes, has_test = [], prep.has_test
    if prep.pixel_floats:
        notes.append(
            "x holds floats of whole numbers 0-255, which reach the model as they are; if it "
            "was trained on images scaled to [0, 1], pass uint8 images (they reach it as "
            "x / 255) or x / 255"
        )
    if not has_reference:
        notes.append(
            "no retrained reference: Gap and the reference's metrics are unavailable "
            "(reference= in Python, --reference: a model retrained without the target concept)"
        )
    if not request.has_reference:
        notes.append("the concept is unnamed: UA is measured on D_f, RA on D_un")
    if not has_test:
        notes.append(
            "no test data: TA and MIA need held-out samples (test= in Python, --test or "
            "x_test/y_test in the .npz)"
            + ("; the Gap is over UA and RA only" if has_reference else "")
        )
    return notes


def _reference_metrics(
    reference: nn.Module, prep: PreparedData, req: UnlearningRequest, dev: torch.device,
    seed: int, check_labels: bool,
) -> dict[str, float | None]:  # fmt: skip
    """The reference measured as the model is, its output size and (``check_labels``) its
    label mapping on the retained data checked first."""
    wrapped = _checked(reference, prep, req, dev, "reference")
    if check_labels:
        check_label_mapping(wrapped, prep, req, dev, role="the reference")
    return _metrics(wrapped, prep, req, dev, seed)


def _reference_problem(prep: PreparedData, reference: dict[str, Any]) -> list[str]:
    """A reference retrained without the concept cannot give the concept's samples labels
    it never saw (when no kept sample has them): one that does was not retrained so."""
    p, ua = prep.parts, reference.get("UA")
    concept = set(prep.y_model[p.target].tolist())
    if ua is None or ua <= 20.0 or not concept or concept & set(prep.y_model[p.remaining].tolist()):
        return []
    return [
        f"the reference gives {ua:.1f}% of the concept's samples their labels, which a model "
        "retrained without the concept never saw, so it was not retrained without it and "
        "the Gap against it means little; pass a model trained on the data without the concept"
    ]


def _sample(prep: PreparedData, device: torch.device) -> torch.Tensor:
    return prep.x[:2].to(device).float() / 255


def _check_module(model: Any, role: str) -> None:
    """A saved file or a state dict where a model belongs: say how to make the module."""
    if model is None and role == "reference" or isinstance(model, nn.Module):
        return
    hint = ""
    if isinstance(model, dict):
        hint = ": a state dict? load it into its architecture first (net.load_state_dict(sd))"
    elif isinstance(model, (str, Path)):
        hint = (": a path? load the model first (torch.jit.load(path)); from the command line, "
                "`tarf unlearn-model` and `tarf eval-model` take files")  # fmt: skip
    raise TypeError(f"{role} must be a torch.nn.Module, got {type(model).__name__}{hint}")


def _device(device: str | torch.device | None, model: nn.Module) -> torch.device:
    if device is None:
        return model_device(model)
    return pick_device(device, given_as="device=")


@contextlib.contextmanager
def _devices_kept(*models: nn.Module | None) -> Iterator[None]:
    """Running on ``device=`` moves the user's own model (``module.to`` works in place):
    each goes back where it was, so the input is not modified."""
    where = [(m, model_device(m)) for m in models if m is not None]
    try:
        yield
    finally:
        for m, dev in where:
            m.to(dev)


def _checked(
    model: nn.Module, prep: PreparedData, req: UnlearningRequest, dev: torch.device,
    role: str = "model",
):  # fmt: skip
    """The user's model (or reference) behind the input adapter, its output size checked."""
    wrapped = prep.wrap(model.to(dev))
    check_label_domain(wrapped, req, _sample(prep, dev), role)
    return wrapped


def evaluate(
    model: nn.Module,
    data: DataLike,
    request: RequestLike,
    *,
    test: DataLike | None = None,
    reference: nn.Module | None = None,
    hierarchy: HierarchyLike | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    check_labels: bool = True,
) -> dict[str, Any]:
    """The paper's metrics of ``model`` on a request: UA (on ``D_t``), RA (on ``D_r``),
    TA (on ``test_r``), MIA, and with a retrained ``reference`` its metrics and the Gap.
    Without one it says so; without ``test`` there is no TA or MIA.

    ``check_labels``: a reference near chance on the retained data is refused (a wrong
    label mapping); a model near chance is measured, with a warning (it may be one
    unlearning damaged), unless a reference has shown the mapping right. The result's
    ``warnings`` (each also a :class:`TarfWarning`) hold that, and a reference that still
    gives the concept labels it never saw (not retrained without it)."""
    _check_module(model, "model")
    _check_module(reference, "reference")
    with _devices_kept(model, reference):  # moved to the run's device, then back
        req = _resolve_request(request, hierarchy, model, data)
        dev = _device(device, model)
        prep = PreparedData(data, test, req)
        out: dict[str, Any] = {"task": req.task.name, "reference": None, "warnings": []}
        wrapped = _checked(model, prep, req, dev)
        if reference is not None:
            out["reference"] = _reference_metrics(reference, prep, req, dev, seed, check_labels)
            out["warnings"] += _reference_problem(prep, out["reference"])
        elif check_labels:
            problem = label_mapping_problem(wrapped, prep, req, dev, role="the model")
            if problem:  # a damaged model is near chance too: measured, and said
                out["warnings"].append(problem)
        out["metrics"] = _metrics(wrapped, prep, req, dev, seed)
        if reference is not None:
            out["metrics"]["Gap"] = gap(out["metrics"], out["reference"])
        out["notes"] = _notes(req, prep, reference is not None)
        for line in out["warnings"]:
            warnings.warn(line, TarfWarning, stacklevel=2)
        return out


def unlearn(
    model: nn.Module,
    data: DataLike,
    request: RequestLike,
    method: str | Method = "tarf",
    *,
    test: DataLike | None = None,
    reference: nn.Module | None = None,
    hierarchy: HierarchyLike | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    train_epochs: int = 10,
    batch_size: int = 128,
    augment: bool = False,
    dataset_name: str | None = None,
    config: str | Path | Mapping[str, Any] | None = None,
    evaluate: bool = True,
    check_labels: bool = True,
    **hyperparameters: Any,
) -> tuple[nn.Module, Report]:
    """Unlearn ``request`` from the user's ``model``; returns the unlearned copy (the
    input is not modified) and a report shaped like ``tarf unlearn``'s.

    ``request``: from :func:`make_request`, or a dict of its arguments (with
    ``hierarchy=``; ``model_labels`` is then read off the model's output size).
    ``method``: a registered name (``tarf methods``) or a :class:`Method`; its
    hyperparameters come from ``config`` (a YAML/JSON file, or a dict) and keyword arguments, e.g.
    ``lr=0.02``. ``train_epochs``: how long the original was trained; the budget rule
    gives each of the 10 unlearning epochs 1 % of that work. ``dataset_name`` names the
    dataset in the report; only TARF's ``preset="paper"`` reads it (the paper's ``k``). ``device``: default, the model's.
    ``check_labels``: refuse a model that is near chance on ``data`` (a wrong label
    mapping, usually; the message gives the fix).
    The method sees only ``D_f``, ``D_un`` and the prior, never the concept.
    """
    _check_module(model, "model")
    _check_module(reference, "reference")
    if reference is not None and not evaluate:
        raise ValueError(
            "reference= is only for measuring, and evaluate=False measures nothing; drop one"
        )
    with _devices_kept(model, reference):  # moved to the run's device, then back
        req = _resolve_request(request, hierarchy, model, data)
        dev = _device(device, model)
        model = model.to(dev)
        if isinstance(config, Mapping):  # the file's contents given as a dict: keywords win
            hyperparameters, config = {**config, **hyperparameters}, None
        if isinstance(method, str):
            method = get_method(method, config, None, **hyperparameters)
        elif hyperparameters or config is not None:
            raise ValueError(
                "give hyperparameters either in the Method instance or as keywords, not both"
            )
        if method.trains_architecture:
            raise ValueError(
                f"method {method.name!r} trains one of tarf's architectures from scratch; for your "
                "own model, retrain it your way and pass it as reference= (or use tarf.evaluate)"
            )
        prep = PreparedData(data, test, req)
        wrapped = _checked(model, prep, req, dev)
        if check_labels:
            check_label_mapping(wrapped, prep, req, dev)
        ctx = UnlearnContext(
            device=dev, recipe=_recipe(train_epochs, batch_size, augment, len(prep.shape) == 3),
            seed=seed, task=req.task.name, dataset=dataset_name or req.hierarchy.name,
            train_size=len(prep.y),
        )  # fmt: skip
        measure = original = ref = None
        if evaluate:
            measure = lambda m: _metrics(m, prep, req, dev, seed)  # noqa: E731
            original = measure(wrapped)
            if reference is not None:
                ref = _reference_metrics(reference, prep, req, dev, seed, check_labels)
        result, report = execute(
            method, wrapped, make_unlearn_data(req, prep.x, prep.y), ctx, req,
            measure=measure, original=original, reference=ref, partition_sizes=prep.parts.sizes(),
            recipe_name="user", notes=_notes(req, prep, reference is not None) if evaluate else [],
        )  # fmt: skip
        if ref is not None:
            report["warnings"] += _reference_problem(prep, ref)
        for line in report["warnings"]:
            warnings.warn(line, TarfWarning, stacklevel=2)
        unlearned = result.model.model if isinstance(result.model, InputAdapter) else result.model
        return unlearned.eval(), report


def summary(report: dict[str, Any] | str | Path) -> str:
    """A report as text: the metrics table (method, reference, original), what TARF set
    aside and why, the warnings, and the notes on what could not be measured. Takes what
    :func:`unlearn` or :func:`evaluate` returns, or a report's JSON file."""
    if isinstance(report, (str, Path)):
        from tarf.schema import load_reports

        try:
            reports = load_reports(report)
        except ValueError:
            try:  # what tarf.evaluate (tarf eval-model --out) writes: metrics, no method
                data = json.loads(Path(report).read_text())
            except (OSError, ValueError):
                data = None
            if not (isinstance(data, dict) and {"task", "metrics"} <= set(data)):
                raise
            reports = [data]
        return "\n\n".join(run_summary(r) for r in reports)
    return run_summary(report)

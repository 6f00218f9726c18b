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

import copy
import io
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from tarf.domains import Level
from tarf.hierarchy import LabelHierarchy
from tarf.methods.base import (
    Method,
    UnlearnContext,
    UnlearnData,
    config_changes,
    config_dict,
    get_method,
)
from tarf.metrics import METRIC_KEYS, gap
from tarf.metrics import evaluate as _paper_metrics
from tarf.recipes import Recipe
from tarf.request import Partitions, UnlearningRequest
from tarf.training import forward_logits
from tarf.userdata import labels_to_ids

DataLike = tuple[Any, Any] | torch.utils.data.Dataset
HierarchyLike = LabelHierarchy | Mapping[str, Any] | str | Path
RequestLike = UnlearningRequest | Mapping[str, Any]


class InputAdapter(nn.Module):
    """Feeds tarf's internal image tensors to the user's model in the user's format.

    tarf's loops hold data as ``[N, C, H, W]`` and divide by 255 on the way into the
    model. Float data is stored as float64 (so that division is never in place on the
    caller's tensor) and multiplied back by ``scale = 255`` here; data that is not 4-D is
    stored as ``[N, 1, 1, D]`` and reshaped back to its own sample shape.
    """

    def __init__(self, model: nn.Module, sample_shape: tuple[int, ...], scale: float) -> None:
        super().__init__()
        self.model = model
        self.sample_shape = tuple(sample_shape)
        self.scale = scale

    def __deepcopy__(self, memo: dict) -> InputAdapter:
        """Methods clone their input with ``copy.deepcopy``; a deep-copied TorchScript
        module's parameters are not leaves (no optimizer takes them), so it is copied by a
        save/load round trip instead."""
        if isinstance(self.model, torch.jit.ScriptModule):
            buf = io.BytesIO()
            torch.jit.save(self.model, buf)
            buf.seek(0)
            inner = torch.jit.load(buf, map_location=_model_device(self.model))
            inner.train(self.model.training)
        else:
            inner = copy.deepcopy(self.model, memo)
        new = InputAdapter(inner, self.sample_shape, self.scale)
        return new.train(self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale != 1.0:
            x = x * self.scale
        if tuple(x.shape[1:]) != self.sample_shape:
            x = x.reshape(len(x), *self.sample_shape)
        return self.model(x)


def load_hierarchy(
    hierarchy: HierarchyLike, class_names: Sequence[str] | None = None
) -> LabelHierarchy:
    """A :class:`LabelHierarchy`, a dict (``{class: superclass}`` or ``{superclass:
    [classes]}``), or a JSON/YAML file of either. ``class_names`` (the class of each label
    id, in order) fixes the ids; by default they follow the order classes are listed in."""
    if isinstance(hierarchy, LabelHierarchy):
        return hierarchy
    if isinstance(hierarchy, (str, Path)):
        return LabelHierarchy.from_file(hierarchy, class_order=class_names)
    if isinstance(hierarchy, Mapping) and hierarchy:
        values = list(hierarchy.values())
        if all(isinstance(v, str) for v in values):
            return LabelHierarchy.from_mapping("user", hierarchy, class_names)
        if all(isinstance(v, (list, tuple)) for v in values):
            return LabelHierarchy.from_groups("user", hierarchy, class_names)
    raise ValueError(
        "hierarchy must map class names to superclass names ({'boy': 'people', ...}), "
        "superclasses to class lists ({'people': ['boy', ...]}), or be a JSON/YAML file of either"
    )


def make_request(
    hierarchy: HierarchyLike,
    forget: str | Sequence[str],
    target: str | Sequence[str] | None = None,
    *,
    model_labels: str = "class",
    prior: int | str | None = None,
    class_names: Sequence[str] | None = None,
) -> UnlearningRequest:
    """A deletion request: the forget data's names, the concept (``target``, ground truth
    for evaluation only), the model's label level and, optionally, TARF's prior (a count,
    or ``"auto"`` to estimate it). Unknown names fail here, with the closest valid ones."""
    h = load_hierarchy(hierarchy, class_names)
    return UnlearningRequest.from_names(h, forget, model_labels, target, prior)


def _model_device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _materialise(data: DataLike, what: str) -> tuple[Any, Any]:
    """``(x, y)`` as given, or a Dataset of ``(x, y)`` pairs stacked in memory."""
    if isinstance(data, torch.utils.data.Dataset):
        try:
            loader = torch.utils.data.DataLoader(data, batch_size=512, shuffle=False)
            xs, ys = [], []
            for xb, yb in loader:
                xs.append(torch.as_tensor(xb))
                ys.extend(yb.tolist() if isinstance(yb, torch.Tensor) else list(yb))
        except (TypeError, ValueError, RuntimeError) as e:
            raise ValueError(
                f"{what}: the Dataset must yield (x, y) pairs of tensors (or arrays) and class "
                f"ids or names ({e})"
            ) from e
        if not xs:
            raise ValueError(f"{what}: the Dataset is empty")
        return torch.cat(xs), ys
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return data
    raise ValueError(f"{what}: give (x, y) tensors or arrays, or a torch Dataset of (x, y) pairs")


def _first_input(data: DataLike) -> Any:
    """One input sample, batched (to read the model's output size cheaply)."""
    if isinstance(data, torch.utils.data.Dataset):
        x0 = torch.as_tensor(np.asarray(data[0][0]))
        return x0[None]
    return _materialise(data, "data")[0][:1]


def _internal(x: Any, what: str) -> tuple[torch.Tensor, tuple[int, ...], float]:
    """The user's inputs as tarf holds them, with the shape and scale to restore."""
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).detach().cpu()
    if x.ndim < 2:
        raise ValueError(
            f"{what}: x must have samples first and at least one feature, got {tuple(x.shape)}"
        )
    shape = tuple(x.shape[1:])
    if x.dtype == torch.uint8:
        scale = 1.0
    elif x.is_floating_point() or x.dtype in (torch.int16, torch.int32, torch.int64):
        x, scale = x.to(torch.float64), 255.0
    else:
        raise ValueError(f"{what}: x must be uint8 images or numeric, got {x.dtype}")
    if x.ndim != 4:
        x = x.reshape(len(x), 1, 1, -1)
    return x.contiguous(), shape, scale


class _Prepared:
    """The user's data as tensors tarf's pipeline takes, with model labels and partitions."""

    def __init__(self, data: DataLike, test: DataLike | None, request: UnlearningRequest) -> None:
        h = request.hierarchy
        x, y = _materialise(data, "data")
        self.x, self.shape, self.scale = _internal(x, "data")
        self.y = labels_to_ids(y, h, "data")
        if len(self.y) != len(self.x):
            raise ValueError(f"data: {len(self.x)} samples but {len(self.y)} labels")
        if test is not None:
            xt, yt = _materialise(test, "test")
            self.x_test, shape_t, scale_t = _internal(xt, "test")
            self.y_test = labels_to_ids(yt, h, "test")
            if shape_t != self.shape or scale_t != self.scale:
                raise ValueError(
                    f"test: samples of shape {shape_t} ({'uint8' if scale_t == 1 else 'float'}) "
                    f"differ from the data's {self.shape} ({'uint8' if self.scale == 1 else 'float'})"
                )
        else:
            self.x_test = self.x[:0]
            self.y_test = self.y[:0]
        self.has_test = test is not None
        self.parts: Partitions = request.partitions(self.y, self.y_test)
        self.y_model = request.model_labels(self.y)
        self.y_test_model = request.model_labels(self.y_test)
        if len(self.parts.forget) == 0:
            raise ValueError(
                f"the data holds no sample of the forget classes {list(request.forget)}; "
                "check the labels (class ids follow the hierarchy's class order) or --forget"
            )

    def wrap(self, model: nn.Module) -> InputAdapter:
        return InputAdapter(model, self.shape, self.scale)


def check_label_domain(model: nn.Module, request: UnlearningRequest, sample: torch.Tensor) -> None:
    """The model's output size must be the request's number of model labels."""
    with torch.no_grad():
        was = model.training
        model.eval()
        out = model(sample)
        model.train(was)
    if out.ndim != 2:
        raise ValueError(f"the model must return logits [N, labels], got shape {tuple(out.shape)}")
    k, h = out.shape[1], request.hierarchy
    if k != request.num_model_classes:
        levels = {h.num_classes: "class", h.num_superclasses: "superclass"}
        fix = (
            f"its labels are {h.name}'s {levels[k]}es: pass model_labels={levels[k]!r} (--model-labels {levels[k]})"
            if k in levels
            else f"the hierarchy has {h.num_classes} classes and {h.num_superclasses} superclasses; "
            "give the hierarchy the model was trained with"
        )
        raise ValueError(
            f"label-domain mismatch: the model outputs {k} logits but the request's model labels are "
            f"{request.num_model_classes} {request.model_level.label}es of {h.name}; {fix}"
        )


def infer_model_labels(model: nn.Module, hierarchy: LabelHierarchy, x: Any) -> str:
    """``class`` or ``superclass`` from the model's output size on inputs ``x`` (a few
    samples, as the user holds them)."""
    x_int, shape, scale = _internal(x, "data")
    dev = _model_device(model)
    with torch.no_grad():
        was = model.training
        model.eval()
        k = InputAdapter(model, shape, scale)(x_int.to(dev).float() / 255).shape[-1]
        model.train(was)
    if k == hierarchy.num_classes and k != hierarchy.num_superclasses:
        return "class"
    if k == hierarchy.num_superclasses and k != hierarchy.num_classes:
        return "superclass"
    if k == hierarchy.num_classes:
        raise ValueError("the hierarchy has as many classes as superclasses: give model_labels")
    raise ValueError(
        f"label-domain mismatch: the model outputs {k} logits, but {hierarchy.name} has "
        f"{hierarchy.num_classes} classes and {hierarchy.num_superclasses} superclasses; "
        "give the hierarchy the model was trained with"
    )


def _resolve_request(
    request: RequestLike, hierarchy: HierarchyLike | None, model: nn.Module, x: Any
) -> UnlearningRequest:
    if isinstance(request, UnlearningRequest):
        return request
    if not isinstance(request, Mapping):
        raise ValueError("request must be an UnlearningRequest (tarf.make_request) or a dict")
    if hierarchy is None and "hierarchy" not in request:
        raise ValueError("a dict request needs a hierarchy (hierarchy=... or request['hierarchy'])")
    spec = dict(request)
    h = load_hierarchy(spec.pop("hierarchy", hierarchy), spec.pop("class_names", None))
    if spec.get("model_labels") is None:
        spec["model_labels"] = infer_model_labels(model, h, _first_input(x))
    return make_request(h, **spec)


def _recipe(train_epochs: int, batch_size: int, augment: bool, image_like: bool) -> Recipe:
    """The budget rule needs the original's training length (SPEC section 7: one run
    costs at most a tenth of it); augmentation (crop + flip) only for images, on request."""
    aug = augment and image_like
    return Recipe(
        name="user", arch="user", epochs=train_epochs, batch_size=batch_size, lr=0.0,
        schedule="onecycle", crop_pad=2 if aug else 0, flip=aug, unlearn_batch_size=batch_size,
    )  # fmt: skip


def _metrics(
    model: nn.Module, prep: _Prepared, request: UnlearningRequest, device: torch.device, seed: int
) -> dict[str, float | None]:
    """UA, RA, TA, MIA (SPEC section 4); without test data, only UA and RA."""
    mm = request.task.target_finer_than_model
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


def _notes(request: UnlearningRequest, has_test: bool, has_reference: bool) -> list[str]:
    notes = []
    if not has_reference:
        notes.append(
            "no retrained reference: Gap and the reference's metrics are unavailable "
            "(pass reference=, a model retrained without the target concept)"
        )
    if not request.has_reference:
        notes.append("the concept is unnamed: UA is measured on D_f, RA on D_un")
    if not has_test:
        notes.append("no test data: TA and MIA need held-out samples (pass test=)")
    return notes


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
) -> dict[str, Any]:
    """The paper's metrics of ``model`` on a request: UA (on ``D_t``), RA (on ``D_r``),
    TA (on ``test_r``), MIA, and with a retrained ``reference`` its metrics and the Gap.
    Without one it says so; without ``test`` there is no TA or MIA."""
    req = _resolve_request(request, hierarchy, model, data)
    dev = torch.device(device) if device is not None else _model_device(model)
    prep = _Prepared(data, test, req)
    check_label_domain(prep.wrap(model.to(dev)), req, _sample(prep, dev))
    return _evaluate_prepared(model, prep, req, reference, dev, seed)


def _evaluate_prepared(
    model: nn.Module,
    prep: _Prepared,
    req: UnlearningRequest,
    reference: nn.Module | None,
    dev: torch.device,
    seed: int,
) -> dict[str, Any]:
    out: dict[str, Any] = {"task": req.task.name, "metrics": None, "reference": None}
    out["metrics"] = _metrics(prep.wrap(model), prep, req, dev, seed)
    if reference is not None:
        check_label_domain(prep.wrap(reference.to(dev)), req, _sample(prep, dev))
        out["reference"] = _metrics(prep.wrap(reference), prep, req, dev, seed)
        out["metrics"]["Gap"] = _gap(out["metrics"], out["reference"])
    out["notes"] = _notes(req, prep.has_test, reference is not None)
    return out


def _gap(metrics: dict[str, Any], reference: dict[str, Any]) -> float:
    keys = [k for k in METRIC_KEYS if metrics.get(k) is not None and reference.get(k) is not None]
    return gap({k: metrics[k] for k in keys}, {k: reference[k] for k in keys}) if keys else math.nan


def _sample(prep: _Prepared, device: torch.device) -> torch.Tensor:
    return prep.x[:2].to(device).float() / 255


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
    config: str | Path | None = None,
    evaluate: bool = True,
    **hyperparameters: Any,
) -> tuple[nn.Module, dict[str, Any]]:
    """Unlearn ``request`` from the user's ``model``; returns the unlearned copy (the
    input is not modified) and a report shaped like ``tarf unlearn``'s.

    ``request``: from :func:`make_request`, or a dict of its arguments (with
    ``hierarchy=``; ``model_labels`` is then read off the model's output size).
    ``method``: a registered name (``tarf methods``) or a :class:`Method`; its
    hyperparameters come from ``config`` (YAML/JSON) and keyword arguments, e.g.
    ``lr=0.02``. ``train_epochs``: how long the original was trained; the budget rule
    gives each of the 10 unlearning epochs 1 % of that work. ``dataset_name`` picks the
    paper's ``k`` ("cifar100"; others take CIFAR-10's). ``device``: default, the model's.
    The method sees only ``D_f``, ``D_un`` and the prior (SPEC "No leakage").
    """
    req = _resolve_request(request, hierarchy, model, data)
    dev = torch.device(device) if device is not None else _model_device(model)
    model = model.to(dev)
    if isinstance(method, str):
        if method == "retrain":
            raise ValueError(
                "method 'retrain' trains one of tarf's architectures from scratch; for your own "
                "model, retrain it your way and pass it as reference= (or use tarf.evaluate)"
            )
        method = get_method(method, config, None, **hyperparameters)
    elif hyperparameters or config is not None:
        raise ValueError(
            "give hyperparameters either in the Method instance or as keywords, not both"
        )
    prep = _Prepared(data, test, req)
    wrapped = prep.wrap(model)
    check_label_domain(wrapped, req, _sample(prep, dev))
    h = req.hierarchy
    names = h.class_names if req.model_level == Level.CLASS else h.superclass_names
    p = prep.parts
    unlearn_data = UnlearnData(
        x_forget=prep.x[p.forget], y_forget=prep.y_model[p.forget],
        x_remain=prep.x[p.unlearn], y_remain=prep.y_model[p.unlearn],
        num_classes=req.num_model_classes, class_names=tuple(names), prior=req.prior(prep.y),
    )  # fmt: skip
    task = req.task
    ctx = UnlearnContext(
        device=dev,
        recipe=_recipe(train_epochs, batch_size, augment, len(prep.shape) == 3),
        seed=seed,
        task=task.name,
        dataset=dataset_name or h.name,
        train_size=len(prep.y),
    )
    torch.manual_seed(seed)
    start = time.perf_counter()
    result = method.run(wrapped, unlearn_data, ctx)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    rte = time.perf_counter() - start
    unlearned = result.model.model if isinstance(result.model, InputAdapter) else result.model
    unlearned.eval()
    report: dict[str, Any] = {
        "task": task.name,
        "case": {
            "table4_no": task.case, "comment": task.comment, "L_D": task.data.label,
            "L_M": task.model.label, "L_T": task.target.label,
        },
        "dataset": ctx.dataset,
        "request": {
            "forget": list(req.forget), "target": list(req.target) if req.target else None,
            "model_labels": req.model_level.label,
            "prior": unlearn_data.prior.num_classes if unlearn_data.prior else None,
        },
        "method": method.name, "config": config_dict(method),
        "config_changes": config_changes(method), "seed": seed, "recipe": "user",
        "budget": {"train_epochs": train_epochs, "epoch_samples": ctx.epoch_samples()},
        "partition_sizes": p.sizes(),
        "record": {k: v for k, v in result.record.items() if k != "identification"},
    }  # fmt: skip
    if "identification" in result.record:
        report["identification"] = result.record["identification"]
    if evaluate:
        after = _evaluate_prepared(unlearned, prep, req, reference, dev, seed)
        before = _evaluate_prepared(model, prep, req, None, dev, seed)
        report["metrics"] = {**after["metrics"], "RTE_s": rte}
        if after["reference"] is not None:
            before["metrics"]["Gap"] = _gap(before["metrics"], after["reference"])
        report["original"] = before["metrics"]
        report["reference"] = after["reference"]
        report["notes"] = after["notes"]
    else:
        report["metrics"] = {"RTE_s": rte}
    return unlearned, report


def summary(report: dict[str, Any]) -> str:
    """A report as text: the metrics table (method, reference, original), what TARF set
    aside and why, and the notes on what could not be measured."""
    from tarf.report import REPORT_COLUMNS, markdown_table, report_rows

    lines = [markdown_table(["task", "model", *REPORT_COLUMNS], report_rows(report))]
    ident = report.get("identification")
    if ident:
        source = ident.get("n_source", "prior")
        if ident.get("skipped"):
            what = f"set aside nothing ({ident['skipped']})"
        elif ident["level"] == "class":
            what = f"set aside {ident['classes'] or 'nothing'} ({source} n={ident['n']})"
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
                f"robust SDs vs threshold {auto['threshold']:.2f} (margin {auto['margin']:+.2f})"
            )
            if auto.get("gap_between"):
                what += f", between {auto['gap_between'][0]} and {auto['gap_between'][1]}"
        lines.append(what)
        if ident["level"] == "class" and "top10" in ident:
            top = ", ".join(f"{c} {v:+.3g}" for c, v in list(ident["top10"].items())[:5])
            lines.append(f"top of the {ident['signal']} signal after Phase I: {top}")
    lines += [f"note: {n}" for n in report.get("notes", [])]
    return "\n".join(lines)

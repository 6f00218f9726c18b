"""A user's own model and data, as tarf's run path takes them.

tarf's loops hold data as uint8-scaled ``[N, C, H, W]`` tensors and divide by 255 on
the way into the model. :class:`InputAdapter` feeds such tensors to the user's model in
the user's own format; :class:`PreparedData` holds the user's data that way, with the
model's labels and the request's partitions; the checks refuse a model whose output
size is not the request's label domain.
"""

from __future__ import annotations

import copy
import io
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from tarf.hierarchy import LabelHierarchy
from tarf.request import Partitions, UnlearningRequest
from tarf.userdata import labels_to_ids

DataLike = tuple[Any, Any] | torch.utils.data.Dataset


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
            inner = torch.jit.load(buf, map_location=model_device(self.model))
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


def model_device(model: nn.Module) -> torch.device:
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


def first_input(data: DataLike) -> Any:
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
    if len(x) == 0:
        raise ValueError(f"{what}: no samples")
    shape = tuple(x.shape[1:])
    if x.dtype == torch.uint8:
        scale = 1.0
    elif x.is_floating_point() or x.dtype in (torch.int16, torch.int32, torch.int64):
        x, scale = x.to(torch.float64), 255.0
        bad = int((~torch.isfinite(x)).reshape(len(x), -1).any(1).sum())
        if bad:
            raise ValueError(
                f"{what}: x holds NaN or infinite values in {bad} of {len(x)} samples; drop "
                "those samples or fill the values"
            )
    else:
        raise ValueError(f"{what}: x must be uint8 images or numeric, got {x.dtype}")
    if x.ndim != 4:
        x = x.reshape(len(x), 1, 1, -1)
    return x.contiguous(), shape, scale


class PreparedData:
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
        # float images of whole numbers 0-255 reach the model as they are: right for a
        # model trained on them, silently wrong for one trained on x / 255 (a note says so)
        self.pixel_floats = self.scale != 1.0 and bool(
            1.5 < self.x.max() <= 255 and self.x.min() >= 0 and torch.equal(self.x, self.x.round())
        )
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


def _forward(model: nn.Module, x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """``model(x)`` in eval mode; a model that cannot take the data is one sentence."""
    with torch.no_grad():
        was = model.training
        model.eval()
        try:
            out = model(x)
        except RuntimeError as e:
            lines = [line.strip() for line in str(e).strip().splitlines() if line.strip()]
            # TorchScript leads with "The following operation failed ..."; the cause is last
            cause = (lines[-1] if "TorchScript" in lines[0] else lines[0]) if lines else ""
            cause = cause.removeprefix("RuntimeError: ")
            dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
            dtype_error = any(w in cause for w in ("dtype", "Double", "Half", "BFloat16"))
            if dtype_error and dtypes and torch.float32 not in dtypes:
                raise ValueError(
                    f"the model's weights are {', '.join(sorted(map(str, dtypes)))} and tarf "
                    f"feeds it float32 ({cause or type(e).__name__}); pass model.float()"
                ) from None
            raise ValueError(
                f"the model cannot take samples of shape {tuple(shape)} "
                f"({cause or type(e).__name__}); give x in the shape the model was trained "
                "on, samples first"
            ) from None
        finally:
            model.train(was)
    if not isinstance(out, torch.Tensor):
        raise ValueError(
            f"the model returns a {type(out).__name__}, not a tensor of logits [N, labels]; "
            "wrap it in a module whose forward returns the logits alone (e.g. "
            "model(x)[0], or model(x)['logits'])"
        )
    return out


def check_label_domain(
    model: nn.Module, request: UnlearningRequest, sample: torch.Tensor, role: str = "model"
) -> None:
    """The model's output size must be the request's number of model labels (``role``
    "reference": the retrained reference's, whose labels are the model's)."""
    out = _forward(model, sample, getattr(model, "sample_shape", tuple(sample.shape[1:])))
    if out.ndim != 2:
        raise ValueError(f"the {role} must return logits [N, labels], got shape {tuple(out.shape)}")
    k, h = out.shape[1], request.hierarchy
    if k != request.num_model_classes and role == "reference":
        raise ValueError(
            f"label-domain mismatch: the reference outputs {k} logits but the model and the "
            f"request have {request.num_model_classes} {request.model_level.label}es of {h.name}; "
            "pass a reference trained with the model's labels (without the target concept's data)"
        )
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
    dev = model_device(model)
    k = _forward(InputAdapter(model, shape, scale), x_int.to(dev).float() / 255, shape).shape[-1]
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


def check_label_mapping(
    model: nn.Module, prep: PreparedData, request: UnlearningRequest, device: torch.device,
    samples: int = 2000, role: str = "the original model",
) -> None:  # fmt: skip
    """Refuse a model whose outputs do not follow the data's label ids (ValueError with
    :func:`label_mapping_problem`'s line)."""
    problem = label_mapping_problem(model, prep, request, device, samples, role)
    if problem:
        raise ValueError(problem)


def label_mapping_problem(
    model: nn.Module, prep: PreparedData, request: UnlearningRequest, device: torch.device,
    samples: int = 2000, role: str = "the original model",
) -> str | None:  # fmt: skip
    """Whether a model's outputs cannot follow the data's label ids: its accuracy on (a
    seeded sample of) the user's own training data must be well above chance. The
    original model is measured on all of it; any other (a reference, an unlearned
    model) on the retained data ``D_r`` alone, since on the concept it is meant to fail.

    A wrong mapping is the usual cause (class ids follow the order the hierarchy lists
    its classes in, which need not be the model's output order); when some other order
    of the outputs fits the data far better, the line gives that order.
    """
    from scipy.optimize import linear_sum_assignment

    k = request.num_model_classes
    g = torch.Generator().manual_seed(0)
    pool = torch.arange(len(prep.y)) if role == "the original model" else prep.parts.remaining
    idx = pool[torch.randperm(len(pool), generator=g)[:samples]]
    x = prep.x[idx].to(device).float() / 255
    pred = torch.cat([_forward(model, xb, prep.shape).argmax(1).cpu() for xb in x.split(256)])
    y = prep.y_model[idx]
    confusion = torch.zeros(k, k, dtype=torch.long)
    confusion.index_put_((y, pred), torch.ones_like(y), accumulate=True)
    acc = 100.0 * confusion.trace().item() / max(len(y), 1)
    chance = 100.0 / k
    rows, cols = linear_sum_assignment(-confusion.numpy())
    best = 100.0 * confusion.numpy()[rows, cols].sum() / max(len(y), 1)
    well_above_chance = chance + 0.25 * (100.0 - chance)
    if acc >= well_above_chance and best - acc < 20.0:
        return None
    h = request.hierarchy
    names = h.class_names if k == h.num_classes else h.superclass_names
    damaged = " and not damaged (unlearning can wreck a model)" if role == "the model" else ""
    where = "training data" if role == "the original model" else "retained training data"
    what = (
        f"{role} is {acc:.1f}% accurate on your {where} (chance: "
        f"{chance:.1f}%), so its outputs cannot be the data's labels"
    )
    if best - acc >= 20.0 and best >= well_above_chance:
        order = [names[int(r)] for r, _ in sorted(zip(rows, cols), key=lambda rc: rc[1])]
        fix = (
            f"read in another order, its outputs are {best:.1f}% accurate: output 0 is "
            f"{order[0]!r}, output 1 {order[1]!r}, ...; give the classes in the model's "
            f"output order: class_names={order!r} in Python, a 'class_order' list in a "
            "hierarchy file"
            if k == h.num_classes
            else f"read in another order its outputs are {best:.1f}% accurate; give the "
            "hierarchy's superclasses in the model's output order"
        )
    else:
        fix = (
            f"check that {role} is trained{damaged}, that y holds the labels it was trained on and "
            "that x is scaled as in its training (uint8 images reach the model as x / 255); "
            "in Python, check_labels=False skips this check"
        )
    return f"label mapping: {what}; {fix}"

"""No leakage (docs/design.md): a method sees the model, D_f, D_un and the prior, nothing else.

The functional check: two requests that differ only in their ground truth (an unnamed
concept with prior 2, and the named concept "animals", which implies it) give every
method exactly the same inputs, so its output must be bit-identical; a method that
peeked at D_t, D_uf, D_r or D_ar could not pass.
"""

import dataclasses

import pytest
import torch

from tarf.methods import METHODS, get_method
from tarf.methods.base import UnlearnContext, UnlearnData
from tarf.recipes import get_recipe
from tarf.request import UnlearningRequest
from tarf.run import unlearn_data
from tarf.training import train_classifier

ALLOWED_FIELDS = {
    "x_forget",
    "y_forget",
    "x_remain",
    "y_remain",
    "num_classes",
    "class_names",
    "prior",
}


def test_unlearn_data_holds_only_what_a_user_has():
    assert {f.name for f in dataclasses.fields(UnlearnData)} == ALLOWED_FIELDS
    ctx_fields = {f.name: f.type for f in dataclasses.fields(UnlearnContext)}
    assert not any("Tensor" in str(t) or "Partitions" in str(t) for t in ctx_fields.values())


def test_inputs_do_not_depend_on_the_target(toy_dataset):
    h = toy_dataset.hierarchy
    a = unlearn_data(
        toy_dataset, UnlearningRequest.from_names(h, "cat", "class", None, prior_classes=2)
    )
    b = unlearn_data(toy_dataset, UnlearningRequest.from_names(h, "cat", "class", "animals"))
    for f in ("x_forget", "y_forget", "x_remain", "y_remain"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    assert a.prior.num_classes == b.prior.num_classes == 2
    # D_un really contains the hidden concept data; nothing marks it
    assert (b.y_remain == 1).sum() == 40


@pytest.fixture(scope="module")
def model_and_recipe(toy_dataset):
    recipe = dataclasses.replace(get_recipe("tiny"), epochs=4, flip=False, crop_pad=0)
    return train_classifier(
        toy_dataset.x_train, toy_dataset.y_train, 7, recipe, 0, torch.device("cpu")
    ).model, recipe


# Settings a method needs to do any work on the toy: its D_f ("cat") is a seventh of the
# data, and SSD's alpha of 10 can then select no weight (docs/methods.md, SSD).
TOY_PARAMS = {"ssd": {"alpha": 2.0}}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_output_independent_of_ground_truth(name, toy_dataset, model_and_recipe):
    model, recipe = model_and_recipe
    if name == "retrain":
        recipe = dataclasses.replace(recipe, epochs=2)
    h = toy_dataset.hierarchy
    outs = []
    for target, prior in ((None, 2), ("animals", None)):
        req = UnlearningRequest.from_names(h, "cat", "class", target, prior_classes=prior)
        ctx = UnlearnContext(
            torch.device("cpu"),
            recipe,
            seed=0,
            task="target-mismatch",
            dataset="toy",
            train_size=len(toy_dataset.y_train),
        )
        torch.manual_seed(0)
        outs.append(
            get_method(name, **TOY_PARAMS.get(name, {})).run(
                model, unlearn_data(toy_dataset, req), ctx
            )
        )
    a, b = (res.model.state_dict() for res in outs)
    for k in a:
        assert torch.equal(a[k], b[k]), f"{name}: {k} differs between targets"
    # and so are the facts of the run: what it used, what it set aside, what it warns of
    assert outs[0].samples == outs[1].samples > 0
    assert outs[0].identification == outs[1].identification
    assert outs[0].warnings == outs[1].warnings

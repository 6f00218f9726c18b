"""Baselines SSD, NegGrad+ and Bad Teacher on a tiny synthetic problem: each does what its
definition says (checked against plain re-implementations) and stays within the budget
rule."""

import copy
import dataclasses
import math
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import (
    TOY_CLASSES,
    TOY_FORGET,
    TOY_PER_CLASS,
    five_class_images,
    flat,
    split_forget,
)

from tarf.methods import get_method
from tarf.methods.bad_teacher import bad_teacher_loss, incompetent_teacher
from tarf.methods.base import UnlearnContext
from tarf.recipes import get_recipe
from tarf.training import train_classifier

CPU = torch.device("cpu")
C, PER_CLASS, FORGET = TOY_CLASSES, TOY_PER_CLASS, TOY_FORGET


@pytest.fixture(scope="module")
def setup():
    x, y = five_class_images()
    recipe = dataclasses.replace(get_recipe("tiny"), epochs=10, flip=False, crop_pad=0)
    model = train_classifier(x, y, C, recipe, 0, CPU).model
    data = split_forget(x, y)
    # The tiny recipe's 30 training epochs; train_size 1000: 300 samples per epoch, more
    # than one pass over the 200 samples (the budget binds only in test_budget_rule).
    ctx = UnlearnContext(
        device=CPU, recipe=dataclasses.replace(recipe, epochs=30), seed=0, train_size=1000
    )
    return model, data, ctx


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model.eval()(x.float() / 255).argmax(1) == y).float().mean().item()


# -- SSD -------------------------------------------------------------------------------------
def plain_importance(model: nn.Module, x: torch.Tensor, y: torch.Tensor, b: int) -> list:
    """Mean over unshuffled batches of b of the squared batch gradient (eval mode)."""
    model.eval()
    acc = [torch.zeros_like(p) for p in model.parameters()]
    batches = range(0, len(y), b)
    for i in batches:
        model.zero_grad()
        F.cross_entropy(model(x[i : i + b].float() / 255), y[i : i + b]).backward()
        for a, p in zip(acc, model.parameters()):
            a += p.grad**2
    return [a / len(batches) for a in acc]


def test_ssd_dampens_exactly_the_selected_weights(setup):
    model, data, ctx = setup
    alpha, lam, b = 3.0, 1.0, 64
    ref = copy.deepcopy(model)
    imp_f = plain_importance(ref, data.x_forget, data.y_forget, b)
    imp_un = plain_importance(ref, data.x_remain, data.y_remain, b)
    b_f, b_un = math.ceil(len(data.y_forget) / b), math.ceil(len(data.y_remain) / b)
    res = get_method("ssd", alpha=alpha, lam=lam).run(model, data, ctx)
    assert res.details["remain_samples"] == len(data.y_remain)  # the budget allows all of D_un
    n_selected = 0
    for p0, p1, f, u in zip(model.parameters(), res.model.parameters(), imp_f, imp_un):
        d = (b_f * f + b_un * u) / (b_f + b_un)  # importance on D = D_f ∪ D_un
        sel = f > alpha * d
        assert torch.equal(p1[~sel], p0[~sel])  # the others are bit-identical
        expected = p0[sel] * torch.clamp(lam * d[sel] / f[sel], max=1.0)
        assert torch.allclose(p1[sel], expected, rtol=1e-5, atol=0)
        assert (p1[sel].abs() < p0[sel].abs() + 1e-12).all()  # dampened, never grown
        n_selected += int(sel.sum())
    assert 0 < n_selected == res.details["dampened"] < flat(model).numel()
    assert accuracy(res.model, data.x_forget, data.y_forget) < 0.2
    assert accuracy(model, data.x_forget, data.y_forget) == 1.0  # the caller's model intact
    assert accuracy(res.model, data.x_remain, data.y_remain) > 0.8
    assert res.samples == len(data.y_forget) + len(data.y_remain) and not res.warnings


def test_ssd_cannot_select_when_d_f_is_a_large_share(setup):
    """D_f is 1/4 of the batches: with alpha = 10 no weight can qualify; the run says so."""
    model, data, ctx = setup
    res = get_method("ssd").run(model, data, ctx)
    assert res.details["dampened"] == 0 and torch.equal(flat(res.model), flat(model))
    assert len(res.warnings) == 1 and "alpha" in res.warnings[0]


# -- NegGrad+ --------------------------------------------------------------------------------
def sgd_step(model: nn.Module, loss_fn, lr: float) -> torch.Tensor:
    m = copy.deepcopy(model).train()
    loss = loss_fn(m)
    grads = torch.autograd.grad(loss, list(m.parameters()))
    return flat(m) - lr * torch.cat([g.reshape(-1) for g in grads])


def test_neggrad_plus_first_step_is_the_weighted_sgd_step(setup):
    """One step on all of D_un and all of D_f: plain SGD on a·CE_r − (1 − a)·CE_f."""
    model, data, ctx = setup
    a, lr = 0.5, 0.01
    xr, xf = data.x_remain.float() / 255, data.x_forget.float() / 255
    sizes = {"retain_batch_size": len(data.y_remain), "forget_batch_size": len(data.y_forget)}
    res = get_method("neggrad-plus", epochs=1, alpha=a, lr=lr, **sizes).run(model, data, ctx)
    assert res.samples == len(data.y_remain) + len(data.y_forget)  # exactly one step

    def loss(m: nn.Module) -> torch.Tensor:
        ce_r = F.cross_entropy(m(xr), data.y_remain)
        return a * ce_r - (1 - a) * F.cross_entropy(m(xf), data.y_forget)

    expected = sgd_step(model, loss, lr)
    retain_only = sgd_step(model, lambda m: a * F.cross_entropy(m(xr), data.y_remain), lr)
    err = (flat(res.model) - expected).norm()  # float rounding only (batch order, layout)
    assert err < 1e-3 * (expected - flat(model)).norm()
    assert (retain_only - expected).norm() > 100 * err  # the forget term is in the step


# -- Bad Teacher -----------------------------------------------------------------------------
def authors_loss(s, t_good, t_bad, labels, T):
    """``UnlearnerLoss`` from vikram2000b/bad-teaching-unlearning's unlearn.py, verbatim."""
    labels = torch.unsqueeze(labels, dim=1)
    f_teacher_out = F.softmax(t_good / T, dim=1)
    u_teacher_out = F.softmax(t_bad / T, dim=1)
    overall_teacher_out = labels * u_teacher_out + (1 - labels) * f_teacher_out
    student_out = F.log_softmax(s / T, dim=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reduction='mean' is not batchmean: as the authors
        return F.kl_div(student_out, overall_teacher_out)


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_bad_teacher_loss_is_the_kl_mix(T):
    g = torch.Generator().manual_seed(0)
    s, t_good, t_bad = (torch.randn(8, 5, generator=g) for _ in range(3))
    forget = torch.tensor([1, 0, 0, 1, 1, 0, 1, 0], dtype=torch.bool)
    p = torch.where(forget[:, None], F.softmax(t_bad / T, 1), F.softmax(t_good / T, 1))
    manual = (p * (p.log() - F.log_softmax(s / T, 1))).sum() / s.numel()
    loss = bad_teacher_loss(s, t_good, t_bad, forget, T)
    assert loss.item() == pytest.approx(manual.item(), rel=1e-5)
    assert loss.item() == pytest.approx(authors_loss(s, t_good, t_bad, forget.float(), T).item())
    # the forget rows follow the incompetent teacher: swapping the teachers changes the loss
    assert bad_teacher_loss(s, t_bad, t_good, forget, T).item() != pytest.approx(loss.item())


def test_incompetent_teacher_is_a_seeded_random_network(setup):
    model, _, _ = setup
    state = torch.get_rng_state()
    before = flat(model).clone()
    bad = incompetent_teacher(model, seed=0)
    assert torch.equal(torch.get_rng_state(), state)  # the global random state is untouched
    assert torch.equal(flat(model), before) and not bad.training
    for (k, p0), p1 in zip(model.named_parameters(), bad.parameters()):
        assert not torch.equal(p0, p1), k  # every parameter re-initialised
    assert torch.equal(model.mean, bad.mean) and torch.equal(model.std, bad.std)
    assert torch.equal(flat(incompetent_teacher(model, seed=0)), flat(bad))
    assert not torch.equal(flat(incompetent_teacher(model, seed=1)), flat(bad))


def test_bad_teacher_first_step_is_the_adam_step_on_the_kl_mix(setup):
    """One step on the whole pool (D_f and all of D_un): Adam on the KL to the incompetent
    teacher on D_f and to the original on D_un."""
    model, data, ctx = setup
    lr = 1e-3
    cfg = {"epochs": 1, "lr": lr, "retain_fraction": 1.0, "batch_size": 256}
    res = get_method("bad-teacher", **cfg).run(model, data, ctx)
    n = len(data.y_forget) + len(data.y_remain)
    assert res.samples == n and res.details["retain_samples"] == len(data.y_remain)
    x = torch.cat([data.x_forget, data.x_remain]).float() / 255
    forget = torch.arange(n) < len(data.y_forget)
    good = copy.deepcopy(model).eval()
    bad = incompetent_teacher(model, seed=ctx.seed)
    with torch.no_grad():
        t_good, t_bad = good(x), bad(x)

    def adam_step(teacher_on_forget: torch.Tensor) -> torch.Tensor:
        student = copy.deepcopy(model).train()
        opt = torch.optim.Adam(student.parameters(), lr=lr)
        p = torch.where(forget[:, None], F.softmax(teacher_on_forget, 1), F.softmax(t_good, 1))
        log_ps = F.log_softmax(student(x), 1)
        (p * (p.log() - log_ps)).sum().div(log_ps.numel()).backward()
        opt.step()
        return flat(student)

    expected = adam_step(t_bad)
    # Adam's first step is ~lr·sign(g): rounding moves only weights whose gradient is ~0
    err = (flat(res.model) - expected).norm()
    assert err < 1e-3 * (expected - flat(model)).norm()
    assert (adam_step(t_good) - expected).norm() > 100 * err  # the bad teacher is in the step


# -- budget rule -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ssd", "neggrad-plus", "bad-teacher"])
def test_budget_rule(setup, name):
    model, data, ctx = setup
    ctx = dataclasses.replace(ctx, train_size=50)  # 15 samples per epoch: the rule binds
    limit = 10 * ctx.epoch_samples()
    seen = {"n": 0}

    def hook(module, inputs, output):
        if torch.is_grad_enabled():  # a forward that is backpropagated (not a teacher's)
            seen["n"] += inputs[0].shape[0]

    handle = model.register_forward_hook(hook)  # copied into every clone the method makes
    try:
        # SSD: alpha 2, as D_f is a quarter of the toy's batches (alpha 10 selects nothing)
        res = get_method(name, **({"alpha": 2.0} if name == "ssd" else {})).run(model, data, ctx)
    finally:
        handle.remove()
    assert 0 < seen["n"] == res.samples <= limit
    if name == "ssd":  # D_f whole, D_un sampled to fill the budget
        assert res.details["forget_samples"] == len(data.y_forget)
        assert res.details["remain_samples"] == limit - len(data.y_forget)

"""Baselines IU, BS and SCRUB on a tiny synthetic problem: each does what its definition
says (checked against plain re-implementations) and stays within the budget rule."""

import dataclasses

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
from tarf.methods.base import UnlearnContext, UnlearnData
from tarf.methods.bs import fgsm_logits, nearest_wrong_labels
from tarf.methods.iu import plan_work
from tarf.methods.scrub import distill_kl, scrub_lr
from tarf.recipes import get_recipe
from tarf.training import train_classifier

CPU = torch.device("cpu")
C, PER_CLASS, FORGET = TOY_CLASSES, TOY_PER_CLASS, TOY_FORGET


@pytest.fixture(scope="module")
def setup():
    x, y = five_class_images()
    recipe = dataclasses.replace(get_recipe("tiny"), epochs=10, flip=False, crop_pad=0)
    model = train_classifier(x, y, C, recipe, 0, CPU).model
    # The unlearning budget as for the tiny recipe's 30 training epochs: 60 samples/epoch.
    ctx = UnlearnContext(
        device=CPU, recipe=dataclasses.replace(recipe, epochs=30), seed=0, train_size=len(y)
    )
    return model, split_forget(x, y), ctx


def state_equal(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa)


# -- BS ------------------------------------------------------------------------------------
def plain_fgsm_label(model: nn.Module, x_uint8: torch.Tensor, y: int, eps: float):
    """FGSM on one image, written out plainly; returns (nearest wrong label, flipped)."""
    x = (x_uint8.float() / 255).unsqueeze(0).requires_grad_(True)
    loss = F.cross_entropy(model(x), torch.tensor([y]))
    loss.backward()
    x_adv = torch.clamp(x.detach() + eps * x.grad.sign(), 0, 1)
    x_adv = torch.round(x_adv * 255) / 255
    with torch.no_grad():
        logits = model(x_adv)[0]
    top2 = logits.topk(2).indices.tolist()
    if top2[0] != y:
        return top2[0], True
    return top2[1], False


def test_bs_labels_are_fgsm_nearest_wrong_class(setup):
    model, data, ctx = setup
    model.eval()
    branches = set()
    for eps in (0.1, 0.01):
        labels = nearest_wrong_labels(
            fgsm_logits(model, data.x_forget, data.y_forget, eps, ctx), data.y_forget
        )
        assert labels.shape == data.y_forget.shape
        assert (labels != data.y_forget).all() and labels.min() >= 0 and labels.max() < C
        expected = []
        for xi, yi in zip(data.x_forget, data.y_forget.tolist()):
            label, flipped = plain_fgsm_label(model, xi, yi, eps)
            expected.append(label)
            branches.add(flipped)
        assert labels.tolist() == expected
    assert branches == {True, False}  # both the FGSM label and the runner-up case occurred


def test_bs_run_fine_tunes_toward_near_labels(setup):
    model, data, ctx = setup
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = get_method("bs", lr=0.05).run(model, data, ctx)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # θ_o intact
    assert not res.model.training
    with torch.no_grad():
        xf = data.x_forget.float() / 255
        acc_before = (model(xf).argmax(1) == data.y_forget).float().mean()
        acc_after = (res.model(xf).argmax(1) == data.y_forget).float().mean()
    assert acc_after < acc_before
    assert sum(res.details["near_label_counts"].values()) == len(data.y_forget)
    assert f"c{FORGET}" not in res.details["near_label_counts"]


# -- SCRUB -----------------------------------------------------------------------------------
def test_distill_kl_matches_definition():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    T = 4.0
    pt, ps = F.softmax(t / T, 1), F.softmax(s / T, 1)
    manual = (pt * (pt.log() - ps.log())).sum(1).mean() * T**2
    assert distill_kl(s, t, T).item() == pytest.approx(manual.item(), rel=1e-5)
    assert distill_kl(t, t, T).item() == pytest.approx(0.0, abs=1e-6)


def test_scrub_lr_schedule_follows_notebook():
    lrs = [scrub_lr(5e-4, e, (3, 5, 9), 0.1) for e in range(1, 11)]
    assert lrs == pytest.approx([5e-4] * 3 + [5e-5] * 2 + [5e-6] * 4 + [5e-7])


def mean_kl(student: nn.Module, teacher: nn.Module, x: torch.Tensor, T: float) -> float:
    with torch.no_grad():
        xf = x.float() / 255
        return distill_kl(student.eval()(xf), teacher.eval()(xf), T).item()


def test_scrub_moves_away_from_teacher_on_forget_only(setup):
    model, data, ctx = setup
    method = get_method("scrub", lr=0.01)
    T = method.config.kd_T
    kl_f_before = mean_kl(model, model, data.x_forget, T)
    res = method.run(model, data, ctx)
    kl_f = mean_kl(res.model, model, data.x_forget, T)
    kl_un = mean_kl(res.model, model, data.x_remain, T)
    assert kl_f > kl_f_before + 1e-3
    assert kl_f > 2 * kl_un
    assert len(res.details["max_kl"]) == method.config.msteps
    # The max-steps do it, not just never seeing D_f in the min-steps.
    no_max = get_method("scrub", lr=0.01, msteps=0).run(model, data, ctx)
    assert kl_f > 5 * mean_kl(no_max.model, model, data.x_forget, T)


# -- IU --------------------------------------------------------------------------------------
def tiny_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 6), nn.Tanh(), nn.Linear(6, C)).eval()


def explicit_ihvp(model: nn.Module, data: UnlearnData, damping: float) -> torch.Tensor:
    """(λI + GᵀG/N)⁻¹ v with the Fisher formed explicitly from a per-sample loop."""
    params = list(model.parameters())

    def g(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(model(x[None].float() / 255), y[None])
        return torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss, params)]).double()

    gf = torch.stack([g(x, y) for x, y in zip(data.x_forget, data.y_forget)])
    gr = torch.stack([g(x, y) for x, y in zip(data.x_remain, data.y_remain)])
    n_f, n_un = len(gf), len(gr)
    v = n_f / (n_f + n_un) * (gf.mean(0) - gr.mean(0))
    fisher = damping * torch.eye(len(v), dtype=torch.float64) + gr.T @ gr / n_un
    return torch.linalg.solve(fisher, v), v


def test_iu_displacement_is_alpha_times_explicit_ihvp(setup):
    _, data, ctx = setup
    model = tiny_mlp()
    theta = flat(model)
    damping = 0.01
    expected, v = explicit_ihvp(model, data, damping)
    # The Fisher term matters at this damping: the answer is far from v / λ.
    assert (expected - v / damping).norm() > 0.1 * expected.norm()
    deltas = {}
    for alpha in (3.0, 6.0):
        res = get_method("iu", alpha=alpha, damping=damping).run(model, data, ctx)
        assert res.details["fisher_samples"] == len(data.y_remain)
        deltas[alpha] = (flat(res.model) - theta).double()
        err = (deltas[alpha] / alpha - expected).norm() / expected.norm()
        assert err < 1e-4, err
    assert torch.allclose(deltas[6.0], 2 * deltas[3.0], rtol=1e-5, atol=1e-9)
    assert torch.equal(flat(model), theta)  # the caller's model is untouched


def test_iu_streamed_gram_equals_stored(setup):
    _, data, ctx = setup
    ctx = dataclasses.replace(ctx, train_size=10_000)  # room for the recomputation
    model = tiny_mlp(1)
    theta = flat(model)
    stored = get_method("iu", damping=0.01).run(model, data, ctx)
    streamed = get_method("iu", damping=0.01, max_store_mb=0.05, chunk_size=7).run(model, data, ctx)
    assert stored.details["stored_gradients"] and stored.details["gram_blocks"] == 1
    assert not streamed.details["stored_gradients"] and streamed.details["gram_blocks"] > 2
    assert streamed.details["fisher_samples"] == stored.details["fisher_samples"]
    assert streamed.samples > stored.samples  # recomputation is counted
    d1, d2 = flat(stored.model) - theta, flat(streamed.model) - theta
    assert (d1 - d2).norm() < 1e-4 * d1.norm()


def test_iu_on_batchnorm_cnn_keeps_running_stats(setup):
    model, data, ctx = setup
    res = get_method("iu", num_samples=50).run(model, data, ctx)
    bn_before = {k: v for k, v in model.state_dict().items() if "running" in k}
    bn_after = res.model.state_dict()
    assert bn_before and all(torch.equal(v, bn_after[k]) for k, v in bn_before.items())
    assert not state_equal(model, res.model)  # the weights did move
    assert res.details["fisher_samples"] == 50 and res.details["influence_seconds"] > 0


def test_iu_plan_respects_budget():
    plan = plan_work(10**6, 5000, 400, 1000, 1000, 2048.0)
    assert plan.fisher_work + plan.forget_samples <= 1000 and plan.forget_samples == 400
    plan = plan_work(10**6, 5000, 400, 10**5, 1000, 1000.0)  # 3.8 GB > cap: streamed
    assert not plan.stored and plan.fisher_samples == 1000 and len(plan.blocks) > 1
    assert (
        plan.fisher_work
        == sum((hi - lo) * (len(plan.blocks) - j) for j, (lo, hi) in enumerate(plan.blocks)) + 1000
    )


# -- budget rule -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["iu", "bs", "scrub"])
def test_budget_rule(setup, name):
    model, data, ctx = setup
    ctx = dataclasses.replace(ctx, train_size=50)  # 15 samples per epoch: the rule binds
    limit = 10 * ctx.epoch_samples()
    seen = {"n": 0}

    def hook(module, inputs, output):
        if module.training:
            seen["n"] += inputs[0].shape[0]

    handle = model.register_forward_hook(hook)  # copied into every clone the method makes
    try:
        res = get_method(name).run(model, data, ctx)
    finally:
        handle.remove()
    assert seen["n"] <= limit + ctx.recipe.unlearn_batch_size
    assert 0 < res.samples <= limit
    if name != "iu":  # IU works in eval mode only; its record counts its gradient work
        assert seen["n"] > 0

"""Baselines UNSIR, LoTUS and RFE on a tiny synthetic model-mismatch problem: each does
what its definition says (checked against plain re-implementations) and stays within
the budget rule."""

import dataclasses
import itertools
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import tarf.methods.rfe as rfe
import tarf.methods.unsir as unsir
from tarf.methods import get_method
from tarf.methods.base import UnlearnContext, UnlearnData
from tarf.methods.loop import run_budget
from tarf.methods.lotus import lotus_targets
from tarf.recipes import get_recipe

CPU = torch.device("cpu")
FINE, PER = 6, 40  # 6 sub-classes under 3 model labels (fine // 2); forget sub-class 4


def images() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    protos = torch.rand(FINE, 1, 8, 8, generator=g)
    fine = torch.arange(FINE).repeat_interleave(PER)
    x = protos[fine] + 0.2 * torch.randn(len(fine), 1, 8, 8, generator=g)
    return (x.clamp(0, 1) * 255).to(torch.uint8), fine


def mlp(x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    """A small batch-norm MLP fitted to (x, y) in a few hundred full-batch steps."""
    torch.manual_seed(0)
    m = nn.Sequential(
        nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 3)
    )
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(m(x.float() / 255), y).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    return m.eval()


@pytest.fixture(scope="module")
def setup():
    x, fine = images()
    y = fine // 2
    f = fine == 4  # model mismatch: sub-class 4 forgotten, its sibling 5 shares label 2
    data = UnlearnData(x[f], y[f], x[~f], y[~f], 3, ("a", "b", "c"))
    recipe = dataclasses.replace(get_recipe("tiny"), epochs=30, flip=False, crop_pad=0)
    ctx = UnlearnContext(device=CPU, recipe=recipe, seed=0, train_size=len(y))  # 72 / epoch
    return mlp(x, y), data, ctx


def acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model.eval()(x.float() / 255).argmax(1) == y).float().mean().item()


def conf(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean probability of the true label."""
    with torch.no_grad():
        return F.softmax(model.eval()(x.float() / 255), 1)[torch.arange(len(y)), y].mean().item()


def flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


# -- budget rule, all three ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["unsir", "lotus", "rfe"])
def test_budget_rule(setup, name):
    """Every forward pass that can backpropagate is counted, and the count is within the
    run's budget and each epoch within its cap."""
    model, data, ctx = setup
    seen = {"n": 0}

    def hook(module, inputs, output):
        if output.requires_grad:
            seen["n"] += inputs[0].shape[0]

    handle = model.register_forward_hook(hook)  # copied into every clone the method makes
    try:
        res = get_method(name).run(model, data, ctx)
    finally:
        handle.remove()
    assert 0 < seen["n"] == res.samples <= run_budget(ctx)
    assert 0 < res.epoch_samples <= ctx.epoch_samples()


# -- UNSIR -----------------------------------------------------------------------------------
def test_unsir_noise_maximises_the_forget_label_loss(setup):
    model, data, ctx = setup
    c = get_method("unsir").config
    stats = unsir.input_stats(model, data)
    z0 = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    before = flat(model)
    z, ce_z = unsir.learn_noise(model, 2, z0, stats, c, 40, ctx)
    assert torch.equal(flat(model), before) and all(p.grad is None for p in model.parameters())

    def objective(z: torch.Tensor) -> tuple[float, float]:
        with torch.no_grad():
            logits = model(stats[0] + stats[1] * z)
        loss = F.cross_entropy(logits, torch.full((len(z),), 2)).item()
        return loss, -loss + c.noise_l2 * z.square().sum((1, 2, 3)).mean().item()

    (ce0, obj0), (ce1, obj1) = objective(z0), objective(z)
    assert ce1 > ce0 + 1.0 and obj1 < obj0
    assert ce_z == pytest.approx([ce0, ce1], abs=1e-4)  # what the run records


def test_unsir_impair_and_repair_use_their_data(setup, monkeypatch):
    model, data, ctx = setup
    ctx = dataclasses.replace(ctx, train_size=2000)  # 600 / epoch: 15 noise images × 40 steps
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    ce = unsir.ce
    monkeypatch.setattr(unsir, "ce", lambda m, x, y, c: seen.append((x, y)) or ce(m, x, y, c))
    res = get_method("unsir", retain_per_class=10, batch_size=32).run(model, data, ctx)
    d = res.details
    assert d["noise_images"] == 15 and d["retain_subset"] == 30
    assert d["noise_ce"][0][1] > d["noise_ce"][0][0]
    keep = unsir.per_class_subset(data.y_remain, 10)
    subset = {(bytes(x.numpy()), int(y)) for x, y in zip(data.x_remain[keep], data.y_remain[keep])}
    cap = (2 * ctx.epoch_samples() - d["noise_images"] * d["noise_steps"]) // 2
    done, phases = 0, {"impair": [0, 0], "repair": [0, 0]}  # [noise rows, retain rows]
    for x, y in seen:
        phase = "impair" if done < min(cap, 5120 + 30) else "repair"
        done += len(y)
        on_grid = ((x * 255 - (x * 255).round()).abs() < 1e-4).flatten(1).all(1)
        assert (y[~on_grid] == 2).all()  # noise carries the forget label
        for xi, yi in zip(x[on_grid], y[on_grid]):  # retained images: the subset, never D_f
            assert (bytes((xi * 255).round().to(torch.uint8).numpy()), int(yi)) in subset
        phases[phase][0] += int((~on_grid).sum())
        phases[phase][1] += int(on_grid.sum())
    assert phases["impair"][0] > 0 and phases["impair"][1] > 0
    assert phases["repair"] == [0, 30]  # one pass over the subset, no noise


# -- LoTUS -----------------------------------------------------------------------------------
def test_lotus_targets_match_hand_computation():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-2.0, 3.0, 1.0]])
    forget = torch.tensor([True, False, True])
    targets = lotus_targets(logits, forget, 2.5, torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    g1 = -torch.empty(3, 3).exponential_(generator=g).log()
    g2 = -torch.empty(3, 3).exponential_(generator=g).log()
    for i in range(3):
        if forget[i]:
            e = torch.exp((logits[i] + g1[i]) / 2.5)
            expected = e / e.sum()
        else:
            expected = torch.zeros(3)
            expected[int((logits[i] + g2[i]).argmax())] = 1.0
        assert torch.allclose(targets[i], expected, atol=1e-6)
    # the hard retained targets are Gumbel-max samples: their frequencies are the softmax
    many = logits[2:].repeat(20000, 1)
    hard = lotus_targets(many, torch.zeros(20000, dtype=torch.bool), 1.0, g).mean(0)
    assert torch.allclose(hard, F.softmax(logits[2], 0), atol=0.015)
    soft = lotus_targets(logits, torch.ones(3, dtype=torch.bool), math.exp(32), g)
    assert torch.allclose(soft, torch.full((3, 3), 1 / 3), atol=1e-6)  # τ = e³²: uniform


def test_lotus_temperature_follows_the_forget_accuracy(setup):
    model, data, ctx = setup
    res = get_method("lotus", epochs=3, lr=0.01).run(model, data, ctx)
    d = res.details
    assert d["alpha"] == 2.0 and d["forget_acc"][0] == round(
        acc(model, data.x_forget, data.y_forget), 2
    )
    assert d["temperature"] == [round(math.exp(2.0 * a), 6) for a in d["forget_acc"]]
    # soft targets on D_f lower the student's confidence there, hard ones keep the rest
    p_f, p_un = conf(model, data.x_forget, data.y_forget), conf(model, data.x_remain, data.y_remain)
    assert conf(res.model, data.x_forget, data.y_forget) < p_f - 0.01
    assert conf(res.model, data.x_remain, data.y_remain) > p_un - 0.001
    # the forget accuracy already below Acc_val − 0.01 (a D_f the model gets wrong): the
    # authors' early stop, before any step
    wrong = dataclasses.replace(data, y_forget=torch.zeros_like(data.y_forget))
    stop = get_method("lotus", val_acc=0.5).run(model, wrong, ctx)
    assert stop.details["stopped_at_epoch"] == 0 and stop.samples == 0
    assert torch.equal(flat(stop.model), flat(model))
    # a whole label forgotten (no retained sample shares it): the class-unlearning α
    f = data.y_remain == 0
    whole = UnlearnData(
        data.x_remain[f],
        data.y_remain[f],
        data.x_remain[~f],
        data.y_remain[~f],
        3,
        data.class_names,
    )
    assert get_method("lotus", epochs=1).run(model, whole, ctx).details["alpha"] == 32.0


# small Stage-1 batches: 3 steps of 16 + 4 fit in the 72-sample cap
STAGE1 = {"lr": 0.03, "remote_batch_size": 16, "forget_batch_size": 4}


# -- RFE -------------------------------------------------------------------------------------
def test_rfe_pieces_match_their_definitions():
    g = torch.Generator().manual_seed(0)
    # L̃_f at α = 1 is W₂² of the two loss distributions: the best of all pairings
    y = torch.zeros(5, dtype=torch.long)
    za, zb = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    la = F.cross_entropy(za, y, reduction="none")
    lb = F.cross_entropy(zb, y, reduction="none")
    pairings = itertools.permutations(range(5))
    best = min(((la - lb[list(p)]) ** 2).mean().item() for p in pairings)
    assert rfe.w2_forget_loss(za, zb, y, 1.0).item() == pytest.approx(best)
    assert rfe.w2_forget_loss(za, zb, y, 0.0).item() == pytest.approx(-la.mean().item())
    # the clipped CE keeps its value, and samples past the clip give no gradient
    z = torch.tensor([[5.0, -5.0], [0.0, 0.0]], requires_grad=True)
    loss = rfe.clipped_ce(z, torch.tensor([1, 0]), clip=5.0)
    assert loss.item() == pytest.approx(F.cross_entropy(z, torch.tensor([1, 0])).item())
    loss.backward()
    assert torch.equal(z.grad[0], torch.zeros(2)) and z.grad[1].abs().sum() > 0
    # the projection: v minus its least-squares fit on span{g1, g2}, orthogonal to both
    v, g1, g2 = (torch.randn(50, generator=g, dtype=torch.float64) for _ in range(3))
    coef = torch.linalg.lstsq(torch.stack([g1, g2]).T, v[:, None]).solution[:, 0]
    p = rfe.project(v, g1, g2, n_tensors=0)
    assert torch.allclose(p, v - coef[0] * g1 - coef[1] * g2, atol=1e-10)
    assert abs(p @ g1) < 1e-9 and abs(p @ g2) < 1e-9


def test_rfe_stage1_is_the_augmented_lagrangian(setup, monkeypatch):
    """Each Stage-1 step descends on −γ·CE_clip(D_f) + λ·h + μ/2·h², and λ += μ·h after it."""
    model, data, ctx = setup
    seen: dict[str, list[float]] = {"ce": [], "clip": [], "loss": []}
    ce, clipped, step = rfe.ce, rfe.clipped_ce, rfe.step

    def record(key, fn):
        def wrapped(*args):
            out = fn(*args)
            seen[key].append(out.item() if key != "loss" else args[1].item())
            return out

        return wrapped

    monkeypatch.setattr(rfe, "ce", record("ce", ce))
    monkeypatch.setattr(rfe, "clipped_ce", record("clip", clipped))
    monkeypatch.setattr(rfe, "step", record("loss", step))
    res = get_method("rfe", epochs=1, mu=10.0, gamma=0.5, **STAGE1).run(model, data, ctx)
    remote = data.y_remain != 2
    with torch.no_grad():  # CE_θo(D_rem): the original's, on all of D_rem
        pinned = F.cross_entropy(model(data.x_remain[remote].float() / 255), data.y_remain[remote])
    lam = 0.0
    assert res.details["pinned_remote_loss"] == pytest.approx(pinned.item(), abs=1e-5)
    assert len(seen["loss"]) == len(seen["ce"]) == len(seen["clip"]) == 72 // 20
    for l_rem, l_f, loss in zip(seen["ce"], seen["clip"], seen["loss"]):
        h = l_rem - pinned.item()
        assert loss == pytest.approx(-0.5 * l_f + lam * h + 5.0 * h**2, abs=1e-5)
        lam += 10.0 * h
    assert res.details["multiplier"] == pytest.approx(lam, abs=1e-4)


def test_rfe_forgets_under_the_remote_constraint(setup):
    model, data, ctx = setup
    bn = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    res = get_method("rfe", epochs=1, **STAGE1).run(model, data, ctx)  # Stage 1 alone
    d = res.details
    assert d["adjacent"] == PER and d["remote"] == len(data.y_remain) - PER
    assert (
        acc(res.model, data.x_forget, data.y_forget)
        < 0.5
        < acc(model, data.x_forget, data.y_forget)
    )
    remote = data.y_remain != 2
    after = F.cross_entropy(
        res.model(data.x_remain[remote].float() / 255), data.y_remain[remote]
    ).item()
    # without the Lagrangian (μ = 0: the multiplier stays 0) the remote loss drifts further
    free = get_method("rfe", epochs=1, mu=0.0, **STAGE1).run(model, data, ctx).model
    drift = F.cross_entropy(free(data.x_remain[remote].float() / 255), data.y_remain[remote]).item()
    assert abs(after - d["pinned_remote_loss"]) < abs(drift - d["pinned_remote_loss"])
    assert all(torch.equal(v, res.model.state_dict()[k]) for k, v in bn.items())  # eval mode
    # D_f a whole label: nothing adjacent, Stage 1 is the whole method
    f = data.y_remain == 0
    whole = UnlearnData(
        data.x_remain[f],
        data.y_remain[f],
        data.x_remain[~f],
        data.y_remain[~f],
        3,
        data.class_names,
    )
    only = get_method("rfe").run(model, whole, ctx)
    assert only.details["adjacent"] == 0 and only.details["stage2_steps"] == 0


def test_rfe_stage2_steps_along_the_projected_direction(setup, monkeypatch):
    model, data, ctx = setup
    calls: list[torch.Tensor] = []
    project = rfe.project

    def recording(v, g1, g2, n):
        calls.append(project(v, g1, g2, n))
        assert abs(calls[-1] @ g1) < 1e-2 * calls[-1].norm() * g1.norm()
        assert abs(calls[-1] @ g2) < 1e-2 * calls[-1].norm() * g2.norm()
        return calls[-1]

    monkeypatch.setattr(rfe, "project", recording)
    stage1 = get_method("rfe", epochs=1, **STAGE1).run(model, data, ctx).model
    res = get_method("rfe", epochs=4, stage2_lr=0.05, **STAGE1).run(model, data, ctx)
    assert res.details["stage2_steps"] == len(calls) == 3
    # plain SGD along the projected directions, from where Stage 1 ended
    expected = flat(stage1) - 0.05 * torch.stack(calls).sum(0)
    assert torch.allclose(flat(res.model), expected, atol=1e-6)
    x_adj, y_adj = data.x_remain[data.y_remain == 2], data.y_remain[data.y_remain == 2]
    with torch.no_grad():
        loss = [F.cross_entropy(m(x_adj.float() / 255), y_adj).item() for m in (stage1, res.model)]
    assert loss[1] < loss[0]  # Stage 2 repairs the siblings Stage 1 damaged
    assert acc(res.model, data.x_forget, data.y_forget) < 0.5  # ... and D_f stays forgotten

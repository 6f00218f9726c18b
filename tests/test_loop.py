"""The budgeted loop (tarf.methods.loop): every epoch is cut at its share of the budget
and at one pass of its data, charged work shrinks the epochs, and every sample through
forward+backward is counted."""

import dataclasses
import sys
import types

import pytest
import torch
import torch.nn as nn

import tarf.methods.base as base
from tarf.methods import get_method
from tarf.methods.base import UnlearnContext, UnlearnData
from tarf.methods.common import Pool
from tarf.methods.loop import Loop, LoopConfig, iterative
from tarf.recipes import get_recipe

CPU = torch.device("cpu")
CAP = 60  # samples per epoch: a tenth of the tiny recipe's 30 epochs over 200 samples


@pytest.fixture
def ctx() -> UnlearnContext:
    recipe = dataclasses.replace(get_recipe("tiny"), epochs=30, crop_pad=0, flip=False)
    ctx = UnlearnContext(device=CPU, recipe=recipe, seed=0, train_size=200)
    assert ctx.epoch_samples() == CAP
    return ctx


def pool(n: int, ctx: UnlearnContext) -> Pool:
    g = torch.Generator().manual_seed(n)
    x = torch.randint(0, 255, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    return Pool(x, torch.randint(0, 3, (n,), generator=g), ctx, seed_offset=2)


def counting_model() -> tuple[nn.Module, list[int]]:
    """A linear classifier whose training-mode forward passes are counted (the hook is
    copied into the loop's clone)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    seen: list[int] = []
    model.register_forward_hook(lambda m, a, out: seen.append(len(a[0])) if m.training else None)
    return model, seen


def test_an_epoch_is_cut_at_the_cap(ctx):
    """The step asks for far more than the cap (a pool of 500, 1,000 samples): every
    epoch gets exactly the cap, and the run exactly epochs × cap."""
    model, seen = counting_model()
    loop = Loop(model, ctx, LoopConfig(epochs=3))
    big = pool(500, ctx)
    per_epoch = []
    for epoch in loop:
        for x, y in epoch.batches(big, batch_size=16, samples=1000):
            loop.opt.zero_grad()
            loop.loss(x, y).backward()
            loop.opt.step()
        per_epoch.append(epoch.used)
    assert per_epoch == [CAP] * 3 and sum(seen) == 3 * CAP
    res = loop.result()
    assert res.samples == 3 * CAP and res.epoch_samples == CAP
    assert res.record()["samples"] == 3 * CAP and not res.model.training


def test_train_obeys_the_cap_and_one_pass_of_the_data(ctx):
    model, seen = counting_model()
    loop = Loop(model, ctx, LoopConfig(epochs=4, lr=0.1))
    loop.train(pool(500, ctx), loop.loss)
    assert loop.samples == sum(seen) == 4 * CAP
    # a pool smaller than the cap: one pass per epoch, not more
    model, seen = counting_model()
    small = Loop(model, ctx, LoopConfig(epochs=4))
    small.train(pool(25, ctx), small.loss)
    assert small.samples == sum(seen) == 4 * 25 and small.epoch_samples == 25
    assert small.lr == ctx.recipe.unlearn_lr  # lr None: the recipe's


def test_charged_work_shrinks_the_epochs(ctx):
    model, seen = counting_model()
    loop = Loop(model, ctx, LoopConfig(epochs=10))
    loop.charge(100)  # e.g. a saliency pass over 100 forget samples
    assert loop.cap == (10 * CAP - 100) // 10 == 50
    loop.train(pool(500, ctx), loop.loss)
    assert sum(seen) == 10 * 50 and loop.samples == 100 + 10 * 50 <= 10 * CAP
    with pytest.raises(RuntimeError):
        loop.charge(1)


def test_paired_steps_fit_the_cap_and_count_their_cost(ctx):
    loop = Loop(counting_model()[0], ctx, LoopConfig(epochs=3))
    epochs = iter(loop)
    assert len(next(epochs).steps(size=20, data=1000)) == CAP // 20  # the cap binds
    # a step of batches of 20 and 10 (TARF's Phase II with the set-aside batch) fits the
    # cap by all 30 it forwards
    assert len(next(epochs).steps(size=20 + 10, data=1000)) == CAP // 30
    assert len(next(epochs).steps(size=20 + 10, data=70)) == 2  # one pass of 70 binds
    assert loop.samples == (CAP // 20) * 20 + (CAP // 30) * 30 + 2 * 30
    assert (CAP // 20) * 30 > CAP  # sized by its batch of 20 alone, it would pass the cap
    one = next(iter(Loop(counting_model()[0], ctx, LoopConfig(epochs=1))))
    assert len(one.steps(size=100, data=1000)) == 1  # at least one step


def test_until_cap_passes_over_a_small_pool_until_the_cap(ctx):
    """A phase defined by the change it causes (TARF's Phase I) may pass over a pool more
    than once, but never beyond the epoch's cap, and every batch is counted."""
    loop = Loop(counting_model()[0], ctx, LoopConfig(epochs=2))
    epoch = next(iter(loop))
    sizes = [len(y) for _, y in epoch.until_cap(pool(25, ctx), 16)]
    assert sum(sizes) == CAP and max(sizes) == 16 and sizes[-1] == CAP % 16  # 2.4 passes
    assert loop.samples == CAP and epoch.remaining == 0
    assert list(epoch.until_cap(pool(25, ctx), 16)) == []  # nothing left in this epoch
    second = next(iter(Loop(counting_model()[0], ctx, LoopConfig(epochs=1))))
    taken = 0
    for _, y in second.until_cap(pool(25, ctx), 16):  # the caller ends it early
        taken += len(y)
        break
    assert taken == 16 and second.used == 16


def test_the_original_model_is_not_modified(ctx):
    model, _ = counting_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loop = Loop(model, ctx, LoopConfig(epochs=2, lr=0.5))
    loop.train(pool(100, ctx), loop.loss)
    assert loop.original is model
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert not torch.equal(loop.model[1].weight, model[1].weight)


def test_iterative_registers_a_method(ctx, monkeypatch):
    """A method is its body and its config; the loop gives it the budget and the counts."""
    monkeypatch.setattr(base, "METHODS", {})  # keep the toy out of the real registry

    @dataclasses.dataclass
    class ToyConfig(LoopConfig):
        epochs: int = 2

    @iterative("toy", ToyConfig)
    def Toy(loop: Loop, data: UnlearnData) -> dict:
        """Toy: fine-tune on D_un."""
        loop.train(Pool(data.x_remain, data.y_remain, loop.ctx), loop.loss)
        return {"lr": loop.lr}

    assert base.METHODS == {"toy": Toy} and Toy.__doc__ == "Toy: fine-tune on D_un."
    remain = pool(500, ctx)
    data = UnlearnData(remain.x[:10], remain.y[:10], remain.x, remain.y, 3, ("a", "b", "c"))
    model, seen = counting_model()
    res = get_method("toy", epochs=3).run(model, data, ctx)
    assert res.samples == sum(seen) == 3 * CAP and res.details == {"lr": 0.01}
    assert res.record() == {"lr": 0.01, "epoch_samples": CAP, "samples": 3 * CAP}


def test_the_docs_example_method_runs_within_the_budget(ctx, monkeypatch):
    """docs/design.md's "Adding a method" example is the real NegGrad+ module, word for
    word, and as printed it is a working method within the budget."""
    import re
    from pathlib import Path

    monkeypatch.setattr(base, "METHODS", {})
    root = Path(__file__).resolve().parent.parent
    text = (root / "docs" / "design.md").read_text()
    section = text[text.index("## Adding a method") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert code == (root / "src" / "tarf" / "methods" / "neggrad_plus.py").read_text()
    module = types.ModuleType("docs_example")  # run as a module (dataclasses look it up)
    monkeypatch.setitem(sys.modules, "docs_example", module)
    exec(compile(code, "design.md", "exec"), module.__dict__)
    assert set(base.METHODS) == {"neggrad-plus"}
    remain = pool(500, ctx)
    data = UnlearnData(remain.x[:40], remain.y[:40], remain.x, remain.y, 3, ("a", "b", "c"))
    model, seen = counting_model()
    sizes = {"retain_batch_size": 8, "forget_batch_size": 4}  # 5 steps of 12 fill the cap
    res = get_method("neggrad-plus", alpha=0.9, epochs=2, **sizes).run(model, data, ctx)
    assert res.samples == sum(seen) == 2 * CAP and res.details["alpha"] == 0.9
    assert res.details["batch_sizes"] == [8, 4]
    assert not torch.equal(res.model[1].weight, model[1].weight)  # it trained a copy
    # a cap smaller than one step (128 + 64 by default): smaller batches, within the cap
    model, seen = counting_model()
    res = get_method("neggrad-plus", epochs=2).run(model, data, ctx)
    assert res.samples == sum(seen) <= 2 * CAP and res.details["batch_sizes"] == [40, 20]

"""TARF's identification by nearness to D_f under the original model: in its outputs
(class_signal=outputs, the default) or its representation (features), read from any
model, and the report and warnings that go with them."""

import pytest
import torch
import torch.nn as nn

from tarf.methods import get_method
from tarf.methods.base import UnlearnContext, UnlearnData
from tarf.methods.common import representation
from tarf.methods.tarf import TARFConfig
from tarf.methods.tarf_identify import class_signals, feature_nearness, identify_classes
from tarf.recipes import get_recipe
from tarf.request import Prior

NAMES = ("cat", "dog", "fox", "car", "bus", "van")


def _concept_data(per_class: int = 60) -> UnlearnData:
    """Six classes of 1x4x4 images around random prototypes; dog's and fox's lie next to
    cat's (the concept), the vehicles' far away. cat is D_f; two classes hide in D_un."""
    g = torch.Generator().manual_seed(0)
    protos = torch.rand(6, 16, generator=g) * 0.4
    protos[1] = protos[0] + 0.08 * torch.randn(16, generator=g)
    protos[2] = protos[0] + 0.12 * torch.randn(16, generator=g)
    protos[3:] += 0.6
    y = torch.arange(6).repeat_interleave(per_class)
    x = protos[y] + 0.05 * torch.randn(len(y), 16, generator=g)
    x = (x.clamp(0, 1) * 255).to(torch.uint8).reshape(-1, 1, 4, 4)
    f = y == 0
    return UnlearnData(x[f], y[f], x[~f], y[~f], 6, NAMES, Prior(2))


def _ctx(task: str = "target-mismatch") -> UnlearnContext:
    return UnlearnContext(
        device=torch.device("cpu"), recipe=get_recipe("tiny", "toy"), seed=0, task=task,
        dataset="toy", train_size=360,
    )  # fmt: skip


class WithFeatures(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU())
        self.head = nn.Linear(32, 6)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def test_representation_reads_features_else_the_last_linear_input_else_logits():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (10, 1, 4, 4), dtype=torch.uint8)
    xf = x.float() / 255
    model = WithFeatures()
    rep, source = representation(model, x, _ctx(), batch_size=3)
    assert source == "features" and torch.allclose(rep, model.body(xf), atol=1e-6)
    plain = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh(), nn.Linear(8, 6))
    rep, source = representation(plain, x, _ctx(), batch_size=4)
    assert source == "last-linear" and torch.allclose(rep, plain[:3](xf), atol=1e-6)
    assert not plain._forward_pre_hooks and not plain[3]._forward_pre_hooks  # hook removed
    scripted = torch.jit.script(plain)
    rep, source = representation(scripted, x, _ctx())
    assert source == "logits" and torch.allclose(rep, plain(xf), atol=1e-6)


@pytest.mark.parametrize("model_kind", ["features", "plain"])
def test_tarf_by_features_sets_aside_the_classes_nearest_to_the_forget_data(model_kind):
    """An untrained network keeps the inputs' geometry: dog and fox sit next to cat, so
    the default ranking by representation sets them aside, whatever Phase I did."""
    torch.manual_seed(0)
    model = (
        WithFeatures()
        if model_kind == "features"
        else nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 6))
    )
    data = _concept_data()
    res = get_method("tarf", stop_after_identification=True, class_signal="features").run(
        model, data, _ctx()
    )
    ident = res.identification
    assert ident["signal"] == "features" and sorted(ident["classes"]) == ["dog", "fox"]
    assert ident["representation"] == ("features" if model_kind == "features" else "last-linear")
    assert list(ident["feature_nearness"])[:2] == list(ident["top10"])[:2]
    assert ident["margin"]["between"][1] in ("car", "bus", "van")
    assert not ident["margin"]["within_noise"] and "warning" not in ident
    # the same run ranked by the loss Phase I caused is a different, noisier signal
    by_loss = get_method("tarf", stop_after_identification=True, class_signal="loss").run(
        model, data, _ctx()
    )
    assert by_loss.identification["signal"] == "loss"
    # both nearness rankings are recorded whichever signal ranks
    assert set(by_loss.identification["output_nearness"]) == set(NAMES[1:])


def test_features_margin_within_noise_warns_with_a_fix_for_representation():
    """Every class as near to D_f as the others but for noise: the cut is within noise,
    and the warning names this signal's units and remedies, not Phase I's."""
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(4).repeat_interleave(50)
    nearness = 0.2 + 0.3 * torch.randn(200, generator=g)
    loss = torch.ones(200)
    ones = torch.ones(200, dtype=torch.bool)
    from tarf.methods.tarf_identify import ClassStats

    stats = ClassStats(torch.full((4,), 100.0), torch.ones(4), loss, ones, labels)
    data = UnlearnData(labels[:1], labels[:1], labels, labels, 4, ("a", "b", "c", "d"), Prior(1))
    signals = class_signals(stats, stats, 4, {"features": nearness})
    assert torch.allclose(signals["features"][0], nearness[:50].mean())
    near = {"features": nearness}
    by_features = TARFConfig(class_signal="features")
    _, ident = identify_classes(stats, stats, data, by_features, "target-mismatch", near, "x")
    assert ident["margin"]["within_noise"]
    assert "cosine" in ident["warning"] and "--forget" in ident["warning"]
    assert "Phase I barely moved" not in ident["warning"]  # no Phase I in this ranking


def test_feature_nearness_is_a_cosine_about_the_probe_mean_not_a_distance():
    """A class of small features sits near D_f's centre by distance but points elsewhere;
    the class that points D_f's way ranks first, whatever its scale."""
    forget = torch.tensor([[4.0, 0.0]]).repeat(5, 1)
    small = torch.tensor([[0.2, 0.3]]).repeat(5, 1)
    along = torch.tensor([[9.0, 1.0]]).repeat(5, 1)
    other = torch.tensor([[1.0, 6.0]]).repeat(5, 1)
    rep = torch.cat([small, along, other])
    distance = (rep - forget.mean(0)).norm(dim=1)
    assert distance[0] < distance[5] < distance[10]  # by distance, "small" is nearest
    near = feature_nearness(rep, forget)
    assert near[5:10].mean() > near[:5].mean() and near[5:10].mean() > near[10:].mean()
    centre = rep.mean(0)
    expected = torch.nn.functional.cosine_similarity(along[0] - centre, forget[0] - centre, dim=0)
    assert torch.allclose(near[5], expected)


def test_report_lines_show_the_features_ranking_not_phase_one():
    from tarf.identification_report import identification_lines

    ident = {
        "level": "class", "n": 1, "n_source": "prior", "classes": ["dog"], "signal": "features",
        "feature_nearness": {"dog": 0.61, "fox": 0.2}, "drops": {"fox": 3.0, "dog": 1.0},
    }  # fmt: skip
    lines = identification_lines({"identification": ident})
    assert (
        lines[1]
        == "top of the features ranking (cosine to D_f, original model): dog (0.610), fox (0.200)"
    )
    ident["signal"] = "loss"
    assert "after Phase I: fox" in identification_lines({"identification": ident})[1]


def test_output_nearness_is_what_the_model_answers_for_the_forget_data_otherwise():
    """Label 0 is D_f's. Its samples' second choice is 1 (strongly) or 2; 3 gets nothing:
    1 is nearest, then 2, then 3. D_f's own label sits at the top (0), and the mean is
    of log-probabilities among the labels other than D_f's."""
    from tarf.methods.tarf_identify import output_nearness

    logits = torch.tensor([
        [9.0, 4.0, 2.0, 0.0],
        [20.0, 5.0, 1.0, 1.0],  # the own label's confidence plays no part
        [7.0, 1.0, 3.0, 0.0],
    ])  # fmt: skip
    mean, se = output_nearness(logits, torch.tensor([0]))
    assert mean[0] == 0 and se[0] == 0
    assert mean[1] > mean[2] > mean[3]
    logq = torch.log_softmax(logits[:, 1:], 1)
    assert torch.allclose(mean[1:], logq.mean(0))
    assert torch.allclose(se[1:], logq.std(0) / 3**0.5)
    logits[1, 0] = 90.0
    assert torch.allclose(output_nearness(logits, torch.tensor([0]))[0], mean)


class NearestCentroid(nn.Module):
    """Logits = minus the squared distance to each class's mean input: a classifier whose
    second choices follow the inputs' geometry."""

    def __init__(self, data: UnlearnData) -> None:
        super().__init__()
        x = torch.cat([data.x_forget, data.x_remain]).flatten(1).float() / 255
        y = torch.cat([data.y_forget, data.y_remain])
        means = torch.stack([x[y == c].mean(0) for c in range(data.num_classes)])
        self.register_buffer("means", means)
        self.scale = nn.Parameter(torch.tensor(200.0))  # something for Phase I to move

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.scale * torch.cdist(x.flatten(1).float() / 255, self.means) ** 2


def test_tarf_ranks_by_outputs_by_default():
    """A model whose second choice for cat (D_f) is dog or fox: ranked by its outputs (the
    default), they are set aside, with a margin well outside noise, and the summary shows
    the outputs ranking."""
    from tarf.identification_report import identification_lines

    # dog and fox lie next to cat, each along its own pixels, so each takes cat (not the
    # other) for its second choice; the vehicles lie far away, next to each other
    g = torch.Generator().manual_seed(0)
    protos = torch.full((6, 16), 0.3)
    protos[1, :4] += 0.15
    protos[2, 4:8] += 0.15
    protos[3:] = 0.8 + 0.1 * torch.rand(3, 16, generator=g)
    y = torch.arange(6).repeat_interleave(60)
    x = protos[y] + 0.03 * torch.randn(len(y), 16, generator=g)
    x = (x.clamp(0, 1) * 255).to(torch.uint8).reshape(-1, 1, 4, 4)
    f = y == 0
    data = UnlearnData(x[f], y[f], x[~f], y[~f], 6, NAMES, Prior(2))
    model = NearestCentroid(data)
    res = get_method("tarf", stop_after_identification=True).run(model, data, _ctx())
    ident = res.identification
    assert ident["signal"] == "outputs" and sorted(ident["classes"]) == ["dog", "fox"]
    assert list(ident["output_nearness"])[:2] == list(ident["top10"])[:2]
    assert not ident["margin"]["within_noise"]
    lines = identification_lines({"identification": ident})
    assert lines[1].startswith("top of the outputs ranking (D_f's mean log-probability of it")

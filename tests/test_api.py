"""A user's own model and data: tarf.unlearn / tarf.evaluate, the unlearn-model and
eval-model commands (.npz, ImageFolder, state dict + architecture, TorchScript), bad
input, and the Fashion-MNIST example."""

import copy
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import CLASSES, GROUPS

import tarf
from tarf.cli import main

REPO = Path(__file__).resolve().parent.parent


def mlp(num_classes: int = 7) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, num_classes))


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 60) -> nn.Module:
    """The user's own training loop, outside tarf (inputs: uint8 / 255, or floats as given)."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    xf = x.float() / 255 if x.dtype == torch.uint8 else x
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(model(xf), y).backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def user(toy_dataset):
    """A model, a reference retrained without "animals", data and a dict hierarchy."""
    ds = toy_dataset
    torch.manual_seed(0)
    model = fit(mlp(), ds.x_train, ds.y_train)
    keep = ds.y_train >= 3  # not cat, dog, fox
    reference = fit(mlp(), ds.x_train[keep], ds.y_train[keep])
    return {
        "model": model,
        "reference": reference,
        "data": (ds.x_train, ds.y_train),
        "test": (ds.x_test, ds.y_test),
        "request": tarf.make_request(GROUPS, "cat", "animals", class_names=CLASSES),
    }


def test_unlearn_tensors_dict_hierarchy(user):
    before = copy.deepcopy(user["model"].state_dict())
    model, report = tarf.unlearn(
        user["model"], user["data"], user["request"], test=user["test"], train_epochs=100,
        k=2.0, lr=0.1,
    )  # fmt: skip
    assert type(model) is nn.Sequential and model is not user["model"]
    assert all(torch.equal(before[k], v) for k, v in user["model"].state_dict().items())
    assert report["task"] == "target-mismatch" and report["method"] == "tarf"
    for block in ("metrics", "original"):
        assert all(0 <= report[block][k] <= 100 for k in ("UA", "RA", "TA", "MIA"))
    assert report["metrics"]["UA"] < report["original"]["UA"]  # it forgot something
    assert report["identification"]["n"] == 2 and report["identification"]["n_source"] == "prior"
    assert report["reference"] is None and "Gap" not in report["metrics"]
    assert any("reference" in n and "unavailable" in n for n in report["notes"])
    assert "| target-mismatch | tarf" in tarf.summary(report)


def test_evaluate_with_and_without_reference(user):
    m, r, d, t, req = (user[k] for k in ("model", "reference", "data", "test", "request"))
    full = tarf.evaluate(m, d, req, test=t, reference=r)
    assert full["reference"]["UA"] == 0.0 and full["metrics"]["UA"] > 90
    assert full["metrics"]["Gap"] > 0 and full["notes"] == []
    bare = tarf.evaluate(m, d, req, test=t)
    assert "Gap" not in bare["metrics"] and bare["reference"] is None
    assert bare["metrics"]["UA"] == full["metrics"]["UA"]
    assert any("reference metrics are unavailable" in n.replace("reference's", "reference") for n in bare["notes"])  # fmt: skip
    no_test = tarf.evaluate(m, d, req)
    assert no_test["metrics"]["TA"] is None and no_test["metrics"]["MIA"] is None
    assert any("no test data" in n for n in no_test["notes"])
    # an unnamed concept: UA on D_f, RA on D_un, and the notes say so
    unnamed = tarf.evaluate(m, d, tarf.make_request(GROUPS, "cat", prior=2, class_names=CLASSES))
    assert any("unnamed" in n for n in unnamed["notes"])


def test_dataset_input_and_dict_request(user, toy_dataset):
    """A torch Dataset (float images, class-name labels) and a dict request whose model
    labels are read off the model's output size."""
    ds = toy_dataset
    xf = ds.x_train.float() / 255  # float data reaches the model unchanged

    class Named(torch.utils.data.Dataset):
        def __len__(self):
            return len(ds.y_train)

        def __getitem__(self, i):
            return xf[i], CLASSES[int(ds.y_train[i])]

    request = {"forget": "cat", "target": "animals", "class_names": CLASSES}
    a = tarf.evaluate(user["model"], Named(), request, hierarchy=GROUPS)
    b = tarf.evaluate(user["model"], user["data"], user["request"])
    assert a["task"] == "target-mismatch"
    assert a["metrics"]["UA"] == pytest.approx(b["metrics"]["UA"])
    assert a["metrics"]["RA"] == pytest.approx(b["metrics"]["RA"])
    model, rep = tarf.unlearn(
        user["model"], torch.utils.data.TensorDataset(ds.x_train, ds.y_train),
        user["request"], method="ga", train_epochs=50,
    )  # fmt: skip
    assert rep["method"] == "ga" and rep["metrics"]["TA"] is None


def test_bad_inputs_name_the_fix(user):
    with pytest.raises(ValueError, match="closest: 'cat'"):
        tarf.make_request(GROUPS, "kat", "animals", class_names=CLASSES)
    five = fit(mlp(5), user["data"][0], user["data"][1] % 5, steps=1)
    with pytest.raises(ValueError, match="label-domain mismatch: the model outputs 5 logits"):
        tarf.unlearn(five, user["data"], user["request"])
    superclass = tarf.make_request(
        GROUPS, "cat", "animals", model_labels="superclass", class_names=CLASSES
    )
    with pytest.raises(ValueError, match="pass model_labels='class'"):
        tarf.evaluate(user["model"], user["data"], superclass)
    with pytest.raises(ValueError, match="reference="):
        tarf.unlearn(user["model"], user["data"], user["request"], method="retrain")
    with pytest.raises(ValueError, match="class ids 0..6"):
        tarf.evaluate(user["model"], (user["data"][0], user["data"][1] + 5), user["request"])
    with pytest.raises(ValueError, match="the reference outputs 5 logits but the model and"):
        tarf.evaluate(user["model"], user["data"], user["request"], reference=five)
    with pytest.raises(TypeError, match="got OrderedDict: a state dict\\? load it"):
        tarf.unlearn(user["model"].state_dict(), user["data"], user["request"])
    with pytest.raises(TypeError, match="reference must be a torch.nn.Module, got str: a path"):
        tarf.evaluate(user["model"], user["data"], user["request"], reference="ref.pt")
    with pytest.raises(ValueError, match="device='gpu': not a device torch knows"):
        tarf.evaluate(user["model"], user["data"], user["request"], device="gpu")
    with pytest.raises(ValueError, match="device='mps': tarf runs on the CPU or a CUDA GPU"):
        tarf.evaluate(user["model"], user["data"], user["request"], device="mps")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is available; use device='cpu'"):
            tarf.evaluate(user["model"], user["data"], user["request"], device="cuda")
    one_hot = F.one_hot(torch.as_tensor(user["data"][1]), 7)
    with pytest.raises(
        ValueError, match=r"one class id or name per sample, got shape \(\d+, 7\); one-hot"
    ):
        tarf.evaluate(user["model"], (user["data"][0], one_hot), user["request"])
    with pytest.raises(ValueError, match="train_epochs=0: give a whole number >= 1"):
        tarf.unlearn(user["model"], user["data"], user["request"], train_epochs=0)


def test_mistakes_a_user_makes_are_one_line_each(user):
    m, r, (x, y), req = user["model"], user["reference"], user["data"], user["request"]
    with pytest.raises(ValueError, match="hierarchy= is for a dict request"):
        tarf.evaluate(m, (x, y), req, hierarchy=GROUPS)
    with pytest.raises(ValueError, match="'modle_labels' .*closest: 'model_labels'"):
        tarf.evaluate(m, (x, y), {"forget": "cat", "target": "animals", "modle_labels": "class"},
                      hierarchy=GROUPS)  # fmt: skip
    with pytest.raises(ValueError, match="evaluate=False measures nothing"):
        tarf.unlearn(m, (x, y), req, reference=r, evaluate=False)

    class Pair(nn.Module):  # returns (logits, features), as many research models do
        def forward(self, inp):
            return m(inp), inp

    with pytest.raises(ValueError, match="returns a tuple, not a tensor of logits"):
        tarf.evaluate(Pair(), (x, y), req)
    nan = x.float().clone()
    nan[3, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite values in 1 of"):
        tarf.evaluate(m, (nan, y), req)
    with pytest.raises(ValueError, match=r"weights are torch.float64 .*pass model.float\(\)"):
        tarf.evaluate(copy.deepcopy(m).double(), (x, y), req)


def test_evaluate_says_what_it_could_not_trust(user, tmp_path):
    """Labels that cannot be the model's give a warning (a model unlearning wrecked is
    near chance too, so it is still measured); a reference without test data gives the
    Gap over UA and RA; the result reads through tarf.summary."""
    m, r, (x, y), req = user["model"], user["reference"], user["data"], user["request"]
    with pytest.warns(tarf.TarfWarning, match="label mapping: the model is"):
        shifted = tarf.evaluate(m, (x, (y + 1) % 7), req)
    assert shifted["warnings"] and shifted["warnings"][0].startswith("label mapping")
    with pytest.raises(ValueError, match="label mapping: the reference is"):
        tarf.evaluate(m, (x, (y + 1) % 7), req, reference=r)
    no_test = tarf.evaluate(m, (x, y), req, reference=r)
    ua_ra = (abs(no_test["metrics"][k] - no_test["reference"][k]) for k in ("UA", "RA"))
    assert no_test["metrics"]["Gap"] == pytest.approx(sum(ua_ra) / 2)
    assert any("the Gap is over UA and RA only" in n for n in no_test["notes"])
    assert "| target-mismatch | model " in tarf.summary(no_test)
    assert not any("0-255" in n for n in no_test["notes"])  # uint8 images: nothing to say
    as_floats = tarf.evaluate(m, (x.double(), y), req)  # 0-255 as floats: as they are
    assert any("floats of whole numbers 0-255" in n for n in as_floats["notes"])
    (tmp_path / "eval.json").write_text(json.dumps(no_test))  # as eval-model --out writes it
    assert tarf.summary(tmp_path / "eval.json") == tarf.summary(no_test)
    with pytest.raises(ValueError, match="not found"):
        tarf.summary(tmp_path / "missing.json")
    with pytest.warns(tarf.TarfWarning, match="so it was not retrained without it"):
        itself = tarf.evaluate(m, (x, y), req, reference=m)  # the model as its own reference
    assert itself["metrics"]["Gap"] == 0 and len(itself["warnings"]) == 1
    # a concept of most of the data: a right reference is near chance on all of it, not on
    # the retained data, where the mapping is checked (and a reference keeping the label
    # of the concept's samples, as in model mismatch, is no cause for a warning)
    wide = tarf.make_request(GROUPS, "cat", "animals,vehicles", class_names=CLASSES)
    plants = fit(mlp(), x[y >= 5], y[y >= 5])
    right = tarf.evaluate(m, (x, y), wide, reference=plants)
    assert right["warnings"] == [] and right["reference"]["UA"] == 0
    mm = tarf.make_request(GROUPS, "cat", "cat", model_labels="superclass", class_names=CLASSES)
    coarse = fit(mlp(3), x, torch.tensor([0, 0, 0, 1, 1, 2, 2])[y])
    assert tarf.evaluate(coarse, (x, y), mm, reference=coarse)["warnings"] == []


def test_config_as_a_dict_and_the_model_left_as_it_was(user):
    before = copy.deepcopy(user["model"].state_dict())
    _, report = tarf.unlearn(user["model"], user["data"], user["request"], method="ga",
                             config={"epochs": 1, "lr": 0.05}, lr=0.02, evaluate=False)  # fmt: skip
    assert report["config"]["epochs"] == 1 and report["config"]["lr"] == 0.02  # keywords win
    assert all(torch.equal(before[k], v) for k, v in user["model"].state_dict().items())

    class Moves(nn.Module):  # records where it is sent: the run's device, then back
        def __init__(self):
            super().__init__()
            self.net, self.sent = copy.deepcopy(user["model"]), []

        def forward(self, inp):
            return self.net(inp)

        def to(self, *args, **kwargs):
            self.sent.append(torch.device(args[0]) if args else kwargs.get("device"))
            return super().to(*args, **kwargs)

    model = Moves()
    tarf.evaluate(model, user["data"], user["request"], device="cpu")
    assert model.sent[-1] == torch.device("cpu") and len(model.sent) >= 2  # moved back last


def test_label_order_must_be_stated_for_integer_labels(user):
    """A dict hierarchy lists classes in some order; integer labels need the real one."""
    shuffled = {
        "plants": ["oak", "fern"],
        "vehicles": ["car", "bus"],
        "animals": ["cat", "dog", "fox"],
    }
    with pytest.raises(ValueError, match="integer labels need the class of each label id"):
        tarf.unlearn(user["model"], user["data"], tarf.make_request(shuffled, "cat", "animals"))
    names = [CLASSES[int(i)] for i in user["data"][1]]  # names as labels: no order needed
    request = tarf.make_request(shuffled, "cat", "animals")
    # the model's outputs follow CLASSES, the hierarchy's ids follow the shuffled listing
    with pytest.raises(ValueError, match=r"label mapping: .*class_names=\['cat', 'dog'"):
        tarf.unlearn(user["model"], (user["data"][0], names), request, evaluate=False)


def test_near_chance_model_is_refused(user):
    untrained = mlp()
    with pytest.raises(
        ValueError, match="model is .* accurate.*check that the original model is trained"
    ):
        tarf.unlearn(untrained, user["data"], user["request"], evaluate=False)
    model, report = tarf.unlearn(
        untrained, user["data"], user["request"], method="ft", evaluate=False, check_labels=False
    )
    assert report["metrics"]["RTE_s"] >= 0


def test_hierarchy_mistakes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="'cat' is in two superclasses, 'animals' and 'pets'"):
        tarf.load_hierarchy({**GROUPS, "pets": ["cat"]})
    with pytest.raises(ValueError, match=r"classes \['kat'\] are not among the data's classes"):
        tarf.load_hierarchy({**GROUPS, "animals": ["kat", "cat", "dog", "fox"]}, CLASSES)
    with pytest.raises(ValueError, match=r"\['cat'\] twice in the data's classes"):
        tarf.load_hierarchy(GROUPS, [*CLASSES, "cat"])
    with pytest.raises(ValueError, match=r"classes \['fern'\] are not among its 'class_order'"):
        tarf.load_hierarchy({**GROUPS, "class_order": list(CLASSES[:-1])})
    digits = tmp_path / "digits.yaml"
    digits.write_text("round: [0, 6, 8, 9]\nstraight: [1, 4, 7]\ncurved: [2, 3, 5]\n")
    h = tarf.load_hierarchy(digits)  # unquoted numbers are the names "0", "6", ...
    assert h.class_names[:2] == ("0", "6") and not h.ordered
    ordered = tmp_path / "ordered.yaml"
    ordered.write_text(digits.read_text() + f"class_order: {[str(i) for i in range(10)]}\n")
    assert tarf.load_hierarchy(ordered).class_names == tuple(str(i) for i in range(10))
    as_dict = {"round": ["0", "6", "8", "9"], "straight": ["1", "4", "7"],
               "curved": ["2", "3", "5"], "class_order": [str(i) for i in range(10)]}  # fmt: skip
    assert tarf.load_hierarchy(as_dict).class_names == tuple(str(i) for i in range(10))
    same = tarf.load_hierarchy(ordered, class_names=[str(i) for i in range(10)])
    assert same.class_names == tuple(str(i) for i in range(10))  # the same order twice: fine
    with pytest.raises(ValueError, match="'class_order' lists the classes in another order"):
        tarf.load_hierarchy(as_dict, class_names=[str(i) for i in reversed(range(10))])


def test_wrong_input_shape_is_one_sentence(user):
    flat = user["data"][0].reshape(len(user["data"][0]), -1)[:, :10]
    with pytest.raises(ValueError, match=r"the model cannot take samples of shape \(10,\)"):
        tarf.unlearn(user["model"], (flat, user["data"][1]), user["request"])


def test_dir_shows_the_api():
    assert {"make_request", "unlearn", "evaluate", "summary", "TarfWarning"} <= set(dir(tarf))
    assert issubclass(tarf.TarfWarning, UserWarning)  # warnings.simplefilter("error", ...) takes it


# -- the command line --------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory, user, toy_dataset):
    """Saved models (TorchScript; state dict of an architecture registered from a .py
    file), .npz data, a JSON hierarchy and an ImageFolder tree of PNGs."""
    from PIL import Image

    d = tmp_path_factory.mktemp("user")
    ds = toy_dataset
    torch.jit.script(user["model"]).save(str(d / "model.ts"))
    torch.jit.script(user["reference"]).save(str(d / "reference.ts"))
    (d / "mynets.py").write_text(
        "import torch.nn as nn\nfrom tarf.models import register\n\n\n"
        '@register("toy-mlp")\ndef toy_mlp(num_classes):  # only what it needs\n'
        "    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, num_classes))\n"
    )
    torch.save(user["model"].state_dict(), d / "weights.pt")
    np.savez(d / "data.npz", x=ds.x_train.numpy(), y=ds.y_train.numpy(),
             x_test=ds.x_test.numpy(), y_test=ds.y_test.numpy())  # fmt: skip
    (d / "hierarchy.json").write_text(json.dumps({**GROUPS, "class_order": list(CLASSES)}))
    for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        for i in range(0, len(y), 2):  # every second image: 20 per class, 5 per class
            folder = d / "images" / split / CLASSES[int(y[i])]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[i, 0].numpy(), mode="L").save(folder / f"{i}.png")
    (d / "corrupt.npz").write_bytes(b"PK\x03\x04 truncated")
    np.savez(d / "nhwc.npz", x=ds.x_train.numpy().transpose(0, 2, 3, 1), y=ds.y_train.numpy())
    return d


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_state_dict_npz_json(capsys, files, tmp_path):
    out, saved = tmp_path / "r.json", tmp_path / "unlearned.pt"
    code, stdout, err = cli(
        capsys, "unlearn-model", "--model", files / "weights.pt", "--arch", "toy-mlp",
        "--arch-module", files / "mynets.py", "--data", files / "data.npz",
        "--hierarchy", files / "hierarchy.json", "--forget", "cat", "--target", "animals",
        "--reference", files / "reference.ts", "--train-epochs", "100", "--set", "k=1.0",
        "--set", "lr=0.05", "--out", out, "--save-model", saved,
    )  # fmt: skip
    assert code == 0, err
    rep = json.loads(out.read_text())
    assert rep["task"] == "target-mismatch" and rep["model_file"]["format"] == "state_dict"
    assert rep["metrics"]["Gap"] >= 0 and rep["reference"]["UA"] == 0.0
    assert "| target-mismatch | retrained" in stdout
    state = torch.load(saved, weights_only=True)
    assert set(state) == set(tarf.api.InputAdapter(mlp(), (1, 8, 8), 1).model.state_dict())
    # the saved model evaluates, and eval-model agrees with the report
    code, stdout, err = cli(
        capsys, "eval-model", "--model", saved, "--arch", "toy-mlp", "--data", files / "data.npz",
        "--hierarchy", files / "hierarchy.json", "--forget", "cat", "--target", "animals",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(stdout)["metrics"]["UA"] == pytest.approx(rep["metrics"]["UA"])


def test_cli_class_names_as_labels_need_no_class_order(capsys, files, toy_dataset, tmp_path):
    """Labels stored as class names fit a hierarchy file that only groups its classes."""
    ds, names = toy_dataset, np.asarray(CLASSES)
    np.savez(tmp_path / "named.npz", x=ds.x_train.numpy(), y=names[ds.y_train.numpy()],
             x_test=ds.x_test.numpy(), y_test=names[ds.y_test.numpy()])  # fmt: skip
    (tmp_path / "groups.json").write_text(json.dumps(GROUPS))
    args = ["eval-model", "--model", files / "model.ts", "--hierarchy", tmp_path / "groups.json",
            "--forget", "cat", "--target", "animals"]  # fmt: skip
    code, stdout, err = cli(capsys, *args, "--data", tmp_path / "named.npz")
    assert code == 0, err
    named = json.loads(stdout)["metrics"]
    code, stdout, err = cli(capsys, *args[:4], files / "hierarchy.json", *args[5:],
                            "--data", files / "data.npz")  # fmt: skip
    assert code == 0, err
    assert named == json.loads(stdout)["metrics"]  # as with ids and a class order


def test_cli_torchscript_image_folder_prior_auto(capsys, files, tmp_path):
    out, saved = tmp_path / "r.json", tmp_path / "unlearned.ts"
    code, _, err = cli(
        capsys, "unlearn-model", "--model", files / "model.ts", "--data", files / "images",
        "--hierarchy", files / "hierarchy.json", "--forget", "cat", "--prior", "auto",
        "--out", out, "--save-model", saved,
    )  # fmt: skip
    assert code == 0, err
    rep = json.loads(out.read_text())
    assert rep["model_file"]["format"] == "torchscript" and rep["partition_sizes"]["forget"] == 20
    assert rep["identification"]["n_source"] == "auto" and rep["request"]["prior"] == "auto"
    assert rep["metrics"]["TA"] is not None  # images/test/ gave the test split
    assert isinstance(torch.jit.load(str(saved)), torch.jit.ScriptModule)


@pytest.mark.parametrize(
    "change,message",
    [
        ({"--forget": "kat"}, "closest: 'cat'"),
        ({"--data": "corrupt.npz"}, "numpy.savez"),
        ({"--model": "weights.pt"}, "--arch NAME"),
        (
            {"--model": "weights.pt", "--arch": "cpunet-tiny"},
            "do not fit architecture 'cpunet-tiny'",
        ),
        ({"--model-labels": "superclass"}, "label-domain mismatch"),
        ({"--data": "missing.npz"}, "not found"),
        ({"--model": "weights.pt", "--arch": "cpunet-tiny", "--data": "nhwc.npz"}, "channels-last"),
    ],
)
def test_cli_bad_input_is_one_line(capsys, files, change, message):
    args = {"--model": "model.ts", "--data": "data.npz", "--forget": "cat"} | change
    argv = ["unlearn-model", "--hierarchy", files / "hierarchy.json", "--prior", "auto"]
    for k, v in args.items():
        argv += [k, files / v if k in ("--model", "--data") else v]
    code, _, err = cli(capsys, *argv)
    assert code == 2 and message in err and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("tarf: error:")]
    assert len(errors) == 1 and message in errors[0] and len(errors[0]) < 500


# -- the example ---------------------------------------------------------------------------
def test_fashion_mnist_example_tiny(capsys):
    root = os.environ.get("TARF_DATA") or REPO.parent / "shared" / "datasets"
    if not (Path(root) / "fashion-mnist").is_dir():
        pytest.skip(f"Fashion-MNIST not found under {root}")
    spec = importlib.util.spec_from_file_location(
        "example", REPO / "examples" / "fashion_mnist_api.py"
    )
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    report = example.main(["--tiny", "--data-root", str(root)])
    out = capsys.readouterr().out
    assert report["task"] == "target-mismatch" and report["identification"]["n_source"] == "auto"
    assert report["metrics"]["Gap"] >= 0 and report["partition_sizes"]["forget"] == 40
    assert "| target-mismatch | tarf" in out and "ground truth" in out


def test_readme_own_model_program_runs_as_written(capsys):
    """README's "Your own model and data" program, exactly as printed."""
    import re

    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Your own model and data") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {"__name__": "readme_example"}
    exec(compile(code, "README.md", "exec"), scope)
    report = scope["report"]
    assert report["task"] == "target-mismatch" and report["reference"]["UA"] == 0.0
    assert report["original"]["RA"] > 90  # the label mapping is the right one
    assert "| target-mismatch | tarf" in capsys.readouterr().out

"""The options of the ``tarf`` commands, each defined once, in groups; how help shows them.

Every option has a help text; ``--help`` appends the default of every option that has
one (:class:`HelpFormatter`); an option whose default is None says in its help what
leaving it out does. Options made with ``track=True`` record that the user gave them
(:func:`given`), so that ``tarf bench FILE`` overrides only those values of the file.
"""

from __future__ import annotations

import argparse
from typing import Any

from tarf.data import DATASETS
from tarf.domains import MAIN_TASKS, RANDOM, RANDOM_FRACTION
from tarf.recipes import AUTO, AUTO_HELP

MODEL_LABELS = ("class", "superclass")
SEEDS_HELP = "a count (3 = seeds 0,1,2) or a comma list (0,2; one seed: 5,)"
_GIVEN = "_given_options"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` to an option's help, except when there is none to show
    (None, or False for a switch)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def add_command(sub: Any, name: str, help: str) -> argparse.ArgumentParser:
    """A (sub)command whose ``--help`` describes it and shows the defaults."""
    p = sub.add_parser(name, help=help, description=help, formatter_class=HelpFormatter)
    p.set_defaults(command_parser=p)  # the innermost command's: its errors name its --help
    return p


# -- options the user gave (tarf bench FILE: flags override the file) ------------------------
class _Store(argparse.Action):
    """``store``, noting the option as given."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        _mark(namespace, self.dest)


class _Append(argparse.Action):
    """``append``, noting the option as given."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), values])
        _mark(namespace, self.dest)


def _mark(namespace: argparse.Namespace, dest: str) -> None:
    setattr(namespace, _GIVEN, {*getattr(namespace, _GIVEN, ()), dest})


def given(args: argparse.Namespace) -> set[str]:
    """The options made with ``track=True`` that the user gave (their ``dest`` names)."""
    return set(getattr(args, _GIVEN, ()))


def _add(g: Any, *names: str, track: bool = False, **kw: Any) -> None:
    if track:
        kw["action"] = _Append if kw.get("action") == "append" else _Store
    g.add_argument(*names, **kw)


# -- value types ----------------------------------------------------------------------------
def fraction(text: str) -> float:
    """A number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


def count(text: str) -> int:
    """An integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def prior_value(text: str) -> int | str:
    """``--prior``: a count >= 0, or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0 or 'auto', got {text!r}")
    return value


# -- single options -------------------------------------------------------------------------
def dataset(g: Any, required: bool = True, track: bool = False) -> None:
    _add(g, "--dataset", required=required, track=track, help=", ".join(DATASETS))


def hierarchy(g: Any, required: bool = False, track: bool = False) -> None:
    what = (
        "the labels' hierarchy; class ids follow the order the classes are listed in, or a "
        "'class_order' list of every class in label-id order"
        if required
        else "replaces the dataset's built-in hierarchy; it lists every class of the "
        "dataset, whose label ids stay the dataset's"
    )
    _add(g, "--hierarchy", required=required, track=track,
         help=f"JSON/YAML file, {{class: superclass}} or {{superclass: [classes]}} ({what})")  # fmt: skip


def model_labels(g: Any, required: bool = True, left_out: str = "") -> None:
    help = "label domain of the model's outputs (L_M)"
    if left_out:
        help += f"; left out: {left_out}"
    g.add_argument("--model-labels", required=required, choices=MODEL_LABELS, help=help)


def forget(
    g: Any, required: bool = True, track: bool = False, classes: bool = False, unless: str = ""
) -> None:
    what = "class names" if classes else "class or superclass names"
    help = f"comma-separated {what} of the reported forget data (D_f, L_D)"
    if unless:
        help += f"; required unless {unless}"
    _add(g, "--forget", required=required, track=track, help=help)


def target(g: Any, concept_alias: bool = False) -> None:
    names = ("--target", "--concept") if concept_alias else ("--target",)
    help = ("comma-separated names of the target concept (L_T); ground truth for the "
            "reference and the evaluation")  # fmt: skip
    if concept_alias:
        help += "; with --task: the superclass of the --forget classes"
    g.add_argument(*names, dest="target", help=help)


def concept(g: Any, required: bool = False, track: bool = False) -> None:
    _add(g, "--concept", required=required, track=track,
         help="the superclass holding the --forget classes (the target of the concept tasks)")  # fmt: skip


def prior(g: Any) -> None:
    g.add_argument("--prior", type=prior_value,
                   help="number of model classes of the concept left in the data (TARF's "
                   "prior), or 'auto' to let TARF estimate it from Phase I (TARF-I: the "
                   "fraction); left out: derived from --target")  # fmt: skip


def forget_fraction(g: Any, track: bool = False) -> None:
    _add(g, "--forget-fraction", type=fraction, metavar="F", track=track,
         help="the sub-set level: forget only this seeded fraction of each --forget class "
         "(paper Table 4/5 scenarios with L_D = sub-set); with the random task, this "
         "fraction of the whole training set; left out: whole classes, "
         f"{RANDOM_FRACTION:g} for random, 0.5 for the scenarios of tarf bench")  # fmt: skip


def forget_seed(g: Any, track: bool = False) -> None:
    _add(g, "--forget-seed", type=count, metavar="N", track=track,
         help="seed of the draw of --forget-fraction and of the random task (which samples "
         "are D_f), apart from the models' seed; left out: 0")  # fmt: skip


def task(g: Any) -> None:
    g.add_argument("--task", choices=(RANDOM,),
                   help=f"{RANDOM}: random forgetting (the SalUn / Deep Unlearn setting), D_f "
                   f"a seeded --forget-fraction ({RANDOM_FRACTION:g} when left out) of the whole "
                   "training set, every class, a class model; no --forget, --target or "
                   "--prior; left out: the task follows from --forget, --target and "
                   "--model-labels")  # fmt: skip


def tasks(g: Any, default: str = "all", track: bool = False) -> None:
    _add(g, "--tasks", default=default, track=track,
         help="comma-separated tasks: all (the four main tasks), scenarios (paper Table 5 "
         f"No. 6-9, sub-set level), {RANDOM} (random forgetting: a seeded --forget-fraction "
         "of the whole training set), or some of " + ",".join(MAIN_TASKS) + ",scenario-6,...")  # fmt: skip


def methods(g: Any, default: str = "all", track: bool = False) -> None:
    _add(g, "--methods", default=default, track=track,
         help="all, or comma-separated registered method names (`tarf methods`)")  # fmt: skip


def seeds(g: Any, default: str | None = "1", track: bool = False, help: str = "") -> None:
    _add(g, "--seeds", default=default, track=track, help=help or SEEDS_HELP)


def recipe(g: Any, track: bool = False, left_out: str = "") -> None:
    _add(g, "--recipe", default=None if left_out else AUTO, track=track,
         help=f"training recipe: cpu (2 cores), paper (ResNet-18, GPU), tiny (seconds); "
         f"NAME:ARCH swaps the architecture; "
         f"{f'left out: {left_out}' if left_out else AUTO_HELP}")  # fmt: skip


def seed(g: Any, left_out: str = "") -> None:
    g.add_argument("--seed", type=int, default=None if left_out else 0,
                   help="seed of the models, the sampling and the MIA"
                   + (f"; left out: {left_out}" if left_out else ""))  # fmt: skip


def device(g: Any, track: bool = False) -> None:
    _add(g, "--device", default="auto", track=track,
         help="auto (CUDA if available, else the CPU), cpu or cuda[:N]")  # fmt: skip


def out(g: Any, help: str, required: bool = False, track: bool = False) -> None:
    _add(g, "--out", required=required, track=track, help=help)


def audit(g: Any, track: bool = False) -> None:
    _add(g, "--audit", nargs="?", type=int, const=8, default=0, metavar="K", track=track,
         help="also audit every run (docs/audit.md): U-LiRA against K retrained references "
         "per task (seeds 0..K-1; K = 8 when the number is left out; 0: no audit), the "
         "NeurIPS 2023 challenge's score, the concept probe; stored under 'audit' in each "
         "report (a finished run without it is rerun)")  # fmt: skip


def set_values(g: Any, help: str, track: bool = False) -> None:
    _add(g, "--set", action="append", metavar="NAME=VALUE", track=track, help=help)


def jobs(g: Any, ray: bool = False) -> None:
    g.add_argument("--jobs", type=int,
                   help="parallel jobs of the local backend; left out: min(2, cores); 1 runs "
                   "in this process" + ("; with --backend ray, only how many jobs the dry "
                   "run counts the cluster running at once" if ray else ""))  # fmt: skip


def dry_run(g: Any) -> None:
    g.add_argument("--dry-run", action="store_true",
                   help="print the plan (models cached or not, jobs done or to do, time "
                   "left); run nothing")  # fmt: skip


# -- groups ---------------------------------------------------------------------------------
def data_options(p: argparse.ArgumentParser, required: bool = True, track: bool = False) -> Any:
    """--dataset, --data-root, --download, --hierarchy."""
    g = p.add_argument_group("data")
    dataset(g, required, track)
    _add(g, "--data-root", track=track,
         help="folder holding the dataset; left out: $TARF_DATA, else ~/.cache/tarf/data")  # fmt: skip
    g.add_argument("--download", action="store_true",
                   help="fetch the official archives (md5-checked) if missing")  # fmt: skip
    hierarchy(g, track=track)
    return g


def request_options(
    p: argparse.ArgumentParser, labels_left_out: str = "", subset: bool = True
) -> Any:
    """--model-labels (optional when ``labels_left_out`` says what leaving it out does),
    --forget, --target, --prior and (``subset``) --forget-fraction, --forget-seed and
    --task random, which needs neither --forget nor --model-labels (the command checks
    that the others are given: ``cli.common.required_request_options``)."""
    g = p.add_argument_group("request")
    if subset:
        labels_left_out = labels_left_out or f"class with --task {RANDOM}, else required"
    model_labels(g, not labels_left_out, labels_left_out)
    forget(g, required=not subset, unless=f"--task {RANDOM}" if subset else "")
    target(g)
    prior(g)
    if subset:
        forget_fraction(g)
        forget_seed(g)
        task(g)
    return g


def method_options(p: argparse.ArgumentParser, scoped: bool = False) -> Any:
    """--method, --set, --config; ``scoped``: a grid's, without --method (the grid has
    --methods), --set per method, both tracked."""
    g = p.add_argument_group("hyperparameters" if scoped else "method")
    if scoped:
        help = ("hyperparameter of every selected method that has it, or METHOD.NAME=VALUE "
                "(repeatable)")  # fmt: skip
    else:
        g.add_argument("--method", default="tarf",
                       help="registered method name (see `tarf methods`)")  # fmt: skip
        help = "set a method hyperparameter, e.g. --set lr=0.005 (repeatable)"
    set_values(g, help, track=scoped)
    _add(g, "--config", track=scoped,
         help="YAML/JSON file of method hyperparameters (--set wins)")  # fmt: skip
    return g


def run_options(
    p: argparse.ArgumentParser, out_help: str, with_seed: bool = True, out_required: bool = False,
    left_out: str = "",
) -> Any:  # fmt: skip
    """--recipe, --seed (``with_seed``), --device, --out; ``left_out``: what --recipe and
    --seed left out take instead of their defaults."""
    g = p.add_argument_group("run")
    recipe(g, left_out=left_out)
    if with_seed:
        seed(g, left_out)
    device(g)
    out(g, out_help, out_required)
    return g

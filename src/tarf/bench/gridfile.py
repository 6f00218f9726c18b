"""Grid files: one or several bench grids written down in YAML (``tarf bench FILE.yaml``).

The format is documented in ``docs/bench.md``. ``load_grid_file`` checks the whole file
before any work: an unknown key, method or hyperparameter, a value of the wrong type or
malformed YAML is a ``BenchError`` naming the file, the line when known, the key and
the fix. Names that need the dataset (forget classes, concept) are checked by
``make_plan``.
"""

from __future__ import annotations

import difflib
import itertools
import re
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tarf.bench.grid import (
    SUBSET_TASKS,
    TASKS,
    BenchError,
    Grid,
    Row,
    _method,
    method_fields,
    parse_methods,
    parse_seeds,
    parse_tasks,
    unique_seeds,
)
from tarf.io import parse_error_at

GRID_KEYS = ("description", "dataset", "forget", "concept", "recipe", "tasks", "seeds", "out",
             "data_root", "hierarchy", "device", "audit", "forget_fraction", "forget_seed", "set",
             "methods")  # fmt: skip
REQUIRED = ("dataset", "forget", "methods", "out")  # forget: unless every task is random
ROW_KEYS = ("method", "variant", "set")
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]*$")

Where = tuple[Any, ...]  # where a value is in the file: ("grids", 1, "methods", 0, "set", "k")


@dataclass(frozen=True)
class GridSpec:
    """One grid of a grid file, with the folder its reports go to and what it makes."""

    grid: Grid
    out: Path
    description: str = ""


def load_grid_file(path: str | Path, **overrides: Any) -> list[GridSpec]:
    """The grids of a YAML grid file, checked. ``overrides`` (any key of a grid, e.g.
    ``seeds="0,1"``, ``device="cpu"``; None is ignored) replace that key in every grid;
    ``set`` is applied on top of every row's hyperparameters, like ``--set``."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise BenchError(f"{path}: cannot read the grid file ({e.strerror})") from None
    try:
        lines = _key_lines(path, yaml.compose(text, Loader=yaml.SafeLoader))
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        line, problem = parse_error_at(e)
        where = f", line {line}" if line else ""
        raise BenchError(f"{path}{where}: not valid YAML: {problem}") from None
    err = _Errors(path, lines)
    if not isinstance(data, dict):
        raise BenchError(f"{path}: a grid file is a YAML mapping (dataset:, forget:, methods:, "
                         "out:, ...); see docs/bench.md")  # fmt: skip
    err.keys(data, (*GRID_KEYS, "grids"), ())
    cli = {k: v for k, v in overrides.items() if v is not None}
    bad = sorted(set(cli) - set(GRID_KEYS))
    if bad:
        raise BenchError(
            f"{path}: unknown override {', '.join(bad)}; valid: {', '.join(GRID_KEYS)}"
        )
    cli_set = cli.pop("set", None) or {}
    if not isinstance(cli_set, dict):
        raise BenchError(f"{path}: the set override must map hyperparameters to values")
    entries = data.pop("grids", None)
    if entries is not None and (not isinstance(entries, list) or not entries):
        err.fail(("grids",), "expected a list of grids (each a mapping of the keys it overrides)")
    specs, out_where = [], []
    for i, entry in enumerate(entries or [None]):
        if entry is not None:
            if not isinstance(entry, dict):
                err.fail(("grids", i), "expected a mapping of the keys this grid overrides")
            err.keys(entry, GRID_KEYS, ("grids", i))
        values: dict[str, tuple[Any, Where]] = {k: (v, (k,)) for k, v in data.items()}
        values.update({k: (v, ("grids", i, k)) for k, v in (entry or {}).items()})
        values.update({k: (v, ("override", k)) for k, v in cli.items()})
        what = f"grids[{i}]" if entry is not None else "the file"
        specs.append(_spec(values, cli_set, err, what))
        out_where.append(values["out"][1])
    # grids may share a folder (e.g. more seeds of one variant), never a report's name
    written: dict[tuple[Path, str], int] = {}
    for i, spec in enumerate(specs):
        for run in spec.grid.runs():
            j = written.setdefault((spec.out.resolve(), run.name), i)
            if j != i:
                err.fail(out_where[i], f"grids[{j}] and grids[{i}] both write {run.name}.json to "
                         f"{spec.out}; give each grid its own out, or tasks, seeds or rows "
                         "that differ")  # fmt: skip
    return specs


class _Errors:
    """BenchErrors that name the file, the line (when the key is in the file) and the key."""

    def __init__(self, path: Path, lines: dict[Where, int]) -> None:
        self.path, self.lines = path, lines

    def fail(self, where: Where, msg: str) -> typing.NoReturn:
        line = self.lines.get(where)
        at = f", line {line}" if line else ""
        raise BenchError(f"{self.path}{at}: {_fmt_where(where)}: {msg}")

    def keys(self, d: dict, valid: tuple[str, ...], where: Where) -> None:
        for k in d:
            if k not in valid:
                self.fail(
                    (*where, k), f"unknown key; {_close(str(k), valid)}valid: {', '.join(valid)}"
                )


def _close(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(valid), n=1)
    return f"did you mean {close[0]}? " if close else ""


def _fmt_where(where: Where) -> str:
    if where[:1] == ("override",):
        return f"override {'.'.join(map(str, where[1:]))}"
    text = ""
    for part in where:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text or "the file"


def _key_lines(path: Path, node: Any, where: Where = ()) -> dict[Where, int]:
    """The line of every key and list item of the composed YAML; a key given twice in one
    mapping is an error (PyYAML would keep the last one silently)."""
    import yaml

    lines: dict[Where, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value in node.value:
            key = (*where, key_node.value)
            if key in lines:
                raise BenchError(f"{path}, line {key_node.start_mark.line + 1}: "
                                 f"{_fmt_where(key)}: given twice in one mapping; keep one")  # fmt: skip
            lines[key] = key_node.start_mark.line + 1
            lines.update(_key_lines(path, value, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*where, i)] = item.start_mark.line + 1
            lines.update(_key_lines(path, item, (*where, i)))
    return lines


def _spec(values: dict[str, tuple[Any, Where]], cli_set: dict, err: _Errors, what: str) -> GridSpec:
    """One grid from its keys (each with where it was given)."""

    def missing(key: str) -> BenchError:
        return BenchError(f"{err.path}: {what} has no {key}: add `{key}:` (docs/bench.md)")

    for key in REQUIRED:
        if key != "forget" and (key not in values or values[key][0] is None):
            raise missing(key)

    def get(key: str, check: Callable[[Any], Any], default: Any = None) -> Any:
        if key not in values or values[key][0] is None:
            return default
        value, where = values[key]
        try:
            return check(value)
        except (BenchError, ValueError, TypeError) as e:
            err.fail(where, str(e))

    dataset = get("dataset", _dataset)
    recipe = get("recipe", _recipe, "auto")
    tasks = get("tasks", lambda v: parse_tasks(_names(v, "task names")), parse_tasks("all"))
    if ("forget" not in values or values["forget"][0] is None) and any(
        TASKS[t][1] != "random" for t in tasks
    ):
        raise missing("forget")
    fraction = get("forget_fraction", _fraction)
    draw_seed = get("forget_seed", _draw_seed)
    for key, value in (("forget_fraction", fraction), ("forget_seed", draw_seed)):
        if value is not None and not SUBSET_TASKS.intersection(tasks):
            err.fail(values[key][1], "applies to the sub-set tasks only (tasks: scenarios, "
                     "scenario-6 ... scenario-9, or random); remove it")  # fmt: skip
    grid = Grid(
        dataset,
        get("forget", lambda v: _names(v, "class names"), ""),
        get("concept", lambda v: _text(v, "a superclass name")),
        tasks,
        (),
        get("seeds", _seeds, (0,)),
        recipe,
        get("data_root", lambda v: _text(v, "a folder")),
        get("hierarchy", lambda v: _text(v, "a hierarchy file (JSON/YAML)")),
        get("device", lambda v: _text(v, "auto, cpu or cuda[:N]"), "auto"),
        audit=get("audit", _audit, 0),
        forget_fraction=fraction,  # None: each task's default (0.5 sub-set, 0.1 random)
        forget_seed=draw_seed or 0,
        rows=_rows(values, cli_set, err),
    )
    out = get("out", lambda v: Path(v) if isinstance(v, Path) else Path(_text(v, "a folder")))
    description = get("description", lambda v: " ".join(_text(v, "one line of text").split()), "")
    return GridSpec(grid, out, description)


def _rows(values: dict[str, tuple[Any, Where]], cli_set: dict, err: _Errors) -> tuple[Row, ...]:
    """The grid's rows: each methods entry, its hyperparameters from the grid's set, its
    own set and the override's set (in that order), one row per combination of the
    listed values of a sweep."""
    from tarf.methods import METHODS

    methods, mwhere = values["methods"]
    items = methods if isinstance(methods, list) else [methods]
    if not items:
        err.fail(mwhere, "expected a method name, a comma list, all, or a list of entries")
    entries: list[tuple[str, str, dict, Where]] = []  # (method, variant, set, where)
    for j, item in enumerate(items):
        where = (*mwhere, j) if isinstance(methods, list) else mwhere
        if isinstance(item, str):
            try:
                entries.extend((m, "", {}, where) for m in parse_methods(item))
            except BenchError as e:
                err.fail(where, str(e))
            continue
        if not isinstance(item, dict):
            err.fail(where, "expected a method name or a mapping (method:, variant:, set:)")
        err.keys(item, ROW_KEYS, where)
        name = item.get("method")
        if not isinstance(name, str) or name not in METHODS:
            err.fail((*where, "method"), f"expected one registered method name, got {name!r}; "
                     f"valid: {', '.join(sorted(METHODS))}")  # fmt: skip
        variant = item.get("variant") or ""
        if not isinstance(variant, str) or (variant and not _LABEL.match(variant)):
            err.fail((*where, "variant"), f"expected a label of letters, digits and . _ + = - "
                     f"(it is part of file names), got {variant!r}")  # fmt: skip
        own = item.get("set") or {}
        if not isinstance(own, dict):
            err.fail((*where, "set"), "expected a mapping of hyperparameters to values")
        entries.append((name, variant, own, where))
    names = list(dict.fromkeys(m for m, *_ in entries))
    gset, swhere = values.get("set", ({}, ("set",)))
    gset = {} if gset is None else gset
    if not isinstance(gset, dict):
        err.fail(swhere, "expected a mapping of hyperparameters to values ({lr: 0.01})")
    file_set = _scoped(gset, names, lambda k: (*swhere, k), err)
    cli_scoped = _scoped(cli_set, names, lambda k: ("override", "set", k), err)
    rows: dict[str, tuple[Row, Where]] = {}
    for method, variant, own, where in entries:
        fields = method_fields(method)
        chosen = {
            n: (v, at) for scope, n, v, at in file_set if scope in ("", method) and n in fields
        }
        for key, value in own.items():
            scope, _, name = str(key).rpartition(".")
            name = name.replace("-", "_")
            if scope not in ("", method) or name not in fields:
                err.fail((*where, "set", key), f"{method} has no hyperparameter {key!r}; "
                         f"{_close(name, fields)}valid: {', '.join(sorted(fields)) or '(none)'}")  # fmt: skip
            chosen[name] = (value, (*where, "set", key))
        chosen.update(
            {n: (v, at) for scope, n, v, at in cli_scoped if scope in ("", method) and n in fields}
        )
        for row in _expand(method, variant, chosen, err):
            if row.label in rows:
                err.fail(where, f"a second row named {row.label} (the first: "
                         f"{_fmt_where(rows[row.label][1])}); give one a variant")  # fmt: skip
            rows[row.label] = (row, where)
    return tuple(r for r, _ in rows.values())


def _scoped(
    values: dict, methods: list[str], where: Callable[[str], Where], err: _Errors
) -> list[tuple[str, str, Any, Where]]:
    """``set`` keys as (method scope or "", hyperparameter, value, where), checked: the
    scope is a method of the grid and some method in scope has the hyperparameter."""
    out = []
    for key, value in values.items():
        scope, _, name = str(key).rpartition(".")
        if scope and scope not in methods:
            err.fail(where(key), f"method {scope!r} is not in this grid's methods "
                     f"({', '.join(methods)}); add it or remove the key")  # fmt: skip
        name = name.replace("-", "_")
        targets = [scope] if scope else methods
        if not any(name in method_fields(m) for m in targets):
            valid = sorted({f for m in targets for f in method_fields(m)})
            err.fail(where(key), f"no method of this grid has a hyperparameter {name!r}; "
                     f"{_close(name, valid)}valid: {', '.join(valid) or '(none)'}")  # fmt: skip
        out.append((scope, name, value, where(key)))
    return out


def _expand(method: str, variant: str, chosen: dict[str, tuple[Any, Where]], err: _Errors):
    """The rows of one methods entry: a list value is a sweep (one row per value; several
    sweeps: every combination), labelled ``{key}{value:g}`` for numbers, ``{key}-{value}``
    otherwise, after the entry's variant."""
    from tarf.methods import METHODS
    from tarf.methods.base import coerce_overrides

    hints = typing.get_type_hints(METHODS[method].Config)
    axes: list[list[tuple[str, Any, str | None]]] = []  # per key: (name, value, label part)
    for name, (value, where) in chosen.items():
        sweep = isinstance(value, list) and not (_is_tuple(hints[name]) and
                                                 not any(isinstance(v, list) for v in value))  # fmt: skip
        if sweep and not value:
            err.fail(where, "an empty list: a sweep needs at least one value")
        typed = []
        for v in value if sweep else [value]:
            problem = _type_problem(v, hints[name])
            if problem:
                err.fail(where, f"{name}: {problem}")
            try:  # strings as --set types them: "1e-3" is a float here
                typed.append(
                    coerce_overrides(METHODS[method].Config, {name: _value(v, hints[name])})[name]
                )
            except ValueError as e:
                err.fail(where, f"{method}: {e}")
        axes.append([(name, v, _label(name, v) if sweep else None) for v in typed])
    rows = []
    for combo in itertools.product(*axes):
        overrides = {name: v for name, v, _ in combo}
        label = "-".join(p for p in (variant, *(lab for *_, lab in combo)) if p)
        try:
            _method(method, overrides)
        except (ValueError, TypeError) as e:
            why = str(e).removeprefix(f"method {method}: ")  # named just before
            err.fail(
                _culprit(method, combo, chosen), f"{method}{f' ({label})' if label else ''}: {why}"
            )
        rows.append(Row(method, label, overrides))
    return rows


def _culprit(method: str, combo: tuple, chosen: dict[str, tuple[Any, Where]]) -> Where:
    """Where the value is that a method rejects (the first rejected alone), for the error."""
    for name, value, _ in combo:
        try:
            _method(method, {name: value})
        except (ValueError, TypeError):
            return chosen[name][1]
    return next(iter(chosen.values()), (None, ()))[1]


def _label(name: str, value: Any) -> str:
    if isinstance(value, bool) or value is None:
        text = f"{name}-{str(value).lower()}"
    elif isinstance(value, (int, float)):
        text = f"{name}{value:g}"
    elif isinstance(value, (list, tuple)):
        text = f"{name}-" + "-".join(str(v) for v in value)
    else:
        text = f"{name}-{value}"
    return re.sub(r"[^A-Za-z0-9._+=-]", "-", text)


def _is_tuple(hint: Any) -> bool:
    return typing.get_origin(hint) is tuple


def _type_problem(value: Any, hint: Any) -> str | None:
    """Why ``value`` (from YAML) cannot set a hyperparameter typed ``hint``; strings are
    typed later, like ``--set`` values."""
    if isinstance(value, str):
        return None
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = type(None) in typing.get_args(hint)
    base = args[0] if optional and args else hint
    if value is None:
        return None if optional else "expected a value, got null"
    if _is_tuple(base):
        ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool)
                                             for v in value)  # fmt: skip
        return None if ok else f"expected a list of integers, got {value!r}"
    ok = {
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    }.get(base, lambda v: False)(value)
    name = getattr(base, "__name__", str(base))
    return None if ok else f"expected {'a' if name != 'int' else 'an'} {name}, got {value!r}"


def _value(value: Any, hint: Any) -> Any:
    return tuple(value) if isinstance(value, list) and _is_tuple(hint) else value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BenchError(f"expected {what}, got {value!r}")
    return value.strip()


def _names(value: Any, what: str) -> str:
    """A comma list or a YAML list of names, as one comma list."""
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return ",".join(v.strip() for v in value)
    values = value if isinstance(value, list) else [value]
    if any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        quoted = "[" + ", ".join(f"'{v}'" for v in values) + "]"
        raise BenchError(f"expected {what} (a list or a comma list), got {value!r}: YAML reads "
                         f"unquoted digits as numbers; quote the names: {quoted}")  # fmt: skip
    return _text(value, f"{what} (a list or a comma list)")


def _dataset(value: Any) -> str:
    from tarf.bench.jobs import _DATASETS
    from tarf.data import DATASETS

    name = _text(value, "a dataset name")
    known = list(dict.fromkeys([*DATASETS, *(k[0] for k in _DATASETS)]))
    if name not in known:
        raise BenchError(f"unknown dataset {name!r}; valid: {', '.join(known)}")
    return name


def _recipe(value: Any) -> str:
    from tarf.recipes import get_recipe

    name = _text(value, "a recipe name (auto, cpu, paper, tiny, or NAME:ARCH)")
    if name != "auto":  # auto: the dataset's and device's default (Grid)
        get_recipe(name)
    return name


def _seeds(value: Any) -> tuple[int, ...]:
    """A count (3 = seeds 0, 1, 2), a list of seeds, or the command line's text."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if isinstance(value, list) and value:
        ok = all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
        if ok:
            return unique_seeds(value, f"seeds {value!r}")
    elif isinstance(value, str):
        try:
            return parse_seeds(value)
        except BenchError:
            ok = False
    if not ok:
        raise BenchError(
            f"expected a count (3 = seeds 0, 1, 2) or a list of seeds ([0, 2]), got {value!r}"
        )
    return tuple(range(value))


def _audit(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BenchError(f"expected a number of references (8, or 0 for no audit), got {value!r}")
    return value


def _draw_seed(value: Any) -> int:
    if isinstance(value, str) and value.strip().isdigit():  # the command line's text
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BenchError(f"expected the seed of the draw, an integer >= 0, got {value!r}")
    return value


def _fraction(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise BenchError(f"expected a fraction between 0 and 1 (0.5), got {value!r}")
    return float(value)

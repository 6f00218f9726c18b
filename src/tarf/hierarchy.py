"""Label hierarchies: every class belongs to exactly one superclass.

Built-in hierarchies for the datasets tarf reads, and user hierarchies from a JSON or
YAML file mapping class names to superclass names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tarf.domains import Level
from tarf.io import load_json, load_yaml, parse_error_at


def normalize_name(name: str) -> str:
    """Case, spaces, hyphens and underscores do not distinguish names ("pickup truck")."""
    return re.sub(r"[\s_\-]+", "_", name.strip().lower())


class UnknownNameError(ValueError):
    """A class or superclass name that the hierarchy does not have."""


@dataclass(frozen=True)
class LabelHierarchy:
    """Class names (index = class id) and, for each class, its superclass id."""

    name: str
    class_names: tuple[str, ...]
    superclass_names: tuple[str, ...]
    superclass_of: tuple[int, ...]  # class id -> superclass id
    # whether class ids were stated (a class order given), not just read off the order in
    # which a dict lists its classes: integer labels need a stated order
    ordered: bool = field(default=True, compare=False)
    _lookup: dict[str, tuple[Level, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.superclass_of) != len(self.class_names):
            raise ValueError(
                f"hierarchy {self.name!r}: {len(self.class_names)} classes but "
                f"{len(self.superclass_of)} superclass assignments"
            )
        bad = [s for s in self.superclass_of if not 0 <= s < len(self.superclass_names)]
        if bad:
            raise ValueError(f"hierarchy {self.name!r}: superclass ids {bad} out of range")
        lookup: dict[str, tuple[Level, int]] = {}
        for level, names in (
            (Level.CLASS, self.class_names),
            (Level.SUPERCLASS, self.superclass_names),
        ):
            for i, n in enumerate(names):
                key = normalize_name(n)
                if key in lookup:
                    raise ValueError(
                        f"hierarchy {self.name!r}: the name {n!r} is used twice; class and "
                        "superclass names must all be distinct"
                    )
                lookup[key] = (level, i)
        object.__setattr__(self, "_lookup", lookup)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_superclasses(self) -> int:
        return len(self.superclass_names)

    def classes_of(self, superclass: int) -> list[int]:
        return [c for c, s in enumerate(self.superclass_of) if s == superclass]

    def resolve(self, name: str) -> tuple[Level, int]:
        """Map a class or superclass name to (level, id); unknown names list close ones."""
        key = normalize_name(name)
        if key in self._lookup:
            return self._lookup[key]
        candidates = list(self.class_names) + list(self.superclass_names)
        close = difflib.get_close_matches(
            key, [normalize_name(c) for c in candidates], n=5, cutoff=0.5
        )
        by_key = {normalize_name(c): c for c in candidates}
        hint = ", ".join(repr(by_key[c]) for c in close) if close else "none close"
        if self.ordered and name.strip().isdigit() and int(name) < self.num_classes:  # an id?
            hint += f"; names, not label ids: class {int(name)} is {self.class_names[int(name)]!r}"
        every = (
            f"`tarf classes --dataset {self.name}` lists every name"
            if self.name in BUILTIN and self == builtin_hierarchy(self.name)
            else "The hierarchy you gave (its file, or its dict in Python) lists every name"
        )
        raise UnknownNameError(
            f"unknown class or superclass {name!r} in the {self.name} hierarchy "
            f"(closest: {hint}). {every}."
        )

    def resolve_many(self, names: Iterable[str]) -> tuple[Level, frozenset[int]]:
        """Resolve names that must all be at one level; returns that level and the ids."""
        resolved = [self.resolve(n) for n in names]
        if not resolved:
            raise ValueError(
                "no class or superclass names given (an empty forget or target); name at least one"
            )
        levels = {lvl for lvl, _ in resolved}
        if len(levels) > 1:
            raise ValueError(
                f"names {list(names)} mix classes and superclasses; give either class names "
                "or superclass names (a superclass stands for all its classes)"
            )
        return levels.pop(), frozenset(i for _, i in resolved)

    def class_ids(self, level: Level, ids: Iterable[int]) -> frozenset[int]:
        """All class ids covered by ids at the given level."""
        ids = set(ids)
        if level == Level.CLASS:
            return frozenset(ids)
        return frozenset(c for c, s in enumerate(self.superclass_of) if s in ids)

    def to_dict(self) -> dict[str, str]:
        return {c: self.superclass_names[s] for c, s in zip(self.class_names, self.superclass_of)}

    @classmethod
    def from_groups(
        cls,
        name: str,
        groups: Mapping[str, Iterable[str]],
        class_order: Iterable[str] | None = None,
        order_of: str = "the data's classes",
    ) -> LabelHierarchy:
        """Build from ``{superclass: [classes]}``; superclass ids follow the groups' order,
        class ids follow ``class_order`` if given."""
        mapping: dict[str, str] = {}
        for sup, members in groups.items():
            if isinstance(members, (str, bytes)) or not isinstance(members, Iterable):
                raise ValueError(
                    f"hierarchy {name!r}: superclass {sup!r} must list its classes, got {members!r}"
                )
            members = list(members)
            if not members:
                raise ValueError(
                    f"hierarchy {name!r}: superclass {sup!r} lists no class; give it its "
                    "classes, or leave it out"
                )
            for c in members:
                c = _name(c, name)
                if c in mapping:
                    raise ValueError(
                        f"hierarchy {name!r}: class {c!r} is in two superclasses, {mapping[c]!r} "
                        f"and {sup!r}; every class belongs to exactly one"
                    )
                mapping[c] = _name(sup, name)
        supers = list(dict.fromkeys(mapping.values()))
        return cls._build(name, mapping, supers, class_order, order_of)

    @classmethod
    def _build(
        cls,
        name: str,
        mapping: Mapping[str, str],
        supers: list[str],
        class_order: Iterable[str] | None,
        order_of: str = "the data's classes",
    ) -> LabelHierarchy:
        """The hierarchy, checked: the class order (``order_of`` says whose, for the
        messages) names each class once, and each under a superclass."""
        classes = (
            [_name(c, name) for c in class_order] if class_order is not None else list(mapping)
        )
        twice = sorted({c for c in classes if classes.count(c) > 1})
        if twice:
            raise ValueError(f"hierarchy {name!r}: {twice} twice in {order_of}; give each once")
        missing = [c for c in classes if c not in mapping]
        if missing:
            raise ValueError(
                f"hierarchy {name!r}: classes without a superclass: {missing}; list "
                "each under its superclass (a superclass of its own if none fits), or check "
                "their spelling"
            )
        extra = [c for c in mapping if c not in set(classes)]
        if extra:
            raise ValueError(
                f"hierarchy {name!r}: classes {extra} are not among {order_of} "
                f"({', '.join(classes[:6])}{', ...' if len(classes) > 6 else ''}; "
                f"{len(classes)} in all); check their spelling"
            )
        supers = [s for s in supers if any(mapping[c] == s for c in classes)]
        return cls(
            name, tuple(classes), tuple(supers), tuple(supers.index(mapping[c]) for c in classes),
            ordered=class_order is not None,
        )  # fmt: skip

    @classmethod
    def from_mapping(
        cls,
        name: str,
        mapping: Mapping[str, str],
        class_order: Iterable[str] | None = None,
        order_of: str = "the data's classes",
    ) -> LabelHierarchy:
        """Build from ``{class: superclass}``; superclass ids in order of first appearance."""
        named = {_name(c, name): _name(s, name) for c, s in mapping.items()}
        order = [_name(c, name) for c in class_order] if class_order is not None else list(named)
        supers = list(dict.fromkeys(named[c] for c in order if c in named))
        return cls._build(name, named, supers, class_order, order_of)

    @classmethod
    def from_file(
        cls, path: str | Path, class_order: Iterable[str] | None = None
    ) -> LabelHierarchy:
        """Read a user hierarchy: JSON or YAML, either ``{class: superclass}`` or
        ``{superclass: [classes]}``."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as e:
            raise FileNotFoundError(f"cannot read hierarchy file {path}: {e}") from e
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                data = load_yaml(text)  # a superclass given twice is refused, not merged
            else:
                data = load_json(text)
        except Exception as e:  # noqa: BLE001 - any parse error becomes one clear message
            line, problem = parse_error_at(e)
            raise ValueError(
                f"hierarchy file {path}{f', line {line}' if line else ''} is not valid "
                f"JSON/YAML ({problem}); fix the file"
            ) from None
        return cls.from_dict(path.stem, data, class_order, where=f"hierarchy file {path}")

    @classmethod
    def from_dict(
        cls,
        name: str,
        data: object,
        class_order: Iterable[str] | None = None,
        where: str | None = None,
    ) -> LabelHierarchy:
        """Either shape, ``{class: superclass}`` or ``{superclass: [classes]}``, with an
        optional ``class_order`` entry (every class name in label-id order). Where the data
        already fix the order (``class_order`` given, e.g. a built-in dataset's), an entry
        listing another order is refused: the ids cannot follow both."""
        where = where or f"hierarchy {name!r}"
        if not isinstance(data, Mapping) or not data:
            raise ValueError(
                f"{where} must map class names to superclass names "
                '({"boy": "people", ...}) or superclasses to class lists ({"people": ["boy", ...]})'
            )
        data = dict(data)
        stated = data.pop(CLASS_ORDER_KEY, None)
        if stated is not None:
            if not isinstance(stated, (list, tuple)):
                raise ValueError(
                    f"{where}: {CLASS_ORDER_KEY!r} must be a list of every class name in "
                    f"label-id order, got {stated!r}"
                )
            stated = [_name(c, name) for c in stated]
            if class_order is not None and stated != [_name(c, name) for c in class_order]:
                raise ValueError(
                    f"{where}: {CLASS_ORDER_KEY!r} lists the classes in another order than "
                    "the one given beside it (a built-in dataset's label ids, or "
                    "class_names= in Python); give the order once"
                )
            class_order, order_of = stated, f"its {CLASS_ORDER_KEY!r}"
        else:
            order_of = "the data's classes"
        if all(isinstance(v, (list, tuple)) for v in data.values()):
            return cls.from_groups(name, data, class_order, order_of)
        if all(isinstance(v, str) for v in data.values()):
            return cls.from_mapping(name, data, class_order, order_of)
        raise ValueError(
            f"{where}: values must be all strings (class -> superclass) or all lists "
            "(superclass -> classes)"
        )


CLASS_ORDER_KEY = "class_order"  # in a hierarchy file: the class names in label-id order


def _name(value: object, hierarchy: str) -> str:
    """A class or superclass name; YAML reads an unquoted 0 or 6 as a number, which is
    taken as the name "0" or "6"."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"hierarchy {hierarchy!r}: names must be strings, got {value!r}; quote it")
    return str(value)


CIFAR100_GROUPS: dict[str, list[str]] = {
    "aquatic_mammals": ["beaver", "dolphin", "otter", "seal", "whale"],
    "fish": ["aquarium_fish", "flatfish", "ray", "shark", "trout"],
    "flowers": ["orchid", "poppy", "rose", "sunflower", "tulip"],
    "food_containers": ["bottle", "bowl", "can", "cup", "plate"],
    "fruit_and_vegetables": ["apple", "mushroom", "orange", "pear", "sweet_pepper"],
    "household_electrical_devices": ["clock", "keyboard", "lamp", "telephone", "television"],
    "household_furniture": ["bed", "chair", "couch", "table", "wardrobe"],
    "insects": ["bee", "beetle", "butterfly", "caterpillar", "cockroach"],
    "large_carnivores": ["bear", "leopard", "lion", "tiger", "wolf"],
    "large_man-made_outdoor_things": ["bridge", "castle", "house", "road", "skyscraper"],
    "large_natural_outdoor_scenes": ["cloud", "forest", "mountain", "plain", "sea"],
    "large_omnivores_and_herbivores": ["camel", "cattle", "chimpanzee", "elephant", "kangaroo"],
    "medium_mammals": ["fox", "porcupine", "possum", "raccoon", "skunk"],
    "non-insect_invertebrates": ["crab", "lobster", "snail", "spider", "worm"],
    "people": ["baby", "boy", "girl", "man", "woman"],
    "reptiles": ["crocodile", "dinosaur", "lizard", "snake", "turtle"],
    "small_mammals": ["hamster", "mouse", "rabbit", "shrew", "squirrel"],
    "trees": ["maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"],
    "vehicles_1": ["bicycle", "bus", "motorcycle", "pickup_truck", "train"],
    "vehicles_2": ["lawn_mower", "rocket", "streetcar", "tank", "tractor"],
}
CIFAR100_CLASSES = tuple(sorted(c for cs in CIFAR100_GROUPS.values() for c in cs))

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR10_GROUPS = {
    "airplane_bird": ["airplane", "bird"],
    "vehicle": ["automobile", "truck"],
    "cat_dog": ["cat", "dog"],
    "deer_frog": ["deer", "frog"],
    "horse_ship": ["horse", "ship"],
}

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
FASHION_MNIST_GROUPS = {
    "tops": ["T-shirt/top", "Pullover", "Coat", "Shirt"],
    "footwear": ["Sandal", "Sneaker", "Ankle boot"],
    "lower-and-full-body": ["Trouser", "Dress"],
    "bags": ["Bag"],
}

DIGITS_CLASSES = tuple(str(i) for i in range(10))
DIGITS_GROUPS = {
    "round": ["0", "6", "8", "9"],
    "straight": ["1", "4", "7"],
    "curved": ["2", "3", "5"],
}

BUILTIN: dict[str, tuple[dict[str, list[str]], tuple[str, ...]]] = {
    "cifar100": (CIFAR100_GROUPS, CIFAR100_CLASSES),
    "cifar10": (CIFAR10_GROUPS, CIFAR10_CLASSES),
    "fashion-mnist": (FASHION_MNIST_GROUPS, FASHION_MNIST_CLASSES),
    "digits": (DIGITS_GROUPS, DIGITS_CLASSES),
}


def builtin_hierarchy(dataset: str) -> LabelHierarchy:
    """The hierarchy of a built-in dataset (class ids = official label ids)."""
    if dataset not in BUILTIN:
        raise ValueError(f"no built-in hierarchy for {dataset!r}; known: {sorted(BUILTIN)}")
    groups, order = BUILTIN[dataset]
    return LabelHierarchy.from_groups(dataset, groups, order)

"""An unlearning request and the data partitions it induces (docs/design.md).

Data flows one way: request -> partitions -> method -> metrics -> report. The request
knows the ground truth (the target concept); methods only ever receive
:class:`tarf.methods.base.UnlearnData`, built from ``D_f`` and ``D_un`` alone.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch

from tarf.domains import RANDOM_FRACTION, Level, TaskKind, classify, random_task
from tarf.hierarchy import LabelHierarchy


@dataclass(frozen=True)
class Partitions:
    """Index tensors into the train split (``D_*``) and the test split (``test_*``)."""

    forget: torch.Tensor  # D_f
    unlearn: torch.Tensor  # D_un = D \ D_f
    target: torch.Tensor  # D_t
    pseudo_remaining: torch.Tensor  # D_uf = D_t \ D_f
    remaining: torch.Tensor  # D_r = D \ D_t
    affected_remaining: torch.Tensor  # D_ar: D_r samples sharing a model class with D_f
    test_target: torch.Tensor  # test_t
    test_remaining: torch.Tensor  # test_r

    def sizes(self) -> dict[str, int]:
        return {k: int(v.numel()) for k, v in self.__dict__.items()}


AUTO = "auto"  # the prior TARF estimates from the data itself (tarf.identify)


@dataclass(frozen=True)
class Prior:
    """What TARF may know about the request: how many model classes of the concept hide
    in ``D_un`` (class level), or what fraction of ``D_un`` they are (instance level).
    ``num_classes == "auto"``: neither is known; TARF estimates them (``--prior auto``)."""

    num_classes: int | str | None
    fraction: float | None = None

    @property
    def auto(self) -> bool:
        return self.num_classes == AUTO


@dataclass(frozen=True)
class UnlearningRequest:
    """Forget data (names at one level), the model's label level, and the target concept.

    ``target=None`` means the concept has no name in the hierarchy: the user then gives
    ``prior`` and gets a report without reference metrics; for a sub-set request with no
    prior > 0 it means the target is the forgotten sub-set itself (``subset_target``).

    ``random_forgetting``: the task ``random`` (:meth:`random`): ``D_f`` is a seeded
    ``forget_fraction`` (default ``RANDOM_FRACTION``) of the whole training set, drawn
    with ``subset_seed``; no forget names, no target (``D_f`` is the target), a class
    model, and a prior of 0 (or ``auto``).
    """

    hierarchy: LabelHierarchy
    forget: tuple[str, ...]
    model_level: Level
    target: tuple[str, ...] | None = None
    prior_classes: int | str | None = None  # overrides the target's prior; "auto": estimate
    # The third label layer (sub-set): the forget data is a seeded part
    # of each --forget class, not the whole class.
    forget_fraction: float | None = None
    subset_seed: int = 0  # the seed of the draw of D_f (the sub-set level, random forgetting)
    random_forgetting: bool = False  # the task `random` (see the class docstring)

    def __post_init__(self) -> None:
        prior = self.prior_classes
        if isinstance(prior, numbers.Integral) and not isinstance(prior, bool):
            object.__setattr__(self, "prior_classes", int(prior))  # a numpy integer counts
        elif prior is not None and not isinstance(prior, str):
            raise ValueError(
                f"prior (--prior) must be a whole number >= 0 or 'auto', got {prior!r}"
            )
        if self.model_level not in (Level.CLASS, Level.SUPERCLASS):
            raise ValueError("the model's labels must be 'class' or 'superclass'")
        if isinstance(self.subset_seed, bool) or not isinstance(self.subset_seed, int):
            raise ValueError(f"--forget-seed must be an integer >= 0, got {self.subset_seed!r}")
        if self.subset_seed < 0:
            raise ValueError(f"--forget-seed must be an integer >= 0, got {self.subset_seed}")
        if self.random_forgetting:
            self._check_random()
            return
        if self.subset_seed and self.forget_fraction is None:
            raise ValueError(
                "--forget-seed draws which samples are forgotten: it needs --forget-fraction "
                "(a part of each --forget class) or --task random; drop it"
            )
        if self.forget_fraction is not None:
            if not 0 < self.forget_fraction < 1:
                raise ValueError(
                    f"--forget-fraction must be between 0 and 1 (a part of each class), got "
                    f"{self.forget_fraction}; for whole classes leave it out"
                )
            if self.hierarchy.resolve_many(self.forget)[0] != Level.CLASS:
                raise ValueError(
                    "--forget-fraction takes a part of each --forget class: name classes, "
                    "not superclasses"
                )
        self.hierarchy.resolve_many(self.forget)  # an unknown name first, with the closest
        if self.target is None and self.prior_classes is None and self.forget_fraction is None:
            raise ValueError(
                "give the target concept (--target NAMES) or, for a concept with no name in "
                "the hierarchy, the number of its model classes left in the data (--prior N, "
                "or --prior auto to let TARF estimate it)"
            )
        if not self._prior_text() and self.prior_classes is not None and self.prior_classes < 0:
            raise ValueError(f"prior (--prior) must be >= 0, got {self.prior_classes}")
        # Resolve eagerly so that bad names fail when the request is made, not mid-run.
        self.task  # noqa: B018
        if self.target is not None and not self.forget_classes <= self.target_classes:
            extra = sorted(
                self.hierarchy.class_names[c] for c in self.forget_classes - self.target_classes
            )
            raise ValueError(
                f"the forget data must lie inside the target concept (D_f ⊆ D_t), but {extra} "
                f"are not part of target {list(self.target)}; widen the target (--target) or drop them from the forget classes (--forget)"
            )
        self._check_something_remains()
        self._check_prior()

    def _prior_text(self) -> bool:
        """Whether the prior was given as text; 'auto' (any case) is read as AUTO, any
        other text is refused."""
        if not isinstance(self.prior_classes, str):
            return False
        if self.prior_classes.strip().lower() != AUTO:
            raise ValueError(
                f"prior (--prior) must be a number >= 0 or 'auto', got {self.prior_classes!r}"
            )
        object.__setattr__(self, "prior_classes", AUTO)
        return True

    def _check_random(self) -> None:
        """Random forgetting: D_f is drawn from the whole training set, so every other
        part of a request either follows from it or contradicts it."""
        if self.forget:
            raise ValueError(
                "random forgetting draws D_f from every class of the training set: drop "
                "--forget (to forget a part of named classes, leave out --task random and "
                "give --forget NAMES --forget-fraction F)"
            )
        if self.target is not None:
            raise ValueError(
                "random forgetting's target is the drawn samples themselves (the reference "
                "is retrained without exactly them): drop --target"
            )
        if self.model_level != Level.CLASS:
            raise ValueError(
                "random forgetting takes a model with class labels, as the SalUn and Deep "
                "Unlearn harnesses: --model-labels class (or leave it out)"
            )
        # None and 0 say the same: nothing to identify
        if not self._prior_text() and self.prior_classes:
            raise ValueError(
                f"--prior {self.prior_classes} contradicts random forgetting: D_f is its whole "
                "target, so none of it is left in D_un (the prior is 0); drop --prior"
            )
        if self.forget_fraction is None:
            object.__setattr__(self, "forget_fraction", RANDOM_FRACTION)
        if not 0 < self.forget_fraction < 1:
            raise ValueError(
                "--forget-fraction must be between 0 and 1 (the part of the training set "
                f"random forgetting forgets), got {self.forget_fraction}"
            )

    def _model_label_of(self, c: int) -> int:
        return c if self.model_level == Level.CLASS else self.hierarchy.superclass_of[c]

    def _check_something_remains(self) -> None:
        h = self.hierarchy
        if self.forget_fraction is None and len(self.forget_classes) == h.num_classes:
            raise ValueError(
                f"--forget covers every class of {h.name}: no data would remain to learn from "
                "or to measure; forget fewer classes"
            )
        if self.target is not None and len(self.target_classes) == h.num_classes:
            raise ValueError(
                f"--target covers every class of {h.name}: a model without it has nothing "
                "left to classify; name a narrower concept"
            )

    def _check_prior(self) -> None:
        """A prior must leave classes to learn from, and agree with a named target."""
        if not isinstance(self.prior_classes, int) or self.forget_fraction is not None:
            return
        h = self.hierarchy
        left = {
            self._model_label_of(c) for c in range(h.num_classes) if c not in self.forget_classes
        }
        if self.prior_classes >= len(left):
            raise ValueError(
                f"--prior {self.prior_classes}: only {len(left)} model labels are left in the "
                "data besides the forget data, and TARF must keep at least one to learn from; "
                f"give a prior below {len(left)}"
            )
        if self.target is not None:
            implied = len(
                {self._model_label_of(c) for c in self.target_classes - self.forget_classes}
            )
            if implied != self.prior_classes:
                raise ValueError(
                    f"--prior {self.prior_classes} contradicts --target {','.join(self.target)}, "
                    f"which leaves {implied} of its model labels in the data; give the target "
                    "(the prior follows from it) or the prior, not both"
                )

    @classmethod
    def from_names(
        cls,
        hierarchy: LabelHierarchy,
        forget: str | list[str] | tuple[str, ...],
        model_level: str | Level,
        target: str | list[str] | tuple[str, ...] | None = None,
        prior_classes: int | str | None = None,
        forget_fraction: float | None = None,
        forget_seed: int = 0,
        random_forgetting: bool = False,
    ) -> UnlearningRequest:
        """Build from comma-separated strings or lists, as typed on the command line
        (``forget`` None: no names, as random forgetting takes)."""

        def split(v: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
            # a class named "1" may come as the number 1 (alone or in a list)
            if isinstance(v, numbers.Integral) and not isinstance(v, bool):
                v = str(v)
            items = v.split(",") if isinstance(v, str) else list(v)
            for item in items:
                if isinstance(item, bool) or not isinstance(item, (str, numbers.Integral)):
                    raise ValueError(f"class and superclass names are text, got {item!r}")
            return tuple(str(s).strip() for s in items if str(s).strip())

        level = model_level if isinstance(model_level, Level) else Level.parse(model_level)
        return cls(
            hierarchy,
            split(forget) if forget is not None else (),
            level,
            split(target) if target is not None else None,
            prior_classes,
            forget_fraction,
            forget_seed,
            random_forgetting,
        )

    @classmethod
    def random(
        cls,
        hierarchy: LabelHierarchy,
        fraction: float | None = None,
        seed: int = 0,
        prior_classes: int | str | None = None,
    ) -> UnlearningRequest:
        """Random forgetting (the task ``random``): a seeded ``fraction`` (default
        ``RANDOM_FRACTION``, 10 %) of the whole training set, drawn with ``seed``,
        forgotten from a class-level model."""
        return cls(hierarchy, (), Level.CLASS, None, prior_classes, fraction, seed, True)

    # -- label domains ---------------------------------------------------------------
    @property
    def data_level(self) -> Level:
        if self.forget_fraction is not None:
            return Level.SUBSET
        return self.hierarchy.resolve_many(self.forget)[0]

    @property
    def subset_target(self) -> bool:
        """The target is the forgotten sub-set itself (a ``--forget-fraction`` request
        with no ``--target`` and no prior > 0): forget exactly these samples."""
        return self.target_level == Level.SUBSET

    @property
    def target_level(self) -> Level:
        if self.random_forgetting:
            return Level.SUBSET
        if self.target is None:
            # An unnamed concept whose extent TARF is to find (or is told: a prior > 0) is
            # wider than the forget data: one level up (class data with a class model is
            # target mismatch).
            wider = self.prior_classes == AUTO or (self.prior_classes or 0) > 0
            if wider and self.data_level < Level.SUPERCLASS:
                return Level(self.data_level + 1)
            return self.data_level
        level, _ = self.hierarchy.resolve_many(self.target)
        if (
            level == Level.CLASS
            and self.data_level <= Level.CLASS
            and self.target_classes > self.forget_classes
        ):
            # Classes beyond the forget classes name a concept wider than the data (say
            # boy, girl, man given boy, girl): one label above the class level, as the
            # paper's 7-class concept of scenarios No. 5 and 16. Not "all matched".
            return Level.SUPERCLASS
        return level

    @property
    def task(self) -> TaskKind:
        if self.random_forgetting:
            return random_task()
        return classify(self.data_level, self.model_level, self.target_level)

    @property
    def forget_classes(self) -> frozenset[int]:
        """The classes ``D_f`` is drawn from (random forgetting: every class)."""
        if self.random_forgetting:
            return frozenset(range(self.hierarchy.num_classes))
        return self.hierarchy.class_ids(*self.hierarchy.resolve_many(self.forget))

    @property
    def target_classes(self) -> frozenset[int]:
        if self.target is None:
            return self.forget_classes
        return self.hierarchy.class_ids(*self.hierarchy.resolve_many(self.target))

    @property
    def has_reference(self) -> bool:
        """Whether the ground truth is known, so a retrained reference can be built."""
        return self.target is not None or self.subset_target

    # -- labels and partitions --------------------------------------------------------
    @property
    def num_model_classes(self) -> int:
        h = self.hierarchy
        return h.num_classes if self.model_level == Level.CLASS else h.num_superclasses

    def model_labels(self, class_ids: torch.Tensor) -> torch.Tensor:
        """Class ids -> labels in the model's domain ``L_M``."""
        if self.model_level == Level.CLASS:
            return class_ids
        table = torch.tensor(self.hierarchy.superclass_of, dtype=torch.long)
        return table[class_ids]

    def partitions(self, y_train: torch.Tensor, y_test: torch.Tensor) -> Partitions:
        """All partitions (docs/design.md), from class ids of the train and test split."""
        if self.random_forgetting:
            forget = _random_part(len(y_train), self.forget_fraction, self.subset_seed)
        else:
            forget = _isin(y_train, self.forget_classes)
            if self.forget_fraction is not None:
                f, seed = self.forget_fraction, self.subset_seed
                forget = _part_of_each_class(y_train, forget, f, seed)
        # No named target: the sub-set itself, or an unnamed concept measured on D_f.
        target = forget if self.target is None else _isin(y_train, self.target_classes)
        model_y = self.model_labels(y_train)
        forget_model_classes = model_y[forget].unique()
        affected = ~target & torch.isin(model_y, forget_model_classes)
        # A sub-set exists only in the train split: its test data is all "remaining".
        test_target = (
            torch.zeros_like(y_test, dtype=torch.bool)
            if self.target is None and self.forget_fraction is not None
            else _isin(y_test, self.target_classes)
        )
        idx = lambda m: m.nonzero().flatten()  # noqa: E731
        return Partitions(
            forget=idx(forget),
            unlearn=idx(~forget),
            target=idx(target),
            pseudo_remaining=idx(target & ~forget),
            remaining=idx(~target),
            affected_remaining=idx(affected),
            test_target=idx(test_target),
            test_remaining=idx(~test_target),
        )

    def prior(self, y_train: torch.Tensor) -> Prior:
        """The request's prior: the number of model classes of the concept in ``D_un``."""
        if self.prior_classes == AUTO:
            return Prior(AUTO, None)
        if self.prior_classes is not None:
            return Prior(self.prior_classes, None)
        p = self.partitions(y_train, y_train[:0])
        hidden = self.model_labels(y_train[p.pseudo_remaining]).unique()
        fraction = p.pseudo_remaining.numel() / max(p.unlearn.numel(), 1)
        return Prior(int(hidden.numel()), fraction)

    def describe(self) -> str:
        h, t = self.hierarchy, self.task
        if self.random_forgetting:
            return (
                f"{h.name}: random forgetting: forget a seeded {self.forget_fraction * 100:g}% "
                f"of the training set, every class (sub-set, draw seed {self.subset_seed}); "
                f"model labels: class; target: the forgotten samples themselves (sub-set) -> "
                f"{t.name} [paper Table 4 No. {t.case}, {t.comment}]"
            )
        level = t.target.label
        if self.target:
            target = ", ".join(self.target)
            if self.hierarchy.resolve_many(self.target)[0] < t.target:
                level = f"a concept wider than its classes, at the {level} level"
        else:
            target = "the sub-set itself" if self.subset_target else "(unnamed concept)"
        part = (
            f"a seeded {self.forget_fraction:.0%} of " if self.forget_fraction is not None else ""
        )
        return (
            f"{h.name}: forget {part}{', '.join(self.forget)} ({t.data.label}); model labels: "
            f"{t.model.label}; target {target} ({level}) -> {t.name} "
            f"[paper Table 4 No. {t.case}, {t.comment}]"
        )


def _part_of_each_class(
    y: torch.Tensor, mask: torch.Tensor, fraction: float, seed: int
) -> torch.Tensor:
    """A seeded ``fraction`` of the samples of each class under ``mask`` (the sub-set
    level): the same samples for the reference, the method and the evaluation."""
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros_like(mask)
    for c in y[mask].unique().tolist():
        idx = (y == c).nonzero().flatten()
        keep = max(1, round(fraction * len(idx)))
        out[idx[torch.randperm(len(idx), generator=g)[:keep]]] = True
    return out


def _random_part(n: int, fraction: float, seed: int) -> torch.Tensor:
    """Random forgetting's ``D_f``: a seeded ``fraction`` of all ``n`` training samples,
    whatever their class (at least one sample forgotten, at least one kept)."""
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(n, dtype=torch.bool)
    count = min(max(1, round(fraction * n)), n - 1)
    out[torch.randperm(n, generator=g)[:count]] = True
    return out


def _isin(y: torch.Tensor, ids: frozenset[int]) -> torch.Tensor:
    return torch.isin(y, torch.tensor(sorted(ids), dtype=y.dtype))


def training_split(
    hierarchy: LabelHierarchy, model_labels: str, y_train: torch.Tensor, exclude: str | None = None
) -> tuple[UnlearningRequest, torch.Tensor]:
    """What a model with ``model_labels`` outputs is trained on, in the terms the model
    cache takes (``cache.trained_model``): a request, for its label domain, and the
    training indices. With ``exclude`` (comma-separated names) the retrained reference of
    forgetting that concept: ``D_r`` of the request ``exclude`` -> ``exclude``. Without,
    the original: every sample; the request then names the first class as forget data
    and target, which only fixes the label domain (nothing reads its partitions)."""
    if exclude:
        try:
            request = UnlearningRequest.from_names(hierarchy, exclude, model_labels, exclude)
        except ValueError as e:  # said of the request it stands for: name the option given
            if "covers every class" not in str(e):
                raise
            text = str(e).replace("--forget covers", "--exclude covers")
            raise ValueError(text.replace("--target covers", "--exclude covers")) from None
        return request, request.partitions(y_train, y_train[:0]).remaining
    first = hierarchy.class_names[0]
    request = UnlearningRequest.from_names(hierarchy, first, model_labels, first)
    return request, torch.arange(len(y_train))

"""What a model family declares about itself, and what its trainer returns.

Each module of :mod:`shared.models.families` exports one :class:`Family` named ``FAMILY``; the
registry (:mod:`shared.models.registry`) derives every model list, the training order, the
reseeds, trusted types and budgets from them. A trainer takes the :class:`Run` and returns a
:class:`Trained`; it never scores on test and never saves (the run's evaluation loop does).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from shared.models.bundle import ModelBundle

#: What a model predicts from: the listing's features, its photo, or both.
ROLES = ("baseline", "tabular", "photo", "fusion")
DELIVERABLES = ("deliverable1", "deliverable2")

#: ``seed -> (part -> (n,) EUR)``: the model's chosen settings retrained with another seed.
Reseed = Callable[[int], Callable[[str], np.ndarray]]


@dataclass
class Trained:
    """What a trainer returns.

    ``predict``: ``part -> (n,) EUR`` from what the trainer holds (None: the bundle predicts).
    ``known``: ``{part: (n,) EUR}`` predictions already made, reused as they are. ``history``: the
    Keras per-epoch curves (None without epochs). ``extra``: anything else the run reports.
    """

    bundle: ModelBundle
    seconds: float
    history: dict | None = None
    predict: Callable[[str], np.ndarray] | None = None
    known: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.bundle.name

    def prices(self, part: str, data) -> np.ndarray:
        """(n,) predicted EUR on ``data.parts[part]``: known, else the trainer's, else the bundle's.<<"""
        if part in self.known:
            pred = self.known[part]
        elif self.predict is not None:
            pred = self.predict(part)
        else:
            pred = self.bundle.predict_eur(data.parts[part])
        return np.asarray(pred, dtype=np.float64)


class Run(Protocol):
    """What a trainer sees of the run (:class:`shared.run.experiment.Experiment`).

    ``data``: ``ModelData``; ``cfg``: ``RunConfig``; ``trained``: this run's models so far;
    ``shared``: what one trainer leaves for a later one.
    """

    data: Any
    cfg: Any
    trained: dict[str, Trained]
    shared: dict

    def bundle(self, name: str) -> ModelBundle:
        """A model of this run or a saved one reused on this split (deliverable 2's references)."""

    def features(self, backbone: str, image_size: int, flip: bool = False) -> dict:
        """{part: (n, D) float32} cached backbone features of every part's photos."""

    def best_on_validation(self, names) -> str:
        """The model among ``names`` with the lowest validation MAE (ties: the first)."""


@dataclass(frozen=True)
class ModelSpec:
    """One model of a family.

    ``train(run) -> Trained``; ``reseed(run, bundle) -> Reseed`` retrains with another seed for the
    seed study (None: no cheap retrain). ``order``: training and table order. ``reference``:
    deliverable 2 compares with it, "always" (reused or retrained) or "if_saved" (only when a
    saved one fits). ``after``: models trained first. ``base``: for a model adding the photo, the
    tabular-only model it builds on ("" when none or decided in training).
    """

    name: str
    role: str
    deliverable: str
    order: int
    inputs: tuple[str, ...]
    train: Callable[[Run], Trained]
    reseed: Callable[[Run, ModelBundle], Reseed | None] | None = None
    neural: bool = False
    reference: str = ""
    after: tuple[str, ...] = ()
    base: str = ""
    description: str = ""

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"{self.name}: role {self.role!r} is not one of {ROLES}")
        if self.reference not in ("", "always", "if_saved"):
            raise ValueError(f"{self.name}: reference {self.reference!r} is not '', 'always' or "
                             "'if_saved'")
        if self.deliverable not in DELIVERABLES:
            raise ValueError(f"{self.name}: deliverable {self.deliverable!r} is not one of "
                             f"{DELIVERABLES}")


@dataclass(frozen=True)
class Sizes:
    """A family's budget section: ``full`` (the reports), ``smoke`` (CI, numbers meaningless) and
    ``small_set`` (the 814-listing set; default ``full``), each the family's own dataclass."""

    full: Any
    smoke: Any
    small_set: Any = None

    def at(self, budget: str):
        """The settings of budget ``budget`` ("full", "small-set" or "smoke")."""
        chosen = {"full": self.full, "smoke": self.smoke,
                  "small-set": self.small_set or self.full}
        if budget not in chosen:
            raise ValueError(f"unknown budget {budget!r}; choose one of {', '.join(chosen)}")
        return chosen[budget]


@dataclass(frozen=True)
class Family:
    """What a family module declares (its ``FAMILY``).

    ``name``: the budget section (``cfg.budget.<name>``); ``trusted_types``: what its saved
    scikit-learn parts hold that skops does not trust by itself; ``keras_objects``: its custom
    layers; ``load_composite(data, models_dir, load_member)``: rebuilds a composite (a blend).
    """

    name: str
    models: tuple[ModelSpec, ...]
    sizes: Sizes | None = None
    trusted_types: tuple = ()
    keras_objects: tuple = ()
    load_composite: Callable | None = None

    @property
    def custom_objects(self) -> Mapping[str, Any]:
        """``{registered Keras name: class}`` of :attr:`keras_objects`, for ``load_model``."""
        import keras  # TensorFlow: only a family with Keras layers gets here

        return {keras.saving.get_registered_name(obj): obj for obj in self.keras_objects}

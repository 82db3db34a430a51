"""What a model family declares about itself, and what its trainer returns.

A family module in :mod:`shared.models.families` exports one :class:`Family` named ``FAMILY``:
its models (:class:`ModelSpec`: name, role, inputs, trainer, optional reseed), its budget section
(:class:`Sizes`: the settings it trains with at each budget, full and smoke side by side) and what
its saved files need to load (trusted scikit-learn types, Keras custom objects). The registry
(:mod:`shared.models.registry`) collects them; every list of model names, the training order, the
reseed table, the trusted types and the budgets are derived from it.

A trainer takes the run (:class:`Run`: data, configuration, what was trained before) and returns
a :class:`Trained`. It never scores on test and never saves: the run's evaluation loop does.
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

    ``predict``: ``part -> (n,) predicted EUR`` from what the trainer already holds (e.g. cached
    photo features), so the evaluation need not recompute them; None: predict with the bundle.
    ``known``: ``{part: (n,) EUR}`` predictions the trainer already made (e.g. on validation, to
    choose), reused as they are. ``history``: the Keras learning curve (per-epoch lists), None for
    models without epochs. ``extra``: anything else the trainer measured that the run reports
    (e.g. feature-extraction stats).
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
        """(n,) predicted EUR on ``data.parts[part]``: a prediction the trainer already made, else
        its own predictor's, else the bundle's."""
        if part in self.known:
            pred = self.known[part]
        elif self.predict is not None:
            pred = self.predict(part)
        else:
            pred = self.bundle.predict_eur(data.parts[part])
        return np.asarray(pred, dtype=np.float64)


class Run(Protocol):
    """What a trainer sees of the run (implemented by :class:`shared.run.experiment.Experiment`).

    ``data``: the split data (:class:`shared.features.model_data.ModelData`); ``cfg``: the run
    configuration (:class:`shared.run.config.RunConfig`: budget, seed, devices); ``trained``:
    this run's models so far, by name; ``shared``: what one trainer leaves for a later one (e.g.
    early fusion's fitted photo reducers for ``hgb_with_embeddings``).
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

    ``train(run) -> Trained``; ``reseed(run, bundle) -> Reseed`` retrains the bundle's chosen
    settings with another seed, for the seed study (None: no cheap retrain). ``role``: one of
    :data:`ROLES`. ``order``: its place in its deliverable's training order (and in the reports'
    tables). ``reference``: deliverable 2 compares its fusion models with it: "always" (the
    saved model reused on the same split, else trained again) or "if_saved" (used only when a
    saved one fits: too slow to train for a comparison); "" otherwise. ``neural``: a network
    trained by gradient descent. ``after``: models that must be trained first in the same run.
    ``base``: for a model that adds the photo, the tabular-only model it is built on (its gain
    over it is the photo's share; "" when it has none or it is decided in training, a blend's).
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
    """A family's budget section: one settings object per budget, side by side.

    ``full`` (the reports), ``smoke`` (CI: every code path, numbers meaningless) and
    ``small_set`` (the 814-listing set; default: ``full``), each an instance of the family's own
    frozen dataclass."""

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

    ``name``: the budget section's name (``cfg.budget.<name>``); ``models``: in training order;
    ``trusted_types``: classes and functions its saved scikit-learn parts are made of that skops
    does not trust by itself; ``keras_objects``: the custom Keras layers its saved networks hold;
    ``load_composite(data, models_dir, load_member)``: rebuilds the estimator of a composite
    model (a blend) from its ``estimator.json`` content, loading each member with
    ``load_member(models_dir, name, digest)``.
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

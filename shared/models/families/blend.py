"""Blends: a weighted average, in log-price space, of two models already trained.

``blend``: ``(1 - w) * log price(tabular member) + w * log price(photo member)``, pair and ``w``
chosen together on validation MAE (EUR). ``tabular_blend``, the control, pairs tabular-only
models: the photo's own share is what ``blend`` gains beyond it. A blend saves only its members'
names and the weight. Choosing among many pairs and weights makes its validation MAE optimistic,
so it is *selected* by :func:`cross_validated_mae` (choices made on other validation folds).
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass
from collections.abc import Callable, Iterable, Mapping
from itertools import combinations

import numpy as np

from shared.evaluation.metrics import lowest, mae
from shared.features import tabular as feats
from shared.models import registry
from shared.models.bundle import ModelBundle
from shared.models.spec import Family, ModelSpec, Trained

log = logging.getLogger(__name__)

WEIGHT_STEP = 0.05
SELECTION_FOLDS = 5  # folds of the validation part behind the blend's selection score
WEIGHTS = tuple(round(i * WEIGHT_STEP, 2) for i in range(int(round(1 / WEIGHT_STEP)) + 1))


def blend_log(first_log, second_log, weight: float) -> np.ndarray:
    """(n,) log price: ``(1 - weight) * first_log + weight * second_log``."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"blend weight must be within [0, 1], got {weight}")
    first = np.asarray(first_log, dtype=np.float64)
    second = np.asarray(second_log, dtype=np.float64)
    if first.shape != second.shape:
        raise ValueError(f"blend members predict {first.shape} and {second.shape} rows")
    return (1.0 - weight) * first + weight * second


def choose_blend(val_log: Mapping[str, np.ndarray], y_val_eur, pairs: Iterable[tuple[str, str]],
                 weights=WEIGHTS) -> dict:
    """The pair and weight with the lowest validation MAE (EUR).

    ``val_log``: {model: (n_val,) predicted log price}; ``y_val_eur``: (n_val,) EUR; ``pairs``:
    (tabular, photo) member pairs; ``weights``: of the photo member, in [0, 1]. Returns
    {"members", "weight", "val_mae", "trials"}. Scores within
    :data:`shared.evaluation.metrics.TIE_EUR` are ties, going to the first pair and the smaller
    weight, on any CPU.
    """
    y = np.asarray(y_val_eur, dtype=np.float64)
    trials, bests = [], []
    for first, second in pairs:
        scores = [(mae(y, feats.price_from_log(blend_log(val_log[first], val_log[second], w))), w)
                  for w in sorted(weights)]
        val_mae, weight = lowest(scores, lambda s: s[0])  # ties: the smaller weight
        trials.append({"members": [first, second], "weight": float(weight),
                       "val_mae": round(float(val_mae), 4)})
        bests.append((val_mae, first, second, weight))
    if not bests:
        raise ValueError("choose_blend needs at least one pair of models")
    val_mae, first, second, weight = lowest(bests, lambda b: b[0])  # ties: the first pair
    return {"members": [first, second], "weight": float(weight), "val_mae": float(val_mae),
            "trials": trials}


def blend_predictor(members: Mapping[str, Callable[[str], np.ndarray]], choice: dict
                    ) -> Callable[[str], np.ndarray]:
    """``part -> (n,) EUR`` of the chosen blend, from ``members[name](part) -> (n,) EUR``."""
    first, second = choice["members"]

    def predict(part: str) -> np.ndarray:
        return feats.price_from_log(blend_log(np.log(members[first](part)),
                                              np.log(members[second](part)), choice["weight"]))

    return predict


def cross_validated_mae(val_log: Mapping[str, np.ndarray], y_val_eur, pairs: Iterable[tuple[str, str]],
                        weights=WEIGHTS, folds: int = SELECTION_FOLDS, seed: int = 0) -> dict:
    """The validation MAE (EUR) of the *procedure* :func:`choose_blend`, out of fold.

    Validation rows are shuffled (``seed``) into ``folds``; each fold is predicted with the choice
    made on the others. Returns {"mae", "folds", "choices"}. Not a minimum over the candidates, so
    it compares fairly with a model that made no choice on validation.
    """
    y = np.asarray(y_val_eur, dtype=np.float64)
    pairs = list(pairs)
    if folds < 2 or folds > len(y):
        raise ValueError(f"cross_validated_mae needs 2 to {len(y)} folds, got {folds}")
    fold_of = np.random.default_rng(seed).permutation(len(y)) % folds
    errors, choices = np.empty(len(y)), []
    for k in range(folds):
        held, kept = fold_of == k, fold_of != k
        choice = choose_blend({n: np.asarray(v)[kept] for n, v in val_log.items()}, y[kept],
                              pairs, weights)
        first, second = choice["members"]
        pred = feats.price_from_log(blend_log(np.asarray(val_log[first])[held],
                                              np.asarray(val_log[second])[held], choice["weight"]))
        errors[held] = np.abs(pred - y[held])
        choices.append({"members": choice["members"], "weight": choice["weight"]})
    return {"mae": float(errors.mean()), "folds": folds, "choices": choices}


# --------------------------------------------------------------------------- the saved blend

@dataclass
class Blend:
    """A blend as an estimator over its two member bundles. Saved as ``estimator.json`` naming the
    members' folders and the sha256 of their metadata (a member changed since is refused)."""

    members: tuple
    weight: float

    def predict_log(self, dataset, batch_size: int = 32, **features) -> np.ndarray:
        """(n,) log price of ``dataset``'s rows (``features``: see ``ModelBundle.predict_log``)."""
        first, second = (m.predict_log(dataset, batch_size, **features) for m in self.members)
        return blend_log(first, second, self.weight)

    def to_json(self, digest) -> dict:
        """What ``estimator.json`` holds; ``digest(name)``: a member folder's metadata sha256."""
        return {"kind": "blend", "weight": float(self.weight),
                "members": [{"name": m.name, "metadata_sha256": digest(m.name)}
                            for m in self.members]}


def load_blend(data: dict, models_dir, load_member) -> Blend:
    """The :class:`Blend` of an ``estimator.json`` content, members loaded by ``load_member``.<<"""
    members = tuple(load_member(models_dir, m["name"], m["metadata_sha256"])
                    for m in data["members"])
    return Blend(members, float(data["weight"]))


# --------------------------------------------------------------------------- the trainers

def _member_predictors(run, names) -> dict:
    """{model: part -> (n,) EUR, computed once per part} of the named models of the run."""
    return {name: functools.cache(functools.partial(run.prices, name)) for name in names}


def _train(run, name: str, pairs: list[tuple[str, str]], deliverable: str) -> Trained:
    """A blend over ``pairs`` chosen on validation, selected by :func:`cross_validated_mae`.<<"""
    start = time.perf_counter()
    members = _member_predictors(run, sorted({m for pair in pairs for m in pair}))
    val_log = {member: np.log(predict("val")) for member, predict in members.items()}
    y_val = run.data.y_eur("val")
    choice = choose_blend(val_log, y_val, pairs)
    selection = cross_validated_mae(val_log, y_val, pairs, seed=run.cfg.seed_for("run"))
    first, second = choice["members"]
    log.info("  %s: %s and %s with weight %.2f on %s, chosen on validation (MAE %.2f EUR, %d "
             "pairs; %d-fold cross-validated %.2f EUR)", name, first, second, choice["weight"],
             second, choice["val_mae"], len(pairs), selection["folds"], selection["mae"])
    estimator = Blend((run.bundle(first), run.bundle(second)), choice["weight"])
    bundle = ModelBundle(name, (), estimator, deliverable=deliverable,
                         params={"members": choice["members"], "weight": choice["weight"],
                                 "selection_val_mae": round(selection["mae"], 4),
                                 "selection_folds": selection["folds"],
                                 "selection_fold_choices": selection["choices"],
                                 "weights_tried": list(WEIGHTS), "trials": choice["trials"]})
    return Trained(bundle, time.perf_counter() - start,
                   predict=blend_predictor(members, choice))


def tabular_references() -> tuple[str, ...]:
    """The tabular-only models deliverable 2 compares with (and blends)."""
    return registry.names(deliverable="deliverable1", role="tabular", reference="always")


def train_blend(run) -> Trained:
    """``blend``: every (tabular reference, photo-seeing model) pair: the photo-only reference
    validation prefers and every fusion model trained before it."""
    photo = registry.names(deliverable="deliverable1", role="photo")
    fusion = [n for n in registry.names(deliverable="deliverable2", role="fusion")
              if n in run.trained]
    seeing = [run.best_on_validation([n for n in photo if run.has(n)]), *fusion]
    pairs = [(tab, other) for tab in tabular_references() for other in seeing]
    return _train(run, "blend", pairs, "deliverable2")


def train_tabular_blend(run) -> Trained:
    """``tabular_blend``: every pair of tabular references, by the same rule as ``blend``."""
    return _train(run, "tabular_blend", list(combinations(tabular_references(), 2)),
                  "deliverable2")


def blend_reseed(run, bundle: ModelBundle):
    """``seed -> predict`` with the members retrained with that seed (a member without a cheap
    retrain keeps its predictions); None when neither has one."""
    choice = {"members": bundle.params["members"], "weight": bundle.params["weight"]}
    reseeds = {name: run.reseed(name) for name in choice["members"]}
    if all(r is None for r in reseeds.values()):
        return None
    kept = _member_predictors(run, choice["members"])

    def reseed(seed):
        return blend_predictor({name: (r(seed) if r is not None else kept[name])
                                for name, r in reseeds.items()}, choice)

    return reseed


FAMILY = Family(
    name="blend",
    models=(
        ModelSpec("tabular_blend", "tabular", "deliverable2", order=105, inputs=(),
                  train=train_tabular_blend, reseed=blend_reseed,
                  description="two tabular models averaged in log space (the control)"),
        ModelSpec("blend", "fusion", "deliverable2", order=150, inputs=(), train=train_blend,
                  reseed=blend_reseed,
                  description="a tabular and a photo-seeing model averaged in log space"),
    ),
    load_composite=load_blend,
)

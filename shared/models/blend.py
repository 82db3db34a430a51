"""Blend: a weighted average, in log-price space, of a tabular model and a model that sees the photo.

``blend``
    ``log price = (1 - w) * log price(tabular member) + w * log price(photo member)``. The pair
    and the weight ``w`` (0 to 1 in steps of :data:`WEIGHT_STEP`) are chosen together on the
    validation part, by its MAE in euros; nothing is fitted on the test rows, and the members
    keep their own training. Two families that err differently (gradient boosting on the
    listing's features, a network that also looks at the photo) average out part of each
    other's errors, which neither can do alone.

The members' predictions are all a blend needs (``{member: (n,) log price}`` per part), so it
has no estimator of its own to save: its record names the members and the weight, and it is
rebuilt from the members' saved folders.

Choosing one pair and one weight among many on the validation part makes the blend's own
validation MAE optimistic: it is the best of every pair and weight tried, so it would win the
validation comparison with the other fusion models partly by chance. The blend is therefore
*selected* by :func:`cross_validated_mae` instead: the validation part is cut into folds, the pair
and weight are chosen on the other folds and scored on the held-out one, so every listing is
scored by a choice it did not take part in. The reported blend still uses the choice made on the
whole validation part; the test part, read once, is unaffected either way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from shared import features as feats
from shared.evaluation import mae

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

    Args:
        val_log: {model name: (n_val,) predicted log price on the validation part}.
        y_val_eur: (n_val,) true validation prices, EUR.
        pairs: (tabular member, photo member) pairs to try.
        weights: weights of the photo member to try, each in [0, 1].

    Returns {"members": [tabular, photo], "weight": w, "val_mae": EUR, "trials": one row per pair
    with its best weight and validation MAE}. Ties go to the first pair tried and the smaller
    weight (the tabular member alone when the photo adds nothing).
    """
    y = np.asarray(y_val_eur, dtype=np.float64)
    trials, best = [], None
    for first, second in pairs:
        scores = [(mae(y, feats.price_from_log(blend_log(val_log[first], val_log[second], w))), w)
                  for w in weights]
        val_mae, weight = min(scores, key=lambda s: (s[0], s[1]))
        trials.append({"members": [first, second], "weight": float(weight),
                       "val_mae": round(float(val_mae), 4)})
        if best is None or val_mae < best[0]:
            best = (val_mae, first, second, weight)
    if best is None:
        raise ValueError("choose_blend needs at least one pair of models")
    val_mae, first, second, weight = best
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

    The validation rows are shuffled (``seed``) into ``folds`` folds; for each, the pair and weight
    are chosen on the other folds and the held-out fold is predicted with that choice. Returns
    {"mae": MAE over every validation row, "folds": int, "choices": one {"members", "weight"} per
    fold}. Unlike ``choose_blend(...)["val_mae"]`` it is not the minimum of the numbers it chose
    among, so it compares fairly with a model that made no choice on validation.
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

"""Baselines: the yardsticks every neural model in the project is compared against.

* ``mean``  predicts the training mean of log price for every listing (R² on log price ~ 0).
* ``ridge`` a linear model on the same tabular features; ``alpha`` chosen on validation.
* ``hgb``   scikit-learn's HistGradientBoostingRegressor, the usual strongest model on small
  tabular data; a small grid chosen on validation.

All three train on log price and consume the tabular matrix of :mod:`shared.features`;
``train_hgb`` also accepts extra image-feature columns (deliverable 2's ``hgb_with_embeddings``).
"""

from __future__ import annotations

import itertools
import time

import numpy as np
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import Ridge

from shared import features as feats
from shared.split import PART_NAMES as PARTS
from shared.modeling import ModelBundle, tune_on_validation

RIDGE_ALPHAS = (0.1, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0)
HGB_GRID = [
    {"learning_rate": lr, "max_leaf_nodes": leaves, "min_samples_leaf": leaf, "l2_regularization": 1.0}
    for lr, leaves, leaf in itertools.product((0.03, 0.08), (15, 31), (10, 20))
]


def train_mean(exp) -> ModelBundle:
    start = time.perf_counter()
    model = DummyRegressor(strategy="mean").fit(exp.tabular["train"], exp.y_log("train"))
    bundle = ModelBundle("mean", ("tabular",), model, exp.preprocessor, deliverable="deliverable1",
                         params={"strategy": "mean of training log price"})
    exp.evaluate(bundle, time.perf_counter() - start)
    return bundle


def train_ridge(exp, alphas=RIDGE_ALPHAS) -> ModelBundle:
    start = time.perf_counter()
    X, y = exp.tabular["train"], exp.y_log("train")
    search = tune_on_validation(
        lambda p: Ridge(alpha=p["alpha"]).fit(X, y), [{"alpha": a} for a in alphas],
        lambda m, _: feats.price_from_log(m.predict(exp.tabular["val"])), exp.y_eur("val"))
    bundle = ModelBundle("ridge", ("tabular",), search.model, exp.preprocessor,
                         deliverable="deliverable1", params={**search.params, "trials": search.trials})
    exp.evaluate(bundle, time.perf_counter() - start)
    return bundle


def train_hgb(exp, **options) -> ModelBundle:
    """Gradient boosting (:func:`fit_hgb`), evaluated and saved."""
    bundle, predictions, seconds = fit_hgb(exp, **options)
    exp.evaluate(bundle, seconds, predictions=predictions)
    return bundle


def fit_hgb(exp, name: str = "hgb", grid=None, image_features: dict | None = None,
            image_reducer=None, backbone: str | None = None, image_size: int | None = None,
            deliverable: str = "deliverable1") -> tuple[ModelBundle, dict, float]:
    """Gradient boosting on the tabular features (+ optional reduced image features per part),
    its settings searched on validation; neither evaluated nor saved.

    Args:
        image_features: {"train"/"val"/"test": (n, k) float32} already reduced by
            ``image_reducer`` (fitted on training rows); None for tabular only.

    Returns:
        (bundle, {"train"/"val"/"test": predicted prices EUR (n,)}, training seconds).
    """
    grid = grid or HGB_GRID[:exp.budget.hgb_candidates]
    start = time.perf_counter()

    def matrix(part):
        if image_features is None:
            return exp.tabular[part]
        return np.hstack([exp.tabular[part], image_features[part]])

    X, y = matrix("train"), exp.y_log("train")
    search = tune_on_validation(
        lambda p: HistGradientBoostingRegressor(max_iter=exp.budget.hgb_max_iter,
                                                early_stopping=False, random_state=exp.seed,
                                                **p).fit(X, y),
        grid, lambda m, _: feats.price_from_log(m.predict(matrix("val"))), exp.y_eur("val"))
    model = search.model
    inputs = ("tabular",) if image_features is None else ("tabular", "image_features")
    bundle = ModelBundle(name, inputs, model, exp.preprocessor, image_reducer=image_reducer,
                         backbone=backbone, image_size=image_size, deliverable=deliverable,
                         params={**search.params, "trials": search.trials})
    predictions = {p: feats.price_from_log(model.predict(matrix(p)))
                   for p in PARTS}
    return bundle, predictions, time.perf_counter() - start

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
from shared.bundles import ModelBundle
from shared.experiment import Trained
from shared.search import Fitted, tune_on_validation

RIDGE_ALPHAS = (0.1, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0)
HGB_GRID = [
    {"learning_rate": lr, "max_leaf_nodes": leaves, "min_samples_leaf": leaf, "l2_regularization": 1.0}
    for lr, leaves, leaf in itertools.product((0.03, 0.08), (15, 31), (10, 20))
]


def train_mean(data, cfg) -> Trained:
    """The training mean of log price, for every listing."""
    start = time.perf_counter()
    model = DummyRegressor(strategy="mean").fit(data.tabular["train"], data.y_log("train"))
    bundle = ModelBundle("mean", ("tabular",), model, data.preprocessor, deliverable="deliverable1",
                         params={"strategy": "mean of training log price"})
    return Trained(bundle, time.perf_counter() - start)


def train_ridge(data, cfg, alphas=RIDGE_ALPHAS) -> Trained:
    """Ridge regression on the tabular features, ``alpha`` chosen on validation."""
    start = time.perf_counter()
    X, y = data.tabular["train"], data.y_log("train")
    search = tune_on_validation(
        lambda p: Fitted(Ridge(alpha=p["alpha"]).fit(X, y)), [{"alpha": a} for a in alphas],
        lambda m, _: feats.price_from_log(m.predict(data.tabular["val"])), data.y_eur("val"))
    bundle = ModelBundle("ridge", ("tabular",), search.model, data.preprocessor,
                         deliverable="deliverable1", params={**search.params, "trials": search.trials})
    return Trained(bundle, time.perf_counter() - start)


def train_hgb(data, cfg, name: str = "hgb", grid=None, image_features: dict | None = None,
              image_reducer=None, backbone: str | None = None, image_size: int | None = None,
              deliverable: str = "deliverable1") -> Trained:
    """Gradient boosting on the tabular features (+ optional reduced image features per part),
    its settings searched on validation.

    Args:
        image_features: {part: (n, k) float32} already reduced by ``image_reducer`` (fitted on
            training rows); None for tabular only.

    Returns:
        :class:`~shared.experiment.Trained` whose ``predict(part)`` reuses the matrices built here.
    """
    grid = grid or HGB_GRID[:cfg.budget.hgb_candidates]
    start = time.perf_counter()

    def matrix(part):
        if image_features is None:
            return data.tabular[part]
        return np.hstack([data.tabular[part], image_features[part]])

    X, y = matrix("train"), data.y_log("train")
    search = tune_on_validation(
        lambda p: Fitted(HistGradientBoostingRegressor(max_iter=cfg.budget.hgb_max_iter,
                                                       early_stopping=False, random_state=cfg.seed,
                                                       **p).fit(X, y)),
        grid, lambda m, _: feats.price_from_log(m.predict(matrix("val"))), data.y_eur("val"))
    model = search.model
    inputs = ("tabular",) if image_features is None else ("tabular", "image_features")
    bundle = ModelBundle(name, inputs, model, data.preprocessor, image_reducer=image_reducer,
                         backbone=backbone, image_size=image_size, deliverable=deliverable,
                         params={**search.params, "trials": search.trials})
    return Trained(bundle, time.perf_counter() - start,
                   predict=lambda part: feats.price_from_log(model.predict(matrix(part))))

"""Baselines: the yardsticks every neural model is compared against, all on log price.

``mean`` (the training mean, R² on log price ~ 0), ``ridge`` (alpha chosen on validation) and
``hgb`` (HistGradientBoostingRegressor, the usual strongest model on small tabular data: a
random search on validation, each fit early-stopped on validation). ``train_hgb`` also takes
extra photo columns (``hgb_with_embeddings``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
from sklearn.linear_model import Ridge

from shared.features import tabular as feats
from shared.models.bundle import ModelBundle
from shared.models.spec import Family, ModelSpec, Sizes, Trained
from shared.models.search import Fitted, tune_on_validation

RIDGE_ALPHAS = (0.1, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0)
#: The gradient-boosting search space (the number of trees is chosen by early stopping).
#: ``max_features`` < 1 regularises, and makes a retrain with another seed a different model.
HGB_SPACE = {"learning_rate": (0.02, 0.04, 0.08), "max_leaf_nodes": (7, 15, 31, 63),
             "min_samples_leaf": (5, 10, 20, 40), "l2_regularization": (0.0, 1.0, 10.0),
             "max_features": (0.5, 0.7, 0.9)}
HGB_PATIENCE = 50


@dataclass(frozen=True)
class HgbSizes:
    """Gradient boosting's budget: settings tried and the most boosting iterations of a fit.<<"""

    hgb_candidates: int
    hgb_max_iter: int


def hgb_candidates(n: int, seed: int) -> list[dict]:
    """``n`` distinct settings drawn from :data:`HGB_SPACE` (seeded)."""
    rng = np.random.default_rng(seed)
    grid, seen = [], set()
    while len(grid) < n:
        params = {k: v[rng.integers(len(v))] for k, v in HGB_SPACE.items()}
        key = tuple(sorted(params.items()))
        if key not in seen:
            seen.add(key)
            grid.append({k: (float(v) if isinstance(v, float) else int(v)) for k, v in params.items()})
    return grid


def fit_hgb(X, y, X_val, y_val, params: dict, max_iter: int, seed: int):
    """One gradient-boosting fit on log price, early-stopped on the validation rows."""
    return HistGradientBoostingRegressor(max_iter=max_iter, early_stopping=True,
                                         n_iter_no_change=HGB_PATIENCE, random_state=seed,
                                         **params).fit(X, y, X_val=X_val, y_val=y_val)


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


def hgb_reseed(data, cfg, params: dict):
    """``seed -> predict(part)``: ``hgb`` (its bundle ``params``) refitted with another seed,
    early-stopped on validation (the seed study)."""
    settings = {k: params[k] for k in HGB_SPACE}
    X, X_val = data.tabular["train"], data.tabular["val"]

    def reseed(seed):
        model = fit_hgb(X, data.y_log("train"), X_val, data.y_log("val"), settings,
                        cfg.budget.baselines.hgb_max_iter, seed)
        return lambda part: feats.price_from_log(model.predict(data.tabular[part]))

    return reseed


def train_hgb(data, cfg, name: str = "hgb", grid=None, image_features: dict | None = None,
              image_reducer=None, backbone: str | None = None, image_size: int | None = None,
              deliverable: str = "deliverable1") -> Trained:
    """Gradient boosting on the tabular features (+ optional photo columns): a seeded random
    search of :data:`HGB_SPACE` on validation, every fit early-stopped on validation.

    ``image_features``: {part: (n, k) float32} already reduced by ``image_reducer``; None for
    tabular only. The returned ``Trained.predict(part)`` reuses the matrices built here.
    """
    grid = grid or hgb_candidates(cfg.budget.baselines.hgb_candidates, cfg.seed)
    start = time.perf_counter()

    def matrix(part):
        if image_features is None:
            return data.tabular[part]
        return np.hstack([data.tabular[part], image_features[part]])

    X, y, X_val, y_val = matrix("train"), data.y_log("train"), matrix("val"), data.y_log("val")

    def fit(params, seed):
        return fit_hgb(X, y, X_val, y_val, params, cfg.budget.baselines.hgb_max_iter, seed)

    def predictor(model):
        return lambda part: feats.price_from_log(model.predict(matrix(part)))

    search = tune_on_validation(lambda p: Fitted(fit(p, cfg.seed)), grid,
                                lambda m, _: feats.price_from_log(m.predict(X_val)),
                                data.y_eur("val"))
    model = search.model
    inputs = ("tabular",) if image_features is None else ("tabular", "image_features")
    stopped = "early_stopping" if model.n_iter_ < cfg.budget.baselines.hgb_max_iter else "epoch_limit"
    bundle = ModelBundle(name, inputs, model, data.preprocessor, image_reducer=image_reducer,
                         backbone=backbone, image_size=image_size, deliverable=deliverable,
                         params={**search.params, "n_trees": int(model.n_iter_),
                                 "max_trees": cfg.budget.baselines.hgb_max_iter, "stopped_by": stopped,
                                 "trials": search.trials})
    return Trained(bundle, time.perf_counter() - start, predict=predictor(model))


def hgb_reseed_of(run, bundle) -> object:
    """The seed study's retrain of a saved ``hgb`` (its bundle's chosen settings)."""
    return hgb_reseed(run.data, run.cfg, bundle.params)


FAMILY = Family(
    name="baselines",
    models=(
        ModelSpec("mean", "baseline", "deliverable1", order=10, inputs=("tabular",),
                  train=lambda run: train_mean(run.data, run.cfg),
                  description="the training mean of log price"),
        ModelSpec("ridge", "tabular", "deliverable1", order=20, inputs=("tabular",),
                  train=lambda run: train_ridge(run.data, run.cfg),
                  description="ridge regression, alpha chosen on validation"),
        ModelSpec("hgb", "tabular", "deliverable1", order=30, inputs=("tabular",),
                  train=lambda run: train_hgb(run.data, run.cfg), reseed=hgb_reseed_of,
                  reference="always", description="gradient boosting, random search on validation"),
    ),
    sizes=Sizes(full=HgbSizes(hgb_candidates=16, hgb_max_iter=3000),
                smoke=HgbSizes(hgb_candidates=2, hgb_max_iter=50)),
    # a fitted HistGradientBoostingRegressor holds its trees as TreePredictor objects
    trusted_types=(TreePredictor,),
)

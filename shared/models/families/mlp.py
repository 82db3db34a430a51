"""``mlp``: a multilayer perceptron on the tabular features, with an honest validation search.

The original's 2 x 64 ReLU layers with dropout first, then a seeded random search over depth,
width, dropout, L2 and learning rate, each candidate early-stopped on validation; the lowest
validation MAE (EUR) wins. ``cfg.budget.mlp`` is also read by the fusion models built on it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import keras
import numpy as np

from shared.features import tabular as feats
from shared.models.bundle import ModelBundle
from shared.models.fit import (compile_regressor, epochs_record, fit_regressor, in_strategy,
                               under_strategy)
from shared.models.layers import build_mlp
from shared.models.search import Fitted, SearchResult, tune_on_validation
from shared.models.spec import Family, ModelSpec, Sizes, Trained

ORIGINAL = {"hidden": (64, 64), "dropout": 0.2, "l2": 0.0, "learning_rate": 1e-3}
SEARCH_SPACE = {
    "hidden": [(64,), (128,), (64, 64), (128, 64), (256, 128), (128, 64, 32), (256, 128, 64)],
    "dropout": [0.0, 0.1, 0.2, 0.3, 0.5],
    "l2": [0.0, 1e-4, 1e-3, 1e-2],
    "learning_rate": [3e-4, 1e-3, 3e-3],
}


@dataclass(frozen=True)
class MlpSizes:
    """The mlp's budget (also the MLP of early fusion and phase 1 of late fusion)."""

    configs: int      # candidates of the random search, the original's included
    epochs: int       # most epochs of a fit (early stopping decides)
    batch_size: int


def config_of(params: dict) -> dict:
    """The architecture and optimiser settings of a trained mlp (its bundle's ``params``)."""
    return {k: params[k] for k in ORIGINAL}


def sample_configs(n: int, seed: int) -> list[dict]:
    """The original configuration first, then ``n - 1`` distinct random draws (seeded)."""
    rng = np.random.default_rng(seed)
    configs, seen = [dict(ORIGINAL)], {repr(ORIGINAL)}
    while len(configs) < n:
        config = {key: values[rng.integers(len(values))] for key, values in SEARCH_SPACE.items()}
        if repr(config) not in seen:
            seen.add(repr(config))
            configs.append(config)
    return configs


def fit_mlp(X_train, y_train, X_val, y_val, config: dict, seed: int, epochs: int,
            batch_size: int, patience: int = 20, name: str = "mlp"):
    """Build and fit one MLP configuration; returns its :class:`~shared.models.search.Fitted`."""
    keras.utils.set_random_seed(seed)
    model = build_mlp(X_train.shape[1], tuple(config["hidden"]), config["dropout"], config["l2"],
                      target_mean=float(np.mean(y_train)), name=name)
    compile_regressor(model, config["learning_rate"])
    history = fit_regressor(model, (X_train, y_train), (X_val, y_val), epochs=epochs,
                            patience=patience, batch_size=batch_size, seed=seed)
    return Fitted(model, history)


def config_record(config: dict) -> dict:
    """A configuration as stored in trials and bundle params (hidden as a list: JSON)."""
    return {"hidden": list(config["hidden"]), "dropout": config["dropout"], "l2": config["l2"],
            "learning_rate": config["learning_rate"]}


def search_mlp(X_train, y_train, X_val, y_val_eur, n_configs: int, cfg, epochs: int,
               batch_size: int) -> SearchResult:
    """Random search via :func:`shared.models.search.tune_on_validation` (candidate ``i`` seeded
    with ``cfg.seed_for("candidate", i)``)."""
    y_val_log = feats.log_target(y_val_eur)
    grid = [{"index": i, "config": config}
            for i, config in enumerate(sample_configs(n_configs, cfg.seed_for("run")))]
    return tune_on_validation(
        lambda p: fit_mlp(X_train, y_train, X_val, y_val_log, p["config"],
                          cfg.seed_for("candidate", p["index"]), epochs, batch_size),
        grid, lambda model, _: feats.price_from_log(model.predict(X_val, verbose=0)), y_val_eur,
        describe=lambda p: config_record(p["config"]), details=True, label="mlp candidate")


def mlp_reseed(data, cfg, params: dict):
    """``seed -> predict(part)``: an ``mlp`` (its bundle ``params``) retrained with another seed.<<"""
    config = config_of(params)
    sizes = cfg.budget.mlp

    def reseed(seed):
        with in_strategy(cfg):
            model = fit_mlp(data.tabular["train"], data.y_log("train"), data.tabular["val"],
                            data.y_log("val"), config, seed, sizes.epochs, sizes.batch_size).model
        return lambda part: feats.price_from_log(model.predict(data.tabular[part], verbose=0))

    return reseed


@under_strategy
def train_mlp(data, cfg, n_configs: int | None = None, epochs: int | None = None) -> Trained:
    """Search ``mlp`` on validation (``n_configs`` / ``epochs``: default ``cfg.budget.mlp``)."""
    n_configs = n_configs or cfg.budget.mlp.configs
    epochs = epochs or cfg.budget.mlp.epochs
    start = time.perf_counter()
    X, y, X_val = data.tabular["train"], data.y_log("train"), data.tabular["val"]
    search = search_mlp(X, y, X_val, data.y_eur("val"), n_configs, cfg, epochs,
                        cfg.budget.mlp.batch_size)
    params = {**config_record(search.params["config"]), **epochs_record(search.history, epochs),
              "loss": "mse", "trials": search.trials}
    bundle = ModelBundle("mlp", ("tabular",), search.model, data.preprocessor, params=params,
                         deliverable="deliverable1")
    return Trained(bundle, time.perf_counter() - start, history=search.history)


FAMILY = Family(
    name="mlp",
    models=(ModelSpec("mlp", "tabular", "deliverable1", order=40, inputs=("tabular",),
                      train=lambda run: train_mlp(run.data, run.cfg),
                      reseed=lambda run, bundle: mlp_reseed(run.data, run.cfg, bundle.params),
                      neural=True, reference="always",
                      description="multilayer perceptron, random search from the original's"),),
    sizes=Sizes(full=MlpSizes(configs=12, epochs=200, batch_size=128),
                small_set=MlpSizes(configs=12, epochs=300, batch_size=64),
                smoke=MlpSizes(configs=2, epochs=5, batch_size=64)),
)

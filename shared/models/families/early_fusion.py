"""Early fusion: photo features joined to the tabular features *before* any learning.

``early_fusion``: each listing's cached backbone vector is reduced (PCA or the photo price
score of :mod:`shared.features.photo_reducers`, fitted on the training rows only) and appended
to the tabular matrix: one MLP learns from (n, d_tab + k) float32. Validation chooses the
reduction with deliverable 1's MLP configuration, then a few other configurations.
``hgb_with_embeddings``: gradient boosting on tabular + photo columns, the non-neural yardstick.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from shared.data.split import PART_NAMES as PARTS
from shared.evaluation.metrics import better
from shared.features import tabular as feats
from shared.features.backbones import DEFAULT_BACKBONE
from shared.features.photo_reducers import (TRUSTED_TYPES, PhotoPriceScore, fit_image_reducer,
                                            reduced_features, reducer_label)
from shared.models.bundle import ModelBundle
from shared.models.families import baselines
from shared.models.families.mlp import ORIGINAL, config_of, fit_mlp, sample_configs
from shared.models.families.transfer import default_image_size
from shared.models.fit import epochs_record, in_strategy, under_strategy
from shared.models.search import Fitted, tune_on_validation
from shared.models.spec import Family, ModelSpec, Sizes, Trained

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EarlyFusionSizes:
    """Early fusion's budget (its MLP trains with ``cfg.budget.mlp``'s epochs and batch)."""

    components: tuple   # photo reductions tried: k PCA components, or "score"
    extra_configs: int  # MLP configurations tried at the chosen reduction, besides deliverable 1's

def joined_matrices(data, raw: dict, reducer) -> dict[str, np.ndarray]:
    """{part: (n, d_tab + k) float32}: tabular columns first, then photo columns."""
    photo = reduced_features(raw, reducer)
    return {part: np.hstack([data.tabular[part], photo[part]]) for part in PARTS}


def _config_key(config: dict) -> dict:
    return {"hidden": list(config["hidden"]), "dropout": config["dropout"], "l2": config["l2"],
            "learning_rate": config["learning_rate"]}


def photo_params(reducer) -> dict:
    """What a bundle's params record of its photo reduction."""
    if isinstance(reducer, PhotoPriceScore):
        return {"photo_reduction": "score", "n_components": 1, "score_alpha": reducer.alpha_}
    pca = reducer.named_steps["pca"]
    return {"photo_reduction": reducer_label(reducer), "n_components": int(pca.n_components_),
            "pca_explained_variance": round(float(np.sum(pca.explained_variance_ratio_)), 4)}


class _Candidates:
    """Early fusion's candidates: the MLP on the tabular matrix joined to one photo reduction
    (``n_components``), each reduction fitted once on the training rows."""

    def __init__(self, data, cfg, raw: dict):
        self.data, self.cfg, self.raw = data, cfg, raw
        self.reducers, self.matrices = {}, {}

    def inputs(self, k) -> dict:
        if k not in self.matrices:
            self.reducers[k] = fit_image_reducer(self.raw, k, self.cfg.seed,
                                                 self.data.y_log("train"))
            self.matrices[k] = joined_matrices(self.data, self.raw, self.reducers[k])
        return self.matrices[k]

    def fit(self, params: dict):
        X, sizes = self.inputs(params["n_components"]), self.cfg.budget.mlp
        return fit_mlp(X["train"], self.data.y_log("train"), X["val"], self.data.y_log("val"),
                       params["config"], self.cfg.seed, sizes.epochs, sizes.batch_size,
                       name="early_fusion")

    def predict_val(self, model, params) -> np.ndarray:
        return feats.price_from_log(model.predict(self.matrices[params["n_components"]]["val"],
                                                  verbose=0))

    def search(self, grid: list[dict]):
        return tune_on_validation(self.fit, grid, self.predict_val, self.data.y_eur("val"))


def _trial_rows(trials: list[dict]) -> list[dict]:
    return [{"photo": t["n_components"] if t["n_components"] == "score"
             else f"pca-{t['n_components']}", **_config_key(t["config"]), "val_mae": t["val_mae"]}
            for t in trials]


@under_strategy
def train_early_fusion(data, cfg, raw: dict, backbone: str, image_size: int,
                       base_config: dict | None = None) -> tuple[Trained, dict]:
    """Search the photo reduction, then the MLP, on validation (``cfg.budget.early_fusion``).

    ``raw``: {part: (n, D) float32} cached backbone features; ``base_config``: the MLP
    configuration to start from. Returns (trained ``early_fusion``, {label: fitted reducer} of
    every reduction tried, e.g. "pca-8", "score").
    """
    sizes = cfg.budget.early_fusion
    base = dict(base_config or ORIGINAL)
    base["hidden"] = tuple(base["hidden"])
    start = time.perf_counter()
    candidates = _Candidates(data, cfg, raw)
    # Stage 1: the photo reduction, with deliverable 1's MLP configuration.
    best = candidates.search([{"n_components": k, "config": base} for k in sizes.components])
    trials = list(best.trials)
    k = best.params["n_components"]
    log.info("  early fusion: photo reduction %s chosen on validation (validation MAE: %s)", k,
             ", ".join(f"{t['n_components']}: {t['val_mae']}" for t in trials))
    # Stage 2: a few other MLP configurations at that k (seeded draws, deliverable 1's space).
    extra = [c for c in sample_configs(sizes.extra_configs + 2, cfg.seed_for("extra_configs"))
             if _config_key(c) != _config_key(base)][:sizes.extra_configs]
    if extra:
        stage2 = candidates.search([{"n_components": k, "config": c} for c in extra])
        if better(min(t["val_mae"] for t in stage2.trials), min(t["val_mae"] for t in trials)):
            best = stage2
        trials += stage2.trials
    matrices, reducer = candidates.matrices[k], candidates.reducers[k]
    bundle = ModelBundle(
        "early_fusion", ("tabular", "image_features"), best.model, data.preprocessor,
        image_reducer=reducer, backbone=backbone, image_size=image_size, deliverable="deliverable2",
        params={**photo_params(reducer), **_config_key(best.params["config"]),
                **epochs_record(best.history, cfg.budget.mlp.epochs), "loss": "mse",
                "input_dim": int(matrices["train"].shape[1]), "backbone": backbone,
                "image_size": image_size, "trials": _trial_rows(trials)})
    return (Trained(bundle, time.perf_counter() - start, history=best.history,
                    predict=lambda part: feats.price_from_log(
                        best.model.predict(matrices[part], verbose=0))),
            {reducer_label(r): r for r in candidates.reducers.values()})


def early_fusion_reseed(run, bundle: ModelBundle):
    """``seed -> predict(part)``: the chosen MLP retrained with another seed on the same matrices.<<"""
    data, cfg = run.data, run.cfg
    raw = run.features(bundle.backbone, bundle.image_size)
    matrices = joined_matrices(data, raw, bundle.image_reducer)
    config = {**_config_key(bundle.params), "hidden": tuple(bundle.params["hidden"])}

    def reseed(seed):
        with in_strategy(cfg):
            model = fit_mlp(matrices["train"], data.y_log("train"), matrices["val"],
                            data.y_log("val"), config, seed, cfg.budget.mlp.epochs,
                            cfg.budget.mlp.batch_size, name="early_fusion").model
        return lambda part: feats.price_from_log(model.predict(matrices[part], verbose=0))

    return reseed


def train_hgb_with_embeddings(data, cfg, raw: dict, reducers: dict, backbone: str,
                              image_size: int, grid: list[dict] | None = None) -> Trained:
    """Gradient boosting on tabular + photo columns (``hgb_with_embeddings``).

    ``reducers``: {label: fitted reducer}; the one with the lowest validation MAE is kept.
    ``grid``: settings tried for each (default: :func:`shared.models.families.baselines.train_hgb`'s
    search; deliverable 2 passes ``hgb``'s chosen ones, so only the photo columns differ).
    """
    def build_and_fit(params):
        reducer = reducers[params["photo"]]
        return Fitted(baselines.train_hgb(
            data, cfg, name="hgb_with_embeddings", image_features=reduced_features(raw, reducer),
            image_reducer=reducer, backbone=backbone, image_size=image_size,
            deliverable="deliverable2", grid=grid))

    search = tune_on_validation(build_and_fit, [{"photo": label} for label in reducers],
                                lambda trained, _: trained.predict("val"), data.y_eur("val"))
    trained = search.model  # only the kept candidate is evaluated
    trained.bundle.params["photo_reduction"] = search.params["photo"]
    trained.bundle.params["photo_candidates_val_mae"] = {t["photo"]: t["val_mae"]
                                                         for t in search.trials}
    return trained


def hgb_with_embeddings_reseed(run, bundle: ModelBundle):
    """``seed -> predict(part)``: the gradient boosting refitted with another seed.<<"""
    data, cfg = run.data, run.cfg
    photo = reduced_features(run.features(bundle.backbone, bundle.image_size),
                             bundle.image_reducer)
    X = {part: np.hstack([data.tabular[part], photo[part]]) for part in PARTS}
    settings = {key: bundle.params[key] for key in baselines.HGB_SPACE}

    def reseed(seed):
        model = baselines.fit_hgb(X["train"], data.y_log("train"), X["val"], data.y_log("val"),
                                  settings, cfg.budget.baselines.hgb_max_iter, seed)
        return lambda part: feats.price_from_log(model.predict(X[part]))

    return reseed


def _fusion_photos(run) -> dict:
    """The run's cached ImageNet features at the fusion models' photo side."""
    return run.features(DEFAULT_BACKBONE, default_image_size(run.cfg))


def _train_early(run) -> Trained:
    trained, run.shared["photo_reducers"] = train_early_fusion(
        run.data, run.cfg, _fusion_photos(run), DEFAULT_BACKBONE, default_image_size(run.cfg),
        base_config=config_of(run.bundle("mlp").params))
    return trained


def _train_hgb_embeddings(run) -> Trained:
    """Early fusion's reduction and the price score as candidates, with ``hgb``'s settings.<<"""
    early = run.trained["early_fusion"].bundle
    chosen = reducer_label(early.image_reducer)
    candidates = {chosen: early.image_reducer}
    score = run.shared.get("photo_reducers", {}).get("score")
    if score is not None and chosen != "score":
        candidates["score"] = score
    hgb = run.bundle("hgb").params
    return train_hgb_with_embeddings(run.data, run.cfg, _fusion_photos(run), candidates,
                                     DEFAULT_BACKBONE, default_image_size(run.cfg),
                                     grid=[{key: hgb[key] for key in baselines.HGB_SPACE}])


FAMILY = Family(
    name="early_fusion",
    models=(
        ModelSpec("early_fusion", "fusion", "deliverable2", order=110,
                  inputs=("tabular", "image_features"), train=_train_early,
                  reseed=early_fusion_reseed, neural=True, base="mlp",
                  description="photo columns joined to the tabular ones, one MLP"),
        ModelSpec("hgb_with_embeddings", "fusion", "deliverable2", order=120,
                  inputs=("tabular", "image_features"), train=_train_hgb_embeddings,
                  reseed=hgb_with_embeddings_reseed, after=("early_fusion",), base="hgb",
                  description="gradient boosting on the tabular and photo columns"),
    ),
    sizes=Sizes(full=EarlyFusionSizes(components=(8, 16, 32, 64, "score"), extra_configs=1),
                smoke=EarlyFusionSizes(components=(8, "score"), extra_configs=1)),
    trusted_types=(*baselines.FAMILY.trusted_types, *TRUSTED_TYPES),
)

"""Early fusion: photo features joined to the tabular features *before* any learning.

``early_fusion``
    Each listing's cached 1280-d backbone vector (EfficientNet-Lite0, ImageNet weights, frozen) is
    reduced to a few columns, fitted on the training rows only, appended to the tabular matrix,
    and one MLP learns from the joined vector. Two kinds of reduction are candidates:

    * PCA: standardised, then ``k`` whitened principal components (unsupervised);
    * a *photo price score* (:class:`PhotoPriceScore`, supervised): one column, the prediction of
      a ridge regression of log price on the photo vector. The training rows get out-of-fold
      scores (the ridge never scores a row it was fitted on), so the MLP learns how far to trust
      the score from scores as noisy as those it will see on new listings.

    The reduction and the MLP configuration are chosen on validation, in two stages: the
    reduction with the deliverable-1 MLP's configuration, then a few other configurations with
    the chosen reduction.

``hgb_with_embeddings``
    Gradient boosting on the tabular features plus photo columns: the non-neural yardstick for
    fusion. Its grid is deliverable 1's (``shared.models.baselines.train_hgb``); the photo columns
    are early fusion's chosen reduction or the photo price score, whichever validation prefers
    (trees use a single informative column more easily than whitened components).

Shapes: tabular (n, d_tab) + reduced photo features (n, k) -> (n, d_tab + k) float32 (k = 1 for
the photo price score).
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from shared.models import baselines
from shared.models.mlp import ORIGINAL, fit_mlp, sample_configs
from shared import features as feats
from shared.split import PART_NAMES as PARTS
from shared.bundles import ModelBundle
from shared.experiment import Trained
from shared.search import Fitted, tune_on_validation
from shared.training import in_strategy, stopped_by, under_strategy

#: Photo reductions tried: k PCA components, or "score" (:class:`PhotoPriceScore`)
#: (``cfg.budget.fusion_components``; the MLP configurations tried at the chosen reduction,
#: besides deliverable 1's: ``cfg.budget.early_extra_configs``.)
SCORE_ALPHAS = tuple(np.logspace(0, 5, 11))


def make_image_reducer(n_components: int, seed: int) -> Pipeline:
    """Unfitted reducer: (n, D) raw backbone features -> (n, k) whitened principal components.

    Standardising first stops the few high-variance backbone channels from dominating the PCA;
    whitening gives every component unit variance, on the scale of the standardised tabular
    columns. Fit it on the training rows only.

    It computes in float64 (the cached features are float32): a float32 PCA rounds differently
    with each BLAS kernel and thread count (OpenBLAS picks them from the CPU it runs on), so the
    same features gave other components, sometimes of the other sign, on another machine, and
    the MLP trained on them ended elsewhere (another test MAE, another reduction chosen for
    ``hgb_with_embeddings``). In float64 those differences
    stay far below float32 resolution, so the (n, k) float32 outputs are the same everywhere.
    """
    return Pipeline([("float64", FunctionTransformer(_as_float64, feature_names_out="one-to-one")),
                     ("scale", StandardScaler()),
                     ("pca", PCA(n_components=n_components, whiten=True, svd_solver="full",
                                 random_state=seed))])


def _as_float64(X) -> np.ndarray:
    return np.asarray(X, dtype=np.float64)


class PhotoPriceScore(BaseEstimator, TransformerMixin):
    """Supervised reduction: (n, D) backbone features -> (n, 1) standardised photo price score.

    ``fit(X, y)`` fits standardisation + ridge (alpha by efficient leave-one-out on the rows
    given) of ``y`` (log price) on ``X``, and keeps ``oof_`` (n, 1): the *out-of-fold* scores of
    those rows (``n_folds`` seeded folds, same alpha), to train the downstream model on.
    ``transform`` scores new rows with the ridge fitted on all rows. Scores are centred and
    scaled by the out-of-fold scores' mean and standard deviation.
    """

    def __init__(self, alphas=SCORE_ALPHAS, n_folds: int = 5, seed: int = 0):
        self.alphas = alphas
        self.n_folds = n_folds
        self.seed = seed

    def fit(self, X, y):
        X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
        self.model_ = make_pipeline(StandardScaler(), RidgeCV(alphas=self.alphas)).fit(X, y)
        self.alpha_ = float(self.model_[-1].alpha_)
        folds = KFold(self.n_folds, shuffle=True, random_state=self.seed)
        oof = cross_val_predict(make_pipeline(StandardScaler(), Ridge(alpha=self.alpha_)), X, y,
                                cv=folds)
        self.center_, self.scale_ = float(oof.mean()), float(oof.std() or 1.0)
        self.oof_ = ((oof - self.center_) / self.scale_).reshape(-1, 1).astype(np.float32)
        return self

    def transform(self, X):
        score = self.model_.predict(np.asarray(X, dtype=np.float64))
        return ((score - self.center_) / self.scale_).reshape(-1, 1).astype(np.float32)

    def get_feature_names_out(self, input_features=None):
        return np.asarray(["photo_price_score"], dtype=object)


def fit_image_reducer(raw: dict, n_components, seed: int, y_train=None):
    """The reducer fitted on the training rows ``raw["train"]`` (n_train, D).

    ``n_components``: an int (PCA, capped at what the rows allow) or ``"score"``
    (:class:`PhotoPriceScore`, which needs ``y_train``, the training log prices (n_train,)).
    """
    if n_components == "score":
        return PhotoPriceScore(seed=seed).fit(raw["train"], y_train)
    k = int(min(n_components, raw["train"].shape[0] - 1, raw["train"].shape[1]))
    return make_image_reducer(k, seed).fit(raw["train"])


def reduced_features(raw: dict, reducer) -> dict[str, np.ndarray]:
    """{"train"/"val"/"test": (n, k) float32} photo columns; the training rows get the reducer's
    out-of-fold values when it has them (a supervised reducer must not score its own rows)."""
    out = {part: np.asarray(reducer.transform(raw[part]), dtype=np.float32) for part in raw}
    if getattr(reducer, "oof_", None) is not None:
        out["train"] = reducer.oof_
    return out


def reducer_label(reducer) -> str:
    """"pca-<k>" or "score"."""
    if isinstance(reducer, PhotoPriceScore):
        return "score"
    return f"pca-{reducer.named_steps['pca'].n_components_}"


def joined_matrices(data, raw: dict, reducer) -> dict[str, np.ndarray]:
    """{part: (n, d_tab + k) float32}: tabular columns first, then photo columns."""
    photo = reduced_features(raw, reducer)
    return {part: np.hstack([data.tabular[part], photo[part]]) for part in PARTS}


def _config_key(config: dict) -> dict:
    return {"hidden": list(config["hidden"]), "dropout": config["dropout"], "l2": config["l2"],
            "learning_rate": config["learning_rate"]}


@under_strategy
def train_early_fusion(data, cfg, raw: dict, backbone: str, image_size: int,
                       base_config: dict | None = None, log=print) -> tuple[Trained, dict]:
    """Search ``k`` then the MLP on validation.

    Returns (trained ``early_fusion``, {label: fitted reducer} of every photo reduction tried,
    e.g. "pca-8", "score": all fitted on the training rows only).

    Photo reductions tried, extra MLP configurations and epochs come from ``cfg.budget``.

    Args:
        raw: {"train"/"val"/"test": (n, D) float32} raw cached backbone features.
        base_config: MLP configuration to start from (deliverable 1's chosen ``mlp``), keys
            hidden / dropout / l2 / learning_rate.
    """
    components = cfg.budget.fusion_components
    n_extra = cfg.budget.early_extra_configs
    epochs = cfg.budget.mlp_epochs
    base = dict(base_config or ORIGINAL)
    base["hidden"] = tuple(base["hidden"])
    start = time.perf_counter()
    y_train, y_val = data.y_log("train"), data.y_log("val")
    reducers, matrices = {}, {}

    def inputs_for(k):
        if k not in matrices:
            reducers[k] = fit_image_reducer(raw, k, cfg.seed, y_train)
            matrices[k] = joined_matrices(data, raw, reducers[k])
        return matrices[k]

    def build_and_fit(params):
        X = inputs_for(params["n_components"])
        return fit_mlp(X["train"], y_train, X["val"], y_val, params["config"],
                       params.get("seed", cfg.seed), epochs, cfg.budget.mlp_batch_size,
                       name="early_fusion")

    def predict_val(model, params):
        return feats.price_from_log(model.predict(matrices[params["n_components"]]["val"],
                                                  verbose=0))

    # Stage 1: the photo reduction, with deliverable 1's MLP configuration.
    stage1 = [{"n_components": k, "config": base} for k in components]
    best = tune_on_validation(build_and_fit, stage1, predict_val, data.y_eur("val"))
    trials1 = best.trials
    k = best.params["n_components"]
    log(f"  early fusion: photo reduction {k} chosen on validation (validation MAE: "
        + ", ".join(f"{t['n_components']}: {t['val_mae']}" for t in trials1) + ")")
    # Stage 2: a few other MLP configurations at that k (seeded draws, deliverable 1's space).
    extra = [c for c in sample_configs(n_extra + 2, cfg.seed + 1000)
             if _config_key(c) != _config_key(base)][:n_extra]
    trials2 = []
    if extra:
        stage2 = tune_on_validation(build_and_fit, [{"n_components": k, "config": c} for c in extra],
                                    predict_val, data.y_eur("val"))
        trials2 = stage2.trials
        if min(t["val_mae"] for t in trials2) < min(t["val_mae"] for t in trials1):
            best = stage2
    trials = [{"photo": t["n_components"] if t["n_components"] == "score"
               else f"pca-{t['n_components']}", **_config_key(t["config"]), "val_mae": t["val_mae"]}
              for t in trials1 + trials2]
    reducer = reducers[k]
    if isinstance(reducer, PhotoPriceScore):
        photo_params = {"photo_reduction": "score", "n_components": 1, "score_alpha": reducer.alpha_}
    else:
        photo_params = {"photo_reduction": reducer_label(reducer),
                        "n_components": int(reducer.named_steps["pca"].n_components_),
                        "pca_explained_variance": round(float(np.sum(
                            reducer.named_steps["pca"].explained_variance_ratio_)), 4)}
    bundle = ModelBundle(
        "early_fusion", ("tabular", "image_features"), best.model, data.preprocessor,
        image_reducer=reducer, backbone=backbone, image_size=image_size, deliverable="deliverable2",
        params={**photo_params, **_config_key(best.params["config"]),
                "epochs_run": len(best.history["loss"]), "max_epochs": epochs,
                "stopped_by": stopped_by(best.history, epochs),
                "input_dim": int(matrices[k]["train"].shape[1]),
                "backbone": backbone, "image_size": image_size, "trials": trials})
    def predictor(model):
        return lambda part: feats.price_from_log(model.predict(matrices[k][part], verbose=0))

    def reseed(seed):
        with in_strategy(cfg):
            return predictor(build_and_fit({**best.params, "seed": seed}).model)

    return (Trained(bundle, time.perf_counter() - start, history=best.history,
                    predict=predictor(best.model), reseed=reseed),
            {reducer_label(r): r for r in reducers.values()})


def train_hgb_with_embeddings(data, cfg, raw: dict, reducers: dict, backbone: str,
                              image_size: int, grid: list[dict] | None = None) -> Trained:
    """Gradient boosting on tabular + photo columns (``hgb_with_embeddings``).

    Args:
        reducers: {label: fitted reducer} candidates (early fusion's chosen PCA and the photo
            price score); the one with the lowest validation MAE is kept.
        grid: the gradient-boosting settings tried for each (default: the random search of
            :func:`shared.models.baselines.train_hgb`; deliverable 2 passes ``hgb``'s chosen
            settings, so only the photo columns differ). Trees are early-stopped on validation.
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

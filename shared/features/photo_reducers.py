"""Photo reductions: the (n, D) backbone vectors of the listing photos cut to a few columns,
fitted on the training rows only: whitened PCA (:func:`make_image_reducer`) or the supervised
*photo price score* (:class:`PhotoPriceScore`).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

#: Ridge penalties of the photo price score (chosen by RidgeCV on the training rows).
SCORE_ALPHAS = tuple(np.logspace(0, 5, 11))


def make_image_reducer(n_components: int, seed: int) -> Pipeline:
    """Unfitted reducer: (n, D) raw backbone features -> (n, k) whitened principal components.

    Standardising first stops a few high-variance channels from dominating; whitening puts the
    components on the scale of the standardised tabular columns. It computes in float64: a float32
    PCA rounds differently with each BLAS kernel and thread count, which gave other components
    (even signs) on other machines; in float64 the float32 outputs are the same everywhere.
    """
    return Pipeline([("float64", FunctionTransformer(_as_float64, feature_names_out="one-to-one")),
                     ("scale", StandardScaler()),
                     ("pca", PCA(n_components=n_components, whiten=True, svd_solver="full",
                                 random_state=seed))])


def _as_float64(X) -> np.ndarray:
    return np.asarray(X, dtype=np.float64)


class PhotoPriceScore(BaseEstimator, TransformerMixin):
    """Supervised reduction: (n, D) backbone features -> (n, 1) standardised photo price score.

    ``fit(X, y)`` fits standardisation + ridge (alpha by leave-one-out) of ``y`` (log price) and
    keeps ``oof_`` (n, 1), the out-of-fold scores of those rows (``n_folds`` seeded folds, same
    alpha), so the ridge never scores a row it was fitted on. ``transform`` uses the ridge fitted
    on all rows. Scores are standardised by the out-of-fold mean and standard deviation.
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
    """The reducer fitted on ``raw["train"]`` (n_train, D): an int ``n_components`` gives PCA
    (capped at what the rows allow), ``"score"`` a :class:`PhotoPriceScore` on ``y_train``."""
    if n_components == "score":
        return PhotoPriceScore(seed=seed).fit(raw["train"], y_train)
    k = int(min(n_components, raw["train"].shape[0] - 1, raw["train"].shape[1]))
    return make_image_reducer(k, seed).fit(raw["train"])


def reduced_features(raw: dict, reducer) -> dict[str, np.ndarray]:
    """{"train"/"val"/"test": (n, k) float32}; the training rows get the reducer's out-of-fold
    values when it has them."""
    out = {part: np.asarray(reducer.transform(raw[part]), dtype=np.float32) for part in raw}
    if getattr(reducer, "oof_", None) is not None:
        out["train"] = reducer.oof_
    return out


def reducer_label(reducer) -> str:
    """"pca-<k>" or "score"."""
    if isinstance(reducer, PhotoPriceScore):
        return "score"
    return f"pca-{reducer.named_steps['pca'].n_components_}"


#: What a fitted reducer holds that skops does not trust by itself.
TRUSTED_TYPES = (PhotoPriceScore, _as_float64)

"""The deliverable-1 models deliverable 2 compares against (and builds on): load them, or train them.

Deliverable 2 needs, on the same split and the same usable rows:

* the tabular-only references ``mlp`` and ``hgb``;
* the photo-only references: the deliverable-1 image models, of which the best *on validation* is
  the image-only reference; the best transfer model (``transfer_frozen`` or ``transfer_finetuned``)
  is also the image branch of ``late_fusion_from_branches``.

A saved model is reused only when it loads and was fitted on this split's training rows. Bundle
metadata does not record the split, so this is checked on the fitted state the bundle carries:

* a tabular model's preprocessor must transform the training rows exactly as the preprocessor
  :func:`shared.experiment.prepare` just fitted on them (the scaler means, KNN neighbours and
  one-hot levels all depend on which rows were the training rows);
* a transfer model's feature standardisation (``image_reducer`` or the ``feature_standardisation``
  layer) must hold the mean of the training rows' backbone features.

Anything missing or stale is trained with :func:`deliverable1.train.train_all` (which saves it);
``cnn_scratch`` is used when present but never trained here (it is far behind transfer learning in
deliverable 1 and would cost minutes).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from shared.modeling import ModelBundle, ModelLoadError, under_strategy
from shared.split import SPLIT_FILE

TABULAR_REFERENCES = ("mlp", "hgb")
TRANSFER_MODELS = ("transfer_frozen", "transfer_finetuned")
IMAGE_REFERENCES = ("cnn_scratch", *TRANSFER_MODELS)


@dataclass
class References:
    """The deliverable-1 bundles in use, and how each was obtained."""

    bundles: dict[str, ModelBundle]
    origin: dict[str, str]               # name -> "reused" | "trained" | reason it was retrained
    val_mae: dict[str, float] = field(default_factory=dict)   # image candidates, EUR
    best_image: str = ""                 # best deliverable-1 image model on validation
    best_transfer: str = ""              # best transfer model on validation (fusion image branch)


def _matches_tabular(bundle: ModelBundle, exp) -> bool:
    if bundle.preprocessor is None:
        return False
    names = list(map(str, bundle.preprocessor.get_feature_names_out()))
    if names != list(map(str, exp.preprocessor.get_feature_names_out())):
        return False
    mine = np.asarray(bundle.preprocessor.transform(exp.parts["train"].frame), dtype=np.float32)
    return mine.shape == exp.tabular["train"].shape and np.allclose(mine, exp.tabular["train"],
                                                                    atol=1e-5)


def feature_standardisation(bundle: ModelBundle) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, variance) of the raw backbone features a transfer model standardises with, each (D,);
    None when the bundle holds neither a fitted scaler nor a ``feature_standardisation`` layer."""
    scaler = bundle.image_reducer
    if scaler is not None and hasattr(scaler, "mean_") and hasattr(scaler, "var_"):
        return np.asarray(scaler.mean_), np.asarray(scaler.var_)
    if bundle.is_keras:
        try:
            layer = bundle.estimator.get_layer("feature_standardisation")
        except ValueError:
            return None
        mean = getattr(layer, "mean", None)
        var = getattr(layer, "variance", None)
        if mean is None or var is None:  # built from given statistics: they are not weights
            mean, var = layer.input_mean, layer.input_variance
        return (np.asarray(keras_to_numpy(mean), dtype=np.float64).reshape(-1),
                np.asarray(keras_to_numpy(var), dtype=np.float64).reshape(-1))
    return None


def keras_to_numpy(value) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.convert_to_numpy(value))


def _matches_image(bundle: ModelBundle, exp, raw_features) -> bool:
    """``raw_features(size) -> {"train": (n, D)}``: the backbone features of the training rows."""
    if bundle.name == "cnn_scratch":
        # Nothing fitted outside the network to compare: reuse it only if it was saved after the
        # split file was (re)made, i.e. trained on this split.
        split_file = exp.models_dir / SPLIT_FILE
        saved = exp.models_dir / bundle.name / "metadata.json"
        return split_file.is_file() and saved.stat().st_mtime >= split_file.stat().st_mtime
    stats = feature_standardisation(bundle)
    if stats is None:
        return False
    train = raw_features(bundle.image_size)["train"]
    return stats[0].shape == (train.shape[1],) and np.allclose(stats[0], train.mean(axis=0),
                                                               rtol=1e-4, atol=1e-4)


def _try_load(exp, name: str):
    directory = exp.models_dir / name
    if not (directory / "metadata.json").is_file():
        return None, "missing"
    try:
        return ModelBundle.load(directory), "reused"
    except ModelLoadError as exc:
        return None, f"retrained: {exc}"


@under_strategy
def load_or_train(exp, raw_features, train_missing=None, log=print) -> References:
    """Load the deliverable-1 references from ``exp.models_dir`` or train the missing/stale ones.

    Args:
        raw_features: ``image_size -> {"train"/"val"/"test": (n, D) float32}`` cached backbone
            features (deliverable-1 transfer models are checked against the training part).
        train_missing: ``(exp, names) -> None`` trains and saves the named deliverable-1 models
            (default :func:`deliverable1.train.train_all`).

    Every reference ends up in ``exp.results`` with validation and test metrics on this split
    (image models: only the best on validation, the image-only reference).
    """
    if train_missing is None:
        from deliverable1.train import train_all

        def train_missing(exp_, names):
            train_all(exp_, include=tuple(names), log=log)

    bundles, origin = {}, {}
    for name in (*TABULAR_REFERENCES, *IMAGE_REFERENCES):
        bundle, how = _try_load(exp, name)
        if bundle is not None:
            ok = (_matches_tabular(bundle, exp) if name in TABULAR_REFERENCES
                  else _matches_image(bundle, exp, raw_features))
            if not ok:
                bundle, how = None, "retrained: saved model was fitted on other training rows"
        if bundle is not None:
            bundles[name] = bundle
        origin[name] = how
    # cnn_scratch is optional; a stale transfer_finetuned needs its transfer_frozen retrained too.
    missing = [n for n in (*TABULAR_REFERENCES, *TRANSFER_MODELS) if n not in bundles]
    if "transfer_finetuned" in missing and "transfer_frozen" not in missing:
        missing.append("transfer_frozen")
    if missing:
        log(f"training the missing deliverable-1 models: {', '.join(missing)}")
        train_missing(exp, missing)
        for name in missing:
            bundles[name] = ModelBundle.load(exp.models_dir / name)
            origin[name] = "trained" if origin[name] == "missing" else origin[name]
    refs = References(bundles, origin)

    # Tabular references: evaluated on this split (those just trained already are).
    for name in TABULAR_REFERENCES:
        if name not in exp.results:
            _evaluate_reused(exp, bundles[name])
    # Image references: the best on validation; the best transfer model is the fusion branch.
    val_pred = {}
    for name in IMAGE_REFERENCES:
        if name in bundles:
            val_pred[name] = (exp.predictions[name]["val"] if name in exp.predictions
                              else bundles[name].predict_eur(exp.parts["val"]))
            refs.val_mae[name] = float(np.mean(np.abs(val_pred[name] - exp.y_eur("val"))))
    refs.best_image = min(refs.val_mae, key=refs.val_mae.get)
    refs.best_transfer = min(TRANSFER_MODELS, key=refs.val_mae.get)
    for name in IMAGE_REFERENCES:
        if name != refs.best_image:
            exp.results.pop(name, None)
            exp.predictions.pop(name, None)
            exp.histories.pop(name, None)
        elif name not in exp.results:
            _evaluate_reused(exp, bundles[name], predictions={"val": val_pred[name]})
    return refs


def _evaluate_reused(exp, bundle: ModelBundle, predictions: dict | None = None) -> None:
    """Score a loaded model on this split's validation and test rows, without saving it again
    (``predictions``: those already made, {"val"/"test": EUR})."""
    start = time.perf_counter()
    exp.evaluate(bundle, train_seconds=0.0, save=False, predictions=predictions)
    record = exp.results[bundle.name]
    record.pop("train_seconds", None)  # trained in an earlier run: its time is not known here
    record["reused"] = True
    record["predict_seconds"] = round(time.perf_counter() - start, 1)

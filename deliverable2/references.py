"""The deliverable-1 models deliverable 2 compares against (and builds on): load them, or train them.

Deliverable 2 needs, on the same split and the same usable rows:

* the tabular-only references ``mlp`` and ``hgb``;
* the photo-only references: the deliverable-1 image models, of which the best *on validation* is
  the image-only reference; the best transfer model (``transfer_frozen`` or ``transfer_finetuned``)
  is also the image branch of ``late_fusion_from_branches``.

A saved model is reused only when it loads and was trained on this split of this data: its
metadata (``trained_on``, written when it was saved) must hold this run's split fingerprint and
seed and the sha256 of this dataset's ``listings.csv``
(:meth:`shared.experiment.Experiment.provenance`). A model saved without them, or on another
split or another version of the data, is retrained. The comparison does not depend on file dates
(which a copy or a checkout changes) nor on re-transforming rows.

Anything missing or stale is trained with :func:`deliverable1.train.train_all` (which saves it);
``cnn_scratch`` is used when present but never trained here (it is far behind transfer learning in
deliverable 1 and would cost minutes).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from shared.modeling import ModelBundle, ModelLoadError, under_strategy

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


def fits_this_split(bundle: ModelBundle, exp) -> bool:
    """True when ``bundle`` was trained on ``exp``'s split of ``exp``'s data (its recorded
    ``trained_on`` equals :meth:`~shared.experiment.Experiment.provenance`)."""
    return bool(bundle.trained_on) and bundle.trained_on == exp.provenance()


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


def _try_load(exp, name: str):
    directory = exp.models_dir / name
    if not (directory / "metadata.json").is_file():
        return None, "missing"
    try:
        return ModelBundle.load(directory), "reused"
    except ModelLoadError as exc:  # the reason, without this machine's path to the models
        return None, "retrained: " + str(exc).replace(str(directory), f"models/{name}")


@under_strategy
def load_or_train(exp, train_missing=None, log=print) -> References:
    """Load the deliverable-1 references from ``exp.models_dir`` or train the missing/stale ones.

    Args:
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
        if bundle is not None and not fits_this_split(bundle, exp):
            bundle, how = None, ("retrained: saved model was trained on another split or another "
                                 "version of the data" if bundle.trained_on else
                                 "retrained: saved model does not record its split")
            if name not in (*TABULAR_REFERENCES, *TRANSFER_MODELS):  # optional: never trained here
                how = how.replace("retrained:", "not used:", 1)
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
            origin[name] = {"missing": "trained", "reused": "retrained with transfer_finetuned"}.get(
                origin[name], origin[name])
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

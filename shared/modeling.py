"""What every model of both deliverables shares: the saved-model bundle and the training loop.

A :class:`ModelBundle` is one trained model plus everything needed to score new listings with it:
the fitted tabular preprocessor, the fitted image-feature reducer, the backbone name and input
size, and metadata. It declares which inputs it consumes:

* ``"tabular"``        the preprocessed listing features, (n, d_tab) float32;
* ``"image_features"`` cached backbone vectors, optionally reduced, (n, d_img) float32;
* ``"image"``          photos streamed from disk, (n, size, size, 3) float32 in [0, 255].

Models consuming several matrix inputs get them concatenated (tabular first); a model consuming
``tabular`` and ``image`` gets a dict ``{"tabular", "image"}`` (two-branch networks).

Saved layout (``models/<name>/``): ``metadata.json``, ``model.keras`` or ``estimator.skops``,
``preprocessor.skops`` and ``image_reducer.skops`` when used, ``intervals.json`` (the
prediction-interval calibration, :mod:`shared.intervals`) when fitted. The metadata records the
feature set version and feature names, so loading a model saved with another feature set fails
clearly, and what the model was trained on (``trained_on``: the split fingerprint and seed, the
sha256 of ``listings.csv``), so a saved model is reused only on the same split of the same data.
Loading runs no code from the folder and checks every file against the sha256 the metadata
records (:mod:`shared.model_files`).
"""

from __future__ import annotations

import functools
import platform
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared import features as feats
from shared.intervals import IntervalCalibration, IntervalError, load_calibration, save_calibration
from shared.model_files import (ModelLoadError, load_keras, load_part, read_metadata, save_part,
                                verify_files, write_metadata)

#: 2: no pickle (skops parts), every file's sha256 in the metadata. 1 (joblib) is refused.
BUNDLE_FORMAT = 2
INPUT_KINDS = ("tabular", "image_features", "image")


@dataclass
class ModelBundle:
    """A trained model with its fitted preprocessing. Predictions are log price (see ``predict_log``)."""

    name: str
    inputs: tuple[str, ...]
    estimator: object
    preprocessor: object | None = None
    image_reducer: object | None = None
    backbone: str | None = None
    image_size: int | None = None
    params: dict = field(default_factory=dict)
    deliverable: str = ""
    intervals: IntervalCalibration | None = None  # None: saved without interval calibration
    #: what it was fitted on: {"split_fingerprint", "split_seed", "listings_sha256"} (empty when
    #: unknown); set by :meth:`shared.experiment.Experiment.evaluate` before saving, and compared
    #: with the current run's to decide whether a saved model can be reused.
    trained_on: dict = field(default_factory=dict)

    @property
    def is_keras(self) -> bool:
        return hasattr(self.estimator, "save") and hasattr(self.estimator, "layers")

    # ------------------------------------------------------------------ inputs
    def tabular_matrix(self, dataset) -> np.ndarray:
        """(n, d_tab) float32 from the fitted preprocessor."""
        return np.asarray(self.preprocessor.transform(dataset.frame), dtype=np.float32)

    def image_feature_matrix(self, dataset, progress: bool = False) -> np.ndarray:
        """(n, d_img) float32: cached backbone features, reduced if a reducer was fitted."""
        from shared.feature_cache import extract_features

        vectors, _ = extract_features(list(dataset.image_paths), self.backbone,
                                      self.image_size, progress=progress)
        if self.image_reducer is not None:
            vectors = self.image_reducer.transform(vectors)
        return np.asarray(vectors, dtype=np.float32)

    def predict_log(self, dataset, batch_size: int = 32) -> np.ndarray:
        """Predicted log price for every row of ``dataset``, shape (n,), float64."""
        matrices = []
        if "tabular" in self.inputs:
            matrices.append(self.tabular_matrix(dataset))
        if "image_features" in self.inputs:
            matrices.append(self.image_feature_matrix(dataset))
        if "image" in self.inputs:
            from shared.images import make_image_dataset

            extra = matrices[0] if matrices else None
            data = make_image_dataset(dataset.image_paths, extra_inputs=extra,
                                      image_size=self.image_size, batch_size=batch_size)
            output = self.estimator.predict(data, verbose=0)
        else:
            x = np.hstack(matrices) if len(matrices) > 1 else matrices[0]
            output = (self.estimator.predict(x, batch_size=256, verbose=0) if self.is_keras
                      else self.estimator.predict(x))
        return np.asarray(output, dtype=np.float64).reshape(-1)

    def predict_eur(self, dataset, batch_size: int = 32) -> np.ndarray:
        """Predicted nightly price in euros, shape (n,)."""
        return feats.price_from_log(self.predict_log(dataset, batch_size))

    # ------------------------------------------------------------------ persistence
    def metadata(self) -> dict:
        names = (list(map(str, self.preprocessor.get_feature_names_out()))
                 if self.preprocessor is not None else [])
        return {
            "format": BUNDLE_FORMAT, "name": self.name, "deliverable": self.deliverable,
            "inputs": list(self.inputs), "estimator": "keras" if self.is_keras else "sklearn",
            "feature_set_version": feats.FEATURE_SET_VERSION, "feature_names": names,
            "backbone": self.backbone, "image_size": self.image_size, "params": self.params,
            "trained_on": self.trained_on,
            "target": "log(price EUR)", "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "python": platform.python_version(),
        }

    def save(self, directory: Path) -> Path:
        """Write the bundle into ``directory`` (replaced as a whole: never half old, half new)."""
        directory = Path(directory)
        staging = directory.with_name(f".{directory.name}.staging")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        if self.is_keras:
            self.estimator.save(staging / "model.keras")
        else:
            save_part(self.estimator, staging / "estimator.skops")
        if self.preprocessor is not None:
            save_part(self.preprocessor, staging / "preprocessor.skops")
        if self.image_reducer is not None:
            save_part(self.image_reducer, staging / "image_reducer.skops")
        if self.intervals is not None:
            save_calibration(self.intervals, staging)
        write_metadata(staging, self.metadata())  # last: records every file's sha256
        backup = directory.with_name(f".{directory.name}.old")
        shutil.rmtree(backup, ignore_errors=True)
        if directory.exists():
            directory.rename(backup)
        staging.rename(directory)
        shutil.rmtree(backup, ignore_errors=True)
        return directory

    @classmethod
    def load(cls, directory: Path) -> "ModelBundle":
        """Load a saved bundle; raise :class:`ModelLoadError` with the reason if it cannot be used."""
        directory = Path(directory)
        meta_path = directory / "metadata.json"
        if not meta_path.is_file():
            raise ModelLoadError(f"{directory} is not a saved model (no metadata.json). "
                                 "Train one with `nox -s deliverable1` or `nox -s deliverable2`.")
        meta = read_metadata(directory, BUNDLE_FORMAT)
        if meta.get("feature_set_version") != feats.FEATURE_SET_VERSION:
            raise ModelLoadError(
                f"{directory} was saved with feature set {meta.get('feature_set_version')!r}, but "
                f"this version of the project builds {feats.FEATURE_SET_VERSION!r}: the inputs "
                "differ, so its predictions would be wrong. Retrain it with the current project.")
        keras_model = meta.get("estimator") == "keras"
        verify_files(directory, meta, required=["model.keras" if keras_model else "estimator.skops"])
        preprocessor = _load_part(directory / "preprocessor.skops")
        if preprocessor is not None:
            names = list(map(str, preprocessor.get_feature_names_out()))
            if names != meta.get("feature_names"):
                raise ModelLoadError(f"{directory}: the saved preprocessor's feature names do not "
                                     "match its metadata; the model directory is inconsistent.")
        if keras_model:
            estimator = load_keras(directory / "model.keras")
        else:
            estimator = load_part(directory / "estimator.skops")
        try:
            intervals = load_calibration(directory)
        except IntervalError as exc:
            raise ModelLoadError(f"{exc}; retrain the model") from None
        return cls(name=meta["name"], inputs=tuple(meta["inputs"]), estimator=estimator,
                   preprocessor=preprocessor, image_reducer=_load_part(
                       directory / "image_reducer.skops"), backbone=meta.get("backbone"),
                   image_size=meta.get("image_size"), params=meta.get("params", {}),
                   deliverable=meta.get("deliverable", ""), intervals=intervals,
                   trained_on=meta.get("trained_on", {}))


def _load_part(path: Path):
    return load_part(path) if path.is_file() else None  # verified: present iff recorded


# --------------------------------------------------------------------------- distribution strategy

def strategy_of(owner=None):
    """The ``tf.distribute.Strategy`` of ``owner``: an :class:`~shared.experiment.Experiment` or
    a :class:`~shared.devices.DeviceInfo` (their ``strategy`` attribute), a strategy itself, or
    None / an owner without one: the current strategy (the default one outside any scope)."""
    import tensorflow as tf

    if isinstance(owner, tf.distribute.Strategy):
        return owner
    strategy = getattr(owner, "strategy", None)
    return strategy if strategy is not None else tf.distribute.get_strategy()


@contextmanager
def in_strategy(owner=None):
    """``with in_strategy(exp): ...`` builds, compiles (and may fit) Keras models inside
    ``strategy.scope()`` of ``owner`` (see :func:`strategy_of`); yields the strategy. Models built
    there keep their variables mirrored on every replica, and ``fit`` / ``predict`` split each
    global batch between the replicas. With the default strategy (one device) it changes nothing."""
    strategy = strategy_of(owner)
    with strategy.scope():
        yield strategy


def under_strategy(step):
    """Decorator for a step ``step(exp, ...)`` of a training run: the whole step (Keras models
    built, loaded, compiled, fitted, evaluated) runs inside ``exp.strategy.scope()``. Nested
    steps of the same experiment re-enter the same scope, which TensorFlow allows. This is how
    every model of both deliverables is built under the run's strategy."""

    @functools.wraps(step)
    def run_in_scope(exp, *args, **kwargs):
        with in_strategy(exp):
            return step(exp, *args, **kwargs)

    return run_in_scope


def replicas_of(model) -> int:
    """Number of replicas training ``model`` in sync (1 unless it was built inside the scope of
    a multi-device or multi-worker strategy)."""
    return int(model.distribute_strategy.num_replicas_in_sync)


# --------------------------------------------------------------------------- Keras building blocks

def batch_normalization(name: str):
    """The batch-norm layer of every model built here.

    Built under a strategy with several replicas, it normalises with the statistics of the
    *global* batch (``synchronized=True``: one all-reduce of the per-channel sums per layer and
    step), so a distributed step computes what one device computes on the global batch;
    otherwise each replica would normalise with its own share of the batch. On one device it is
    the plain layer (the synchronised statistics are only used in training mode; prediction
    uses the moving averages either way).
    """
    import keras
    import tensorflow as tf

    several = tf.distribute.has_strategy() and tf.distribute.get_strategy().num_replicas_in_sync > 1
    if several:
        return keras.layers.BatchNormalization(name=name, synchronized=True)
    return keras.layers.BatchNormalization(name=name)


def dense_block(x, units: int, dropout: float, l2: float, name: str):
    """Dense -> batch norm -> ReLU -> dropout, the unit of every MLP in the project."""
    import keras

    x = keras.layers.Dense(units, kernel_regularizer=keras.regularizers.l2(l2) if l2 else None,
                           name=f"{name}_dense")(x)
    x = batch_normalization(f"{name}_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return keras.layers.Dropout(dropout, name=f"{name}_dropout")(x) if dropout else x


def regression_output(x, target_mean: float, name: str = "log_price", l2: float = 0.0):
    """Final Dense(1) in float32 (safe under mixed precision), bias initialised at the mean log
    price so training starts from the mean predictor instead of from zero; optional L2 on its
    kernel (for a linear model this is what makes it ridge regression)."""
    import keras

    return keras.layers.Dense(1, dtype="float32", name=name,
                              kernel_regularizer=keras.regularizers.l2(l2) if l2 else None,
                              bias_initializer=keras.initializers.Constant(target_mean))(x)


def build_mlp(input_dim: int, hidden: tuple[int, ...], dropout: float, l2: float,
              target_mean: float, name: str = "mlp"):
    """Tabular MLP: (batch, input_dim) float32 -> (batch, 1) log price."""
    import keras

    inputs = keras.Input(shape=(input_dim,), name="features")
    x = inputs
    for i, units in enumerate(hidden):
        x = dense_block(x, units, dropout, l2, name=f"hidden{i + 1}")
    return keras.Model(inputs, regression_output(x, target_mean, l2=l2), name=name)


def ridge_path(X: np.ndarray, y: np.ndarray, alphas) -> tuple[np.ndarray, float]:
    """Closed-form ridge regression for several penalties at once (one SVD).

    Args:
        X: (n, d) float, columns standardised on these (training) rows, so mean zero.
        y: (n,) targets (log price).
        alphas: penalties on ``||w||^2`` added to the *summed* squared error.

    Returns:
        (coefs, intercept): coefs (len(alphas), d), intercept = mean(y) (unpenalised).
        With Keras's mean-squared-error loss the same model is ``l2 = alpha / n``.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    intercept = float(y.mean())
    u, s, vt = np.linalg.svd(X - X.mean(axis=0), full_matrices=False)
    uty = u.T @ (y - intercept)
    coefs = np.stack([vt.T @ (s / (s ** 2 + alpha) * uty) for alpha in alphas])
    return coefs, intercept


def linear_head(coef: np.ndarray, intercept: float, l2: float = 0.0, name: str = "linear_head"):
    """A Keras linear model (batch, d) -> (batch, 1) holding given weights (e.g. from
    :func:`ridge_path`); ``l2`` keeps the same penalty if it is trained further (fine-tuning)."""
    model = build_mlp(len(coef), (), 0.0, l2, target_mean=intercept, name=name)
    model.get_layer("log_price").set_weights([np.asarray(coef, dtype=np.float32).reshape(-1, 1),
                                              np.array([intercept], dtype=np.float32)])
    return model


def compile_regressor(model, learning_rate: float):
    """Adam + mean squared error on log price; MAE on log price tracked too.

    ``learning_rate`` is the one tuned on one device; on several replicas it is scaled by
    :func:`shared.devices.scaled_learning_rate`. Call it inside the strategy scope the model was
    built in (the optimiser's variables are created there).
    """
    import keras

    from shared.devices import scaled_learning_rate

    rate = scaled_learning_rate(learning_rate, replicas_of(model))
    model.compile(optimizer=keras.optimizers.Adam(rate), loss="mse",
                  metrics=[keras.metrics.MeanAbsoluteError(name="mae_log")])
    return model


def fit_regressor(model, train, validation, epochs: int, patience: int = 10,
                  batch_size: int | None = None, verbose: int = 0, seed: int = 0) -> dict:
    """Fit with early stopping (best weights restored) and LR reduction on validation loss.

    ``train`` / ``validation`` are (x, y) tuples of arrays (x may be a dict of arrays) or
    tf.data datasets (already batched by the global batch size). Arrays are wrapped once in a
    tf.data pipeline (training rows reshuffled every epoch with ``seed``; ``batch_size`` rows per
    replica, default 32, i.e. batches of :func:`shared.devices.global_batch_size`): handing
    numpy arrays to Keras makes it rebuild its input pipeline every epoch, which dominated the
    training time of small heads (109 vs 42 ms per epoch for the transfer head on 569 rows,
    measured by the benchmark run of 2026-11-27 00:58 UTC before this change).
    Returns the Keras history dict (per-epoch lists).
    """
    import keras

    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                      restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                          patience=max(2, patience // 3), min_lr=1e-6),
    ]
    from shared.devices import global_batch_size

    replicas = replicas_of(model)
    if isinstance(train, tuple):
        train = arrays_dataset(train, global_batch_size(batch_size or 32, replicas), shuffle=True,
                               seed=seed)
    if isinstance(validation, tuple):
        validation = arrays_dataset(validation, global_batch_size(max(batch_size or 32, 256),
                                                                  replicas))
    history = model.fit(train, validation_data=validation, epochs=epochs, shuffle=False,
                        callbacks=callbacks, verbose=verbose)  # the dataset shuffles itself
    return {k: [float(v) for v in values] for k, values in history.history.items()}


def arrays_dataset(arrays: tuple, batch_size: int, shuffle: bool = False, seed: int = 0):
    """(x, y) arrays -> a batched tf.data.Dataset, built once and reused by every epoch.

    ``x`` is (n, d) or a dict of (n, ...) arrays; ``y`` is (n,). Values are cast to float32.
    With ``shuffle`` the rows are reshuffled every epoch (seeded).
    """
    import tensorflow as tf

    x, y = arrays
    to32 = (lambda a: np.asarray(a, dtype=np.float32))
    x = {k: to32(v) for k, v in x.items()} if isinstance(x, dict) else to32(x)
    y = to32(y)
    data = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        data = data.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------- validation search

@dataclass
class SearchResult:
    """The outcome of :func:`tune_on_validation`.

    ``model`` / ``params`` / ``history``: the winner (``history`` None for models without one);
    ``trials``: one record per candidate in the order tried, ``{**describe(params), "val_mae"}``
    plus ``epochs_run`` and ``seconds`` when the search was asked for ``details``.
    """

    model: object
    params: dict
    trials: list[dict]
    history: dict | None = None
    val_mae: float = float("inf")


def tune_on_validation(build_and_fit, grid: list[dict], predict_val_eur, y_val_eur,
                       describe=dict, details: bool = False, progress=None,
                       label: str = "candidate") -> SearchResult:
    """Try every parameter set of ``grid``; keep the one with the lowest validation MAE (EUR).

    The one search loop of the project: every model search (ridge, gradient boosting, the MLPs,
    the transfer head, early and late fusion) goes through it.

    Args:
        build_and_fit: ``params -> fitted model`` or ``-> (fitted model, Keras history dict)``
            (fits on the training rows only).
        predict_val_eur: ``(model, params) -> validation predictions in euros, shape (n_val,)``.
        y_val_eur: validation prices, shape (n_val,).
        describe: ``params -> dict`` the trial record of a candidate (default: the params).
        details: also record ``epochs_run`` (from the history) and ``seconds`` per candidate.
        progress: ``str -> None`` called with one line per candidate (None: silent).

    Returns:
        :class:`SearchResult`. A diverged candidate (infinite or NaN validation MAE) never wins;
        :class:`TrainingDiverged` when every candidate diverged. The test rows are never seen.
    """
    best, trials = None, []
    y_val_eur = np.asarray(y_val_eur)
    for i, params in enumerate(grid):
        start = time.perf_counter()
        fitted = build_and_fit(params)
        model, history = fitted if isinstance(fitted, tuple) else (fitted, None)
        mae = float(np.mean(np.abs(np.asarray(predict_val_eur(model, params)).reshape(-1)
                                   - y_val_eur)))
        record = {**describe(params), "val_mae": round(mae, 3)}
        if details:
            record["epochs_run"] = len(history["loss"]) if history else 0
            record["seconds"] = round(time.perf_counter() - start, 1)
        trials.append(record)
        if progress is not None:
            progress(f"  {label} {i + 1}/{len(grid)}: {record}")
        if np.isfinite(mae) and (best is None or mae < best.val_mae):  # diverged: never wins
            best = SearchResult(model, params, trials, history, mae)
    if best is None:
        raise TrainingDiverged(f"no candidate reached a finite validation MAE; trials: {trials}")
    return best


class TrainingDiverged(RuntimeError):
    """Every candidate of a validation search diverged (infinite or NaN validation error)."""

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
sha256 of ``listings.csv``, the budget), so a saved model is reused only on the same split of
the same data under the same budget. Loading runs no code from the folder and checks every file
against the sha256 the metadata records (:mod:`shared.model_files`).
"""

from __future__ import annotations

import platform
import shutil
import time
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
    #: image features are the average of the photo's and its mirror image's (test-time flip)
    flip_tta: bool = False
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
        """(n, d_img) float32: cached backbone features (with ``flip_tta``, averaged with those
        of the mirrored photo), reduced if a reducer was fitted."""
        from shared.feature_cache import extract_features

        vectors, _ = extract_features(list(dataset.image_paths), self.backbone,
                                      self.image_size, progress=progress)
        if self.flip_tta:
            mirrored, _ = extract_features(list(dataset.image_paths), self.backbone,
                                           self.image_size, progress=progress, flip=True)
            vectors = (vectors + mirrored) / 2
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
            "backbone": self.backbone, "image_size": self.image_size,
            "flip_tta": self.flip_tta, "params": self.params,
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
    def load(cls, directory: Path) -> ModelBundle:
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
                   image_size=meta.get("image_size"), flip_tta=bool(meta.get("flip_tta", False)),
                   params=meta.get("params", {}),
                   deliverable=meta.get("deliverable", ""), intervals=intervals,
                   trained_on=meta.get("trained_on", {}))


def _load_part(path: Path):
    return load_part(path) if path.is_file() else None  # verified: present iff recorded

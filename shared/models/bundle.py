"""The saved-model bundle: a trained model and everything it needs to score new listings.

A :class:`ModelBundle` is one trained model plus everything needed to score new listings with it:
the fitted tabular preprocessor, the fitted image-feature reducer, the backbone name and input
size, and metadata. It declares which inputs it consumes:

* ``"tabular"``        the preprocessed listing features, (n, d_tab) float32;
* ``"image_features"`` cached backbone vectors, optionally reduced, (n, d_img) float32;
* ``"image"``          photos streamed from disk, (n, size, size, 3) float32 in [0, 255].

Models consuming several matrix inputs get them concatenated (tabular first); a model consuming
``tabular`` and ``image`` gets a dict ``{"tabular", "image"}`` (two-branch networks).

A bundle is saved to and loaded from a folder by :mod:`shared.models.saved` (which knows each
family's trusted types and Keras layers); :meth:`ModelBundle.metadata` is what its
``metadata.json`` records about it.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field

import numpy as np

from shared.evaluation.intervals import IntervalCalibration
from shared.features import tabular as feats

#: 3: the family that saved it recorded (its trusted types and Keras layers load it); 2 named
#: the project's modules before they were arranged by stage; 1 (joblib) is refused.
BUNDLE_FORMAT = 3
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
    #: unknown); set by :meth:`shared.run.experiment.Experiment.evaluate` before saving, and
    #: compared with the current run's to decide whether a saved model can be reused.
    trained_on: dict = field(default_factory=dict)
    #: the registry family that trained it ("" for a bundle built by hand: no family's types)
    family: str = ""

    @property
    def is_keras(self) -> bool:
        return hasattr(self.estimator, "save") and hasattr(self.estimator, "layers")

    # ------------------------------------------------------------------ inputs
    def preprocessors(self) -> list:
        """The fitted tabular preprocessors this bundle reads raw columns through: its own, or
        (a composite estimator such as a blend) its members'."""
        if self.preprocessor is not None:
            return [self.preprocessor]
        return [p for m in getattr(self.estimator, "members", ()) for p in m.preprocessors()]

    def tabular_matrix(self, dataset) -> np.ndarray:
        """(n, d_tab) float32 from the fitted preprocessor."""
        return np.asarray(self.preprocessor.transform(dataset.frame), dtype=np.float32)

    def image_feature_matrix(self, dataset, progress: bool = False, *, cache_root=None,
                             backbones: dict | None = None) -> np.ndarray:
        """(n, d_img) float32: backbone features (with ``flip_tta``, averaged with those of the
        mirrored photo), reduced if a reducer was fitted. ``cache_root``: the feature cache
        folder (default: the user's); ``backbones``: {(name, px): Keras backbone} reused, and
        filled with the ones built here (default: built for this call)."""
        # TensorFlow: only a photo model gets here (a tabular one predicts without it)
        from shared.features.cache import extract_features, flip_average, held_backbone

        options = {"cache_root": cache_root, "progress": progress,
                   "model": held_backbone(backbones, self.backbone, self.image_size)}
        vectors, _ = extract_features(list(dataset.image_paths), self.backbone,
                                      self.image_size, **options)
        if self.flip_tta:
            mirrored, _ = extract_features(list(dataset.image_paths), self.backbone,
                                           self.image_size, flip=True, **options)
            vectors = flip_average(vectors, mirrored)
        if self.image_reducer is not None:
            vectors = self.image_reducer.transform(vectors)
        return np.asarray(vectors, dtype=np.float32)

    def predict_log(self, dataset, batch_size: int = 32, **features) -> np.ndarray:
        """Predicted log price for every row of ``dataset``, shape (n,), float64. ``features``:
        how photo features are computed (:meth:`image_feature_matrix`'s ``cache_root`` and
        ``backbones``); a composite estimator (a blend) predicts from its members."""
        if hasattr(self.estimator, "predict_log"):
            return np.asarray(self.estimator.predict_log(dataset, batch_size, **features),
                              dtype=np.float64).reshape(-1)
        matrices = []
        if "tabular" in self.inputs:
            matrices.append(self.tabular_matrix(dataset))
        if "image_features" in self.inputs:
            matrices.append(self.image_feature_matrix(dataset, **features))
        if "image" in self.inputs:
            # TensorFlow: only a photo model gets here (a tabular one predicts without it)
            from shared.data.images import make_image_dataset

            extra = matrices[0] if matrices else None
            data = make_image_dataset(dataset.image_paths, extra_inputs=extra,
                                      image_size=self.image_size, batch_size=batch_size)
            output = self.estimator.predict(data, verbose=0)
        else:
            x = np.hstack(matrices) if len(matrices) > 1 else matrices[0]
            output = (self.estimator.predict(x, batch_size=256, verbose=0) if self.is_keras
                      else self.estimator.predict(x))
        return np.asarray(output, dtype=np.float64).reshape(-1)

    def predict_eur(self, dataset, batch_size: int = 32, **features) -> np.ndarray:
        """Predicted nightly price in euros, shape (n,)."""
        return feats.price_from_log(self.predict_log(dataset, batch_size, **features))

    # ------------------------------------------------------------------ persistence
    def metadata(self) -> dict:
        names = (list(map(str, self.preprocessor.get_feature_names_out()))
                 if self.preprocessor is not None else [])
        return {
            "format": BUNDLE_FORMAT, "name": self.name, "family": self.family,
            "deliverable": self.deliverable,
            "inputs": list(self.inputs),
            "estimator": ("keras" if self.is_keras else "composite"
                          if hasattr(self.estimator, "to_json") else "sklearn"),
            "feature_set_version": feats.FEATURE_SET_VERSION, "feature_names": names,
            "backbone": self.backbone, "image_size": self.image_size,
            "flip_tta": self.flip_tta, "params": self.params,
            "trained_on": self.trained_on,
            "target": "log(price EUR)", "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "python": platform.python_version(),
        }

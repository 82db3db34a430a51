"""Networks with an image backbone inside: assembling them, taking them apart, fine-tuning them.

The photo enters as (b, s, s, 3) float32 in [0, 255] and goes through the backbone (a nested
Keras model named after it); its (b, D) vector goes into the head or two-branch network.
"""

from __future__ import annotations

import keras
import numpy as np

from shared.data.images import make_image_dataset
from shared.evaluation.metrics import better
from shared.features.backbones import top_block_layers
from shared.models.bundle import ModelBundle
from shared.models.fit import global_batch_size


def attach_encoder(network: keras.Model, encoder: keras.Model, image_size: int,
                   name: str) -> keras.Model:
    """{"tabular": (b, d_tab), "image": (b, s, s, 3) float32 [0, 255]} -> (b, 1) log price: the
    photo through ``encoder``, then into ``network`` with the tabular row."""
    tab_dim = network.input["tabular"].shape[-1]
    tabular = keras.Input(shape=(tab_dim,), name="tabular")
    image = keras.Input(shape=(image_size, image_size, 3), name="image")
    vectors = encoder(image)
    return keras.Model({"tabular": tabular, "image": image},
                       network({"tabular": tabular, "image": vectors}), name=name)


def photo_data(data, cfg, part: str, image_size: int, batch_size: int = 32, training: bool = False,
               cache_dir: str | None = None):
    """tf.data of ({"image", "tabular"}, log price) for one part (shuffled + augmented if training),
    ``batch_size`` rows per replica."""
    return make_image_dataset(data.paths(part), data.y_log(part), extra_inputs=data.tabular[part],
                              image_size=image_size, batch_size=global_batch_size(batch_size, cfg.replicas),
                              shuffle=training, augment=training, seed=cfg.seed, cache_dir=cache_dir)


def split_end_to_end(bundle: ModelBundle) -> tuple[keras.Model, keras.Model]:
    """An end-to-end bundle -> (encoder, network): the backbone (the nested model named
    ``bundle.backbone``) and the other nested model, which takes the backbone vectors."""
    model = bundle.estimator
    encoder = model.get_layer(bundle.backbone)
    network = next(layer for layer in model.layers
                   if isinstance(layer, keras.Model) and layer.name != bundle.backbone)
    return encoder, network


def encode_photos(encoder: keras.Model, paths, image_size: int, batch_size: int = 32) -> np.ndarray:
    """(n, D) float32: ``encoder`` applied to the photos (backbones without a disk cache).<<"""
    data = make_image_dataset(paths, image_size=image_size, batch_size=batch_size)
    return np.asarray(encoder.predict(data, verbose=0), dtype=np.float32)


def feature_standardisation(bundle: ModelBundle) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, variance) (D,) each of the raw backbone features a transfer model standardises
    with; None when the bundle holds neither a fitted scaler nor the layer.

    From a scaler the variance is ``scale_ ** 2``, not ``var_``: a feature constant on the training
    rows has ``var_`` 0 but ``scale_`` 1, and ``Normalization`` given 0 would blow up tiny
    differences."""
    scaler = bundle.image_reducer
    if scaler is not None and hasattr(scaler, "mean_") and hasattr(scaler, "scale_"):
        return np.asarray(scaler.mean_), np.asarray(scaler.scale_) ** 2
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
    return np.asarray(keras.ops.convert_to_numpy(value))


def unfreeze_top(model: keras.Model, backbone_name: str, n_blocks: int) -> int:
    """Make the top ``n_blocks`` of the backbone trainable (batch norm excluded); returns the
    number of trainable weight tensors of the backbone."""
    backbone = model.get_layer(backbone_name)
    backbone.trainable = True
    for layer in backbone.layers:
        layer.trainable = False
    for layer in top_block_layers(backbone, backbone_name, n_blocks):
        if not isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = True
    return len(backbone.trainable_weights)


def kept_label(phase: dict) -> str:
    """"kept" or "reverted": whether validation kept a phase's weights (learning-curve labels)."""
    return "kept" if phase["kept"] else "reverted"


def train_if_better(model: keras.Model, fit, val_mae, before: float | None = None) -> dict:
    """Run ``fit()``; keep the new weights only if ``val_mae()`` (EUR) went down, else restore
    them. ``before``: the current validation MAE when known. Returns what happened."""
    before = val_mae() if before is None else before
    weights = model.get_weights()
    history = fit()
    after = val_mae()
    kept = better(after, before)
    if not kept:
        model.set_weights(weights)
    return {"history": history, "val_mae_before": round(before, 3), "val_mae_after": round(after, 3),
            "kept": bool(kept), "epochs_run": len(history.get("loss", []))}


def frozen_batchnorm(model: keras.Model, trainable: bool) -> None:
    """Set ``trainable`` on every layer of ``model`` except batch norm, which stays frozen (in
    inference mode, with the statistics the branch was trained with)."""
    model.trainable = True
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        elif not isinstance(layer, keras.Model):
            layer.trainable = trainable


def all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)

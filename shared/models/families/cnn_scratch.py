"""``cnn_scratch``: a small CNN trained from scratch on the listing photo alone.

Small because a few thousand photos cannot fit a big network from random weights (the
original's from-scratch CNNs scored below the mean predictor): rescale to [0, 1], 4 x [conv 3x3,
batch norm, ReLU, max-pool 2x2] with 16/32/64/128 channels, global average pooling, dropout,
Dense(1) with its bias at the mean training log price (so it starts as the mean predictor).
Decoded photos are cached on disk as uint8: later epochs skip JPEG decoding, memory stays flat.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass

import keras
import numpy as np

from shared.data.images import make_image_dataset
from shared.models.bundle import ModelBundle
from shared.models.fit import (compile_regressor, epochs_record, fit_regressor, global_batch_size,
                               under_strategy)
from shared.models.layers import batch_normalization, regression_output
from shared.models.spec import Family, ModelSpec, Sizes, Trained

CHANNELS = (16, 32, 64, 128)


@dataclass(frozen=True)
class CnnSizes:
    """cnn_scratch's budget."""

    image_size: int   # px, square
    epochs: int       # most epochs (early stopping decides)
    batch_size: int   # photos per batch, streamed from disk


def build_cnn(image_size: int, target_mean: float, channels=CHANNELS, dropout: float = 0.3,
              l2: float = 1e-4) -> keras.Model:
    """(batch, image_size, image_size, 3) float32 [0, 255] -> (batch, 1) log price."""
    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(inputs)
    for i, filters in enumerate(channels):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                kernel_regularizer=keras.regularizers.l2(l2), name=f"conv{i + 1}")(x)
        x = batch_normalization(f"bn{i + 1}")(x)
        x = keras.layers.ReLU(name=f"relu{i + 1}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, regression_output(x, target_mean), name="cnn_scratch")


@under_strategy
def train_cnn_scratch(data, cfg, learning_rate: float = 1e-3) -> Trained:
    """Train ``cnn_scratch`` (photo size, epochs and batch from ``cfg.budget.cnn_scratch``)."""
    sizes = cfg.budget.cnn_scratch
    image_size, epochs, batch_size = sizes.image_size, sizes.epochs, sizes.batch_size
    start = time.perf_counter()
    keras.utils.set_random_seed(cfg.seed)
    y_train = data.y_log("train")
    model = compile_regressor(build_cnn(image_size, float(np.mean(y_train))), learning_rate)
    with tempfile.TemporaryDirectory(prefix="cnn-photo-cache-") as cache:
        train = make_image_dataset(data.paths("train"), y_train, image_size=image_size,
                                   batch_size=global_batch_size(batch_size, cfg.replicas), shuffle=True,
                                   augment=True, seed=cfg.seed, cache_dir=f"{cache}/train")
        val = make_image_dataset(data.paths("val"), data.y_log("val"), image_size=image_size,
                                 batch_size=global_batch_size(batch_size, cfg.replicas), cache_dir=f"{cache}/val")
        history = fit_regressor(model, train, val, epochs=epochs, patience=8)
    params = {"image_size": image_size, "channels": list(CHANNELS), "learning_rate": learning_rate,
              **epochs_record(history, epochs), "loss": "mse",
              "augmentation": "flip, brightness, contrast, zoom"}
    bundle = ModelBundle("cnn_scratch", ("image",), model, image_size=image_size, params=params,
                         deliverable="deliverable1")
    return Trained(bundle, time.perf_counter() - start, history=history)


FAMILY = Family(
    name="cnn_scratch",
    models=(ModelSpec("cnn_scratch", "photo", "deliverable1", order=60, inputs=("image",),
                      train=lambda run: train_cnn_scratch(run.data, run.cfg), neural=True,
                      reference="if_saved", description="a small CNN on the photo, no pretrained "
                                                        "weights"),),
    sizes=Sizes(full=CnnSizes(image_size=96, epochs=30, batch_size=32),
                small_set=CnnSizes(image_size=128, epochs=40, batch_size=32),
                smoke=CnnSizes(image_size=64, epochs=2, batch_size=32)),
)

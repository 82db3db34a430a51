"""Keras building blocks shared by every network of the project: the batch-norm layer (synchronised
across replicas), the dense block, the float32 log-price output, the tabular MLP and a linear head
holding given weights."""

from __future__ import annotations

import numpy as np

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


def photo_mlp_head(input_dim: int, target_mean: float, hidden: int = 256,
                   input_dropout: float = 0.2, dropout: float = 0.5, name: str = "transfer_head"):
    """Non-linear head on (standardised) backbone features: (batch, input_dim) -> dropout ->
    Dense(hidden, ReLU) -> dropout -> (batch, 1) log price. No batch norm: its input is already
    standardised, and the head is later a fusion branch whose batch statistics would drift."""
    import keras

    inputs = keras.Input(shape=(input_dim,), name="features")
    x = keras.layers.Dropout(input_dropout, name="input_dropout")(inputs)
    x = keras.layers.Dense(hidden, activation="relu", name="hidden1_dense")(x)
    x = keras.layers.Dropout(dropout, name="hidden1_dropout")(x)
    return keras.Model(inputs, regression_output(x, target_mean), name=name)


def linear_head(coef: np.ndarray, intercept: float, l2: float = 0.0, name: str = "linear_head"):
    """A Keras linear model (batch, d) -> (batch, 1) holding given weights (e.g. from
    :func:`ridge_path`); ``l2`` keeps the same penalty if it is trained further (fine-tuning)."""
    model = build_mlp(len(coef), (), 0.0, l2, target_mean=intercept, name=name)
    model.get_layer("log_price").set_weights([np.asarray(coef, dtype=np.float32).reshape(-1, 1),
                                              np.array([intercept], dtype=np.float32)])
    return model

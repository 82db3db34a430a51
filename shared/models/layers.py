"""Keras building blocks of every network of the project, and ``tabular_net``'s custom layers
(PLR embeddings, TabM ensemble), registered under :data:`PACKAGE` so saved models name them.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

PACKAGE = "airbnb_dl"

# --------------------------------------------------------------------------- Keras building blocks

def batch_normalization(name: str):
    """The batch-norm layer of every model built here.

    Under a strategy with several replicas it is ``synchronized=True``: it normalises with the
    global batch's statistics, so a distributed step computes what one device does on the global
    batch. On one device it is the plain layer.
    """
    several = tf.distribute.has_strategy() and tf.distribute.get_strategy().num_replicas_in_sync > 1
    if several:
        return keras.layers.BatchNormalization(name=name, synchronized=True)
    return keras.layers.BatchNormalization(name=name)


def dense_block(x, units: int, dropout: float, l2: float, name: str):
    """Dense -> batch norm -> ReLU -> dropout, the unit of every MLP in the project."""
    x = keras.layers.Dense(units, kernel_regularizer=keras.regularizers.l2(l2) if l2 else None,
                           name=f"{name}_dense")(x)
    x = batch_normalization(f"{name}_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return keras.layers.Dropout(dropout, name=f"{name}_dropout")(x) if dropout else x


def regression_output(x, target_mean: float, name: str = "log_price", l2: float = 0.0):
    """Final Dense(1) in float32 (safe under mixed precision), bias at the mean log price so
    training starts from the mean predictor; optional L2 on its kernel (ridge for a linear model)."""
    return keras.layers.Dense(1, dtype="float32", name=name,
                              kernel_regularizer=keras.regularizers.l2(l2) if l2 else None,
                              bias_initializer=keras.initializers.Constant(target_mean))(x)


def build_mlp(input_dim: int, hidden: tuple[int, ...], dropout: float, l2: float,
              target_mean: float, name: str = "mlp"):
    """Tabular MLP: (batch, input_dim) float32 -> (batch, 1) log price."""
    inputs = keras.Input(shape=(input_dim,), name="features")
    x = inputs
    for i, units in enumerate(hidden):
        x = dense_block(x, units, dropout, l2, name=f"hidden{i + 1}")
    return keras.Model(inputs, regression_output(x, target_mean, l2=l2), name=name)


def photo_mlp_head(input_dim: int, target_mean: float, hidden: int = 256,
                   input_dropout: float = 0.2, dropout: float = 0.5, name: str = "transfer_head"):
    """Non-linear head on standardised backbone features: (batch, input_dim) -> dropout ->
    Dense(hidden, ReLU) -> dropout -> (batch, 1) log price. No batch norm: its input is already
    standardised, and as a fusion branch later its batch statistics would drift."""
    inputs = keras.Input(shape=(input_dim,), name="features")
    x = keras.layers.Dropout(input_dropout, name="input_dropout")(inputs)
    x = keras.layers.Dense(hidden, activation="relu", name="hidden1_dense")(x)
    x = keras.layers.Dropout(dropout, name="hidden1_dropout")(x)
    return keras.Model(inputs, regression_output(x, target_mean), name=name)


def linear_head(coef: np.ndarray, intercept: float, l2: float = 0.0, name: str = "linear_head"):
    """A Keras linear model (batch, d) -> (batch, 1) holding given weights; ``l2`` keeps the same
    penalty if it is trained further."""
    model = build_mlp(len(coef), (), 0.0, l2, target_mean=intercept, name=name)
    model.get_layer("log_price").set_weights([np.asarray(coef, dtype=np.float32).reshape(-1, 1),
                                              np.array([intercept], dtype=np.float32)])
    return model


# --------------------------------------------------------------------------- tabular_net's layers

@keras.saving.register_keras_serializable(package=PACKAGE)
class TakeColumns(keras.layers.Layer):
    """(batch, d) -> (batch, len(indices)): the given columns, in the given order."""

    def __init__(self, indices, **kwargs):
        super().__init__(**kwargs)
        self.indices = [int(i) for i in indices]

    def call(self, x):
        return keras.ops.take(x, np.asarray(self.indices, dtype="int32"), axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(self.indices))

    def get_config(self):
        return {**super().get_config(), "indices": self.indices}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PeriodicEmbedding(keras.layers.Layer):
    """PLR embeddings: (batch, n_features) -> (batch, n_features, d_embedding).

    ``[cos(2 pi c x), sin(2 pi c x)]`` with ``n_frequencies`` learned frequencies per feature
    (truncated normal, std ``sigma``), a linear map per feature (``lite``: one shared), then ReLU
    (``activation=False``: the PL variant).
    """

    def __init__(self, d_embedding: int = 16, n_frequencies: int = 32, sigma: float = 0.1,
                 lite: bool = False, activation: bool = True, **kwargs):
        super().__init__(**kwargs)
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        self.d_embedding, self.n_frequencies = int(d_embedding), int(n_frequencies)
        self.sigma, self.lite, self.activation = float(sigma), bool(lite), bool(activation)

    def build(self, input_shape):
        n = int(input_shape[-1])
        self.frequencies = self.add_weight(
            name="frequencies", shape=(n, self.n_frequencies),
            initializer=keras.initializers.TruncatedNormal(stddev=self.sigma))
        bound = (2 * self.n_frequencies) ** -0.5  # PyTorch Linear's default scale
        uniform = keras.initializers.RandomUniform(-bound, bound)
        shape = (() if self.lite else (n,)) + (2 * self.n_frequencies, self.d_embedding)
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer=uniform)
        self.bias = self.add_weight(name="bias", shape=shape[:-2] + (self.d_embedding,),
                                    initializer=uniform)

    def call(self, x):
        z = (2 * math.pi) * x[..., None] * self.frequencies                 # (b, n, f)
        z = keras.ops.concatenate([keras.ops.cos(z), keras.ops.sin(z)], axis=-1)
        if self.lite:
            z = keras.ops.matmul(z, self.kernel)
        else:
            z = keras.ops.einsum("bnf,nfd->bnd", z, self.kernel)
        z = z + self.bias
        return keras.ops.relu(z) if self.activation else z

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.d_embedding)

    def get_config(self):
        return {**super().get_config(), "d_embedding": self.d_embedding,
                "n_frequencies": self.n_frequencies, "sigma": self.sigma, "lite": self.lite,
                "activation": self.activation}


def _adapter_initializer(kind: str, sections: list[int] | None):
    """Initial (k, d) multiplicative adapter: ``ones``, ``normal`` or ``random_signs`` (+-1). With
    ``sections`` (widths summing to d) each section shares one draw per member, as in TabM."""
    if kind not in ("ones", "normal", "random_signs"):
        raise ValueError(f"unknown adapter initialisation {kind!r}")

    def initialise(shape, dtype=None):
        if kind == "ones":
            return keras.ops.ones(shape, dtype=dtype)
        widths = list(sections) if sections else [1] * shape[-1]
        if sum(widths) != shape[-1]:
            raise ValueError(f"adapter sections sum to {sum(widths)}, not {shape[-1]}")
        # numpy's global generator: seeded by keras.utils.set_random_seed, so builds repeat
        draw = keras.random.normal((shape[0], len(widths)), dtype=dtype,
                                   seed=int(np.random.randint(2**31 - 1)))
        if kind == "random_signs":
            draw = keras.ops.where(draw >= 0, 1.0, -1.0)
        return keras.ops.cast(keras.ops.repeat(draw, widths, axis=1), dtype)

    return initialise


@keras.saving.register_keras_serializable(package=PACKAGE)
class EnsembleAdapter(keras.layers.Layer):
    """TabM-mini's input adapter: (batch, d) -> (batch, k, d), member i's copy multiplied
    elementwise by its own learned vector ``r_i``."""

    def __init__(self, k: int, init: str = "normal", sections=None, **kwargs):
        super().__init__(**kwargs)
        self.k, self.init = int(k), str(init)
        self.sections = [int(s) for s in sections] if sections else None

    def build(self, input_shape):
        self.adapter = self.add_weight(name="adapter", shape=(self.k, int(input_shape[-1])),
                                       initializer=_adapter_initializer(self.init, self.sections))

    def call(self, x):
        return x[:, None, :] * self.adapter

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.k, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "k": self.k, "init": self.init, "sections": self.sections}


@keras.saving.register_keras_serializable(package=PACKAGE)
class EnsembleDense(keras.layers.Layer):
    """A BatchEnsemble dense layer (TabM): (batch, k, d) -> (batch, k, units),
    ``y_i = ((x_i * r_i) W) * s_i + b_i`` with ``W`` shared; ``init`` initialises ``r``, ``s``
    starts at one."""

    def __init__(self, units: int, k: int, init: str = "ones", sections=None, **kwargs):
        super().__init__(**kwargs)
        self.units, self.k, self.init = int(units), int(k), str(init)
        self.sections = [int(s) for s in sections] if sections else None

    def build(self, input_shape):
        d = int(input_shape[-1])
        uniform = keras.initializers.RandomUniform(-d ** -0.5, d ** -0.5)
        self.kernel = self.add_weight(name="kernel", shape=(d, self.units), initializer=uniform)
        self.adapter = self.add_weight(name="adapter", shape=(self.k, d),
                                       initializer=_adapter_initializer(self.init, self.sections))
        self.adapter_out = self.add_weight(name="adapter_out", shape=(self.k, self.units),
                                           initializer="ones")
        self.bias = self.add_weight(name="bias", shape=(self.k, self.units), initializer=uniform)

    def call(self, x):
        return keras.ops.matmul(x * self.adapter, self.kernel) * self.adapter_out + self.bias

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.k, self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "k": self.k, "init": self.init,
                "sections": self.sections}


@keras.saving.register_keras_serializable(package=PACKAGE)
class EnsembleHead(keras.layers.Layer):
    """One linear head per member: (batch, k, d) -> (batch, k) log prices in float32, each bias
    at the mean training log price."""

    def __init__(self, k: int, target_mean: float = 0.0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.k, self.target_mean = int(k), float(target_mean)

    def build(self, input_shape):
        d = int(input_shape[-1])
        self.kernel = self.add_weight(name="kernel", shape=(self.k, d),
                                      initializer=keras.initializers.RandomUniform(-d ** -0.5,
                                                                                   d ** -0.5))
        self.bias = self.add_weight(name="bias", shape=(self.k,),
                                    initializer=keras.initializers.Constant(self.target_mean))

    def call(self, x):
        return keras.ops.sum(keras.ops.cast(x, "float32") * self.kernel, axis=-1) + self.bias

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.k)

    def get_config(self):
        return {**super().get_config(), "k": self.k, "target_mean": self.target_mean}


@keras.saving.register_keras_serializable(package=PACKAGE)
class MemberMean(keras.layers.Layer):
    """(batch, k) member predictions -> (batch, 1) their mean: the ensemble's prediction."""

    def call(self, x):
        return keras.ops.mean(x, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

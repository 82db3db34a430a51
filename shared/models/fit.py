"""The training loop every Keras model shares: built under the run's distribution strategy, Adam
on the mean squared error of log price, early stopping and learning-rate reduction on the
validation loss, from tf.data pipelines built once.
"""

from __future__ import annotations

import functools
import math
from contextlib import contextmanager

import keras
import numpy as np
import tensorflow as tf

# --------------------------------------------------------------------------- several replicas
#
# Batch sizes and learning rates in the code are tuned on one device. With R replicas the
# per-replica batch stays as tuned (same memory and batch-norm statistics per device), so the
# global batch is R times larger, and Adam's learning rate is multiplied by sqrt(R): the
# square-root rule for adaptive optimisers (Malladi et al., NeurIPS 2022); SGD's linear rule
# overshoots with Adam. With one replica both are the identity.


def global_batch_size(per_replica_batch: int, replicas: int) -> int:
    """Global batch (rows per optimiser step, over all replicas) for a per-replica batch."""
    if per_replica_batch < 1:
        raise ValueError(f"per_replica_batch must be >= 1, got {per_replica_batch}")
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    return int(per_replica_batch) * int(replicas)


def scaled_learning_rate(learning_rate: float, replicas: int) -> float:
    """The Adam learning rate for ``replicas`` replicas: ``learning_rate * sqrt(replicas)``.<<"""
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    return learning_rate if replicas == 1 else float(learning_rate) * math.sqrt(replicas)


# --------------------------------------------------------------------------- distribution strategy

def strategy_of(owner=None):
    """The ``tf.distribute.Strategy`` of ``owner`` (a ``RunConfig`` or
    :class:`~shared.run.devices.DeviceInfo`, or a strategy), else the current strategy."""
    if isinstance(owner, tf.distribute.Strategy):
        return owner
    strategy = getattr(owner, "strategy", None)
    return strategy if strategy is not None else tf.distribute.get_strategy()


@contextmanager
def in_strategy(owner=None):
    """``with in_strategy(cfg): ...``: inside ``strategy.scope()`` of ``owner``, yielding the
    strategy; models built there are mirrored on every replica. No-op with the default strategy."""
    strategy = strategy_of(owner)
    with strategy.scope():
        yield strategy


def under_strategy(step):
    """Decorator: the whole trainer ``step(data, cfg, ...)`` runs inside ``cfg.strategy.scope()``
    (nested steps re-enter the same scope, which TensorFlow allows)."""

    @functools.wraps(step)
    def run_in_scope(data, cfg, *args, **kwargs):
        with in_strategy(cfg):
            return step(data, cfg, *args, **kwargs)

    return run_in_scope


def replicas_of(model) -> int:
    """Number of replicas training ``model`` in sync.<<"""
    return int(model.distribute_strategy.num_replicas_in_sync)


# --------------------------------------------------------------------------- the fit loop

def compile_regressor(model, learning_rate: float):
    """Adam + mean squared error on log price; MAE on log price tracked too. ``learning_rate`` is
    the one-device value (scaled for several replicas); call it inside the model's strategy scope."""
    rate = scaled_learning_rate(learning_rate, replicas_of(model))
    model.compile(optimizer=keras.optimizers.Adam(rate), loss="mse",
                  metrics=[keras.metrics.MeanAbsoluteError(name="mae_log")])
    return model


def fit_regressor(model, train, validation, epochs: int, patience: int = 10,
                  batch_size: int | None = None, verbose: int = 0, seed: int = 0) -> dict:
    """Fit with early stopping (best weights restored) and LR reduction on validation loss.

    ``train`` / ``validation``: (x, y) arrays (x may be a dict) or batched tf.data datasets. Arrays
    are wrapped once in a tf.data pipeline (``batch_size`` rows per replica, default 32; training
    rows reshuffled each epoch with ``seed``): numpy arrays make Keras rebuild its input pipeline
    every epoch, which dominates small heads' training time. Returns the per-epoch history dict.
    """
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                      restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5,
                                          patience=max(2, patience // 3), min_lr=1e-6),
    ]
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


def stopped_by(history: dict | None, epochs: int) -> str:
    """``"early_stopping"`` when fewer than ``epochs`` epochs ran, else ``"epoch_limit"``.<<"""
    return "early_stopping" if len((history or {}).get("loss", [])) < epochs else "epoch_limit"


def epochs_record(history: dict | None, max_epochs: int, prefix: str = "") -> dict:
    """``{"epochs_run", "max_epochs", "stopped_by"}`` of one training (keys prefixed ``prefix``).<<"""
    return {f"{prefix}epochs_run": len((history or {}).get("loss", [])),
            f"{prefix}max_epochs": int(max_epochs),
            f"{prefix}stopped_by": stopped_by(history, max_epochs)}


def arrays_dataset(arrays: tuple, batch_size: int, shuffle: bool = False, seed: int = 0):
    """(x, y) arrays -> a batched float32 tf.data.Dataset, built once and reused by every epoch;
    ``x`` (n, d) or a dict of (n, ...) arrays, ``y`` (n,). ``shuffle``: reshuffled every epoch."""
    x, y = arrays
    to32 = (lambda a: np.asarray(a, dtype=np.float32))
    x = {k: to32(v) for k, v in x.items()} if isinstance(x, dict) else to32(x)
    y = to32(y)
    data = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        data = data.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)

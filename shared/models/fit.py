"""How every Keras model of the project is built and trained: under the run's distribution
strategy, with Adam on mean squared error of log price, early stopping and learning-rate
reduction on the validation loss, from tf.data pipelines built once.

The model architectures themselves live in :mod:`shared.models`; this module is the loop they
share.
"""

from __future__ import annotations

import functools
import math
from contextlib import contextmanager

import keras
import numpy as np
import tensorflow as tf

# --------------------------------------------------------------------------- batch size and learning rate on several replicas
#
# Every batch size and learning rate written in the training code is the one tuned on a single
# device. With R replicas in sync (GPUs of one machine, or of all workers):
#
# * the *per-replica* batch stays as tuned, so the global batch (what ``Dataset.batch`` gets and
#   what one optimiser step averages over) is R times larger. Each replica then sees the batch
#   the model was tuned with: the same memory per device and the same batch-norm statistics
#   (Keras batch norm normalises with the statistics of the replica's own batch);
# * the learning rate is multiplied by sqrt(R). Every model here trains with Adam; for adaptive
#   optimisers the square-root rule keeps the training dynamics comparable when the batch grows
#   (Malladi et al., "On the SDEs and Scaling Rules for Adaptive Gradient Algorithms", NeurIPS
#   2022), whereas the linear rule of SGD (Goyal et al. 2017) overshoots with Adam. The
#   validation-driven learning-rate reduction and early stopping still adjust it afterwards.
#
# With one replica both are the identity: results on one device do not depend on this code.


def global_batch_size(per_replica_batch: int, replicas: int) -> int:
    """Global batch (rows per optimiser step, over all replicas) for a per-replica batch."""
    if per_replica_batch < 1:
        raise ValueError(f"per_replica_batch must be >= 1, got {per_replica_batch}")
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    return int(per_replica_batch) * int(replicas)


def scaled_learning_rate(learning_rate: float, replicas: int) -> float:
    """The Adam learning rate for ``replicas`` replicas, given the one tuned on one device:
    ``learning_rate * sqrt(replicas)`` (returned unchanged for one replica)."""
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    return learning_rate if replicas == 1 else float(learning_rate) * math.sqrt(replicas)


# --------------------------------------------------------------------------- distribution strategy

def strategy_of(owner=None):
    """The ``tf.distribute.Strategy`` of ``owner``: a :class:`~shared.environment.RunConfig` or a
    :class:`~shared.run.devices.DeviceInfo` (their ``strategy`` attribute), a strategy itself, or
    None / an owner without one: the current strategy (the default one outside any scope)."""
    if isinstance(owner, tf.distribute.Strategy):
        return owner
    strategy = getattr(owner, "strategy", None)
    return strategy if strategy is not None else tf.distribute.get_strategy()


@contextmanager
def in_strategy(owner=None):
    """``with in_strategy(cfg): ...`` builds, compiles (and may fit) Keras models inside
    ``strategy.scope()`` of ``owner`` (see :func:`strategy_of`); yields the strategy. Models built
    there keep their variables mirrored on every replica, and ``fit`` / ``predict`` split each
    global batch between the replicas. With the default strategy (one device) it changes nothing."""
    strategy = strategy_of(owner)
    with strategy.scope():
        yield strategy


def under_strategy(step):
    """Decorator for a trainer ``step(data, cfg, ...)``: the whole step (Keras models built,
    loaded, compiled, fitted, evaluated) runs inside ``cfg.strategy.scope()``. Nested steps re-enter
    the same scope, which TensorFlow allows. This is how every model of both deliverables is
    built under the run's strategy."""

    @functools.wraps(step)
    def run_in_scope(data, cfg, *args, **kwargs):
        with in_strategy(cfg):
            return step(data, cfg, *args, **kwargs)

    return run_in_scope


def replicas_of(model) -> int:
    """Number of replicas training ``model`` in sync (1 unless it was built inside the scope of
    a multi-device or multi-worker strategy)."""
    return int(model.distribute_strategy.num_replicas_in_sync)


# --------------------------------------------------------------------------- the fit loop

def compile_regressor(model, learning_rate: float):
    """Adam + mean squared error on log price; MAE on log price tracked too.

    ``learning_rate`` is the one tuned on one device; on several replicas it is scaled by
    :func:`scaled_learning_rate`. Call it inside the strategy scope the model was
    built in (the optimiser's variables are created there).
    """
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
    replica, default 32, i.e. batches of :func:`global_batch_size`): handing
    numpy arrays to Keras makes it rebuild its input pipeline every epoch, which dominates the
    training time of small heads.
    Returns the Keras history dict (per-epoch lists).
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
    """What ended a Keras training: ``"early_stopping"`` when it ran fewer than ``epochs`` epochs,
    else ``"epoch_limit"`` (the budget's cap, which the reports then say)."""
    return "early_stopping" if len((history or {}).get("loss", [])) < epochs else "epoch_limit"


def epochs_record(history: dict | None, max_epochs: int, prefix: str = "") -> dict:
    """``{"epochs_run", "max_epochs", "stopped_by"}`` of one Keras training (keys prefixed with
    ``prefix``, e.g. "phase1_"), as every network's params record it."""
    return {f"{prefix}epochs_run": len((history or {}).get("loss", [])),
            f"{prefix}max_epochs": int(max_epochs),
            f"{prefix}stopped_by": stopped_by(history, max_epochs)}


def arrays_dataset(arrays: tuple, batch_size: int, shuffle: bool = False, seed: int = 0):
    """(x, y) arrays -> a batched tf.data.Dataset, built once and reused by every epoch.

    ``x`` is (n, d) or a dict of (n, ...) arrays; ``y`` is (n,). Values are cast to float32.
    With ``shuffle`` the rows are reshuffled every epoch (seeded).
    """
    x, y = arrays
    to32 = (lambda a: np.asarray(a, dtype=np.float32))
    x = {k: to32(v) for k, v in x.items()} if isinstance(x, dict) else to32(x)
    y = to32(y)
    data = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        data = data.shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)

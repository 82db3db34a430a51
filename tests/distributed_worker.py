"""Child process of ``tests/test_distributed.py``: trains under a distribution strategy chosen by
``shared.run.devices.setup_devices`` and prints one JSON line (the last line of stdout).

Device configuration must happen before TensorFlow initialises, so each scenario runs in a
fresh interpreter::

    python tests/distributed_worker.py mirrored --workdir DIR
    TF_CONFIG=... python tests/distributed_worker.py multi_worker --data-dir D --models-dir M
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from shared.models.saved import save_bundle

PER_REPLICA_BATCH = 16
LEARNING_RATE = 1e-2


def _mirrored_info(model) -> dict:
    """How the trainable variables of ``model`` are stored: class names and replica counts."""
    kinds, copies = set(), set()
    for variable in model.trainable_variables:
        value = getattr(variable, "value", variable)
        kinds.add(type(value).__name__)
        copies.add(len(getattr(value, "values", (value,))))
    return {"variable_types": sorted(kinds), "variable_copies": sorted(copies)}


def _tabular_data(n: int = 192, d: int = 6, seed: int = 0):
    """Synthetic tabular rows: x (n, d) float32, log-price-like y (n,) float32."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = 4.5 + x @ rng.normal(scale=0.3, size=d) + rng.normal(scale=0.05, size=n)
    return x, y.astype(np.float32)


def _photo_data(directory: Path, n: int = 96, size: int = 32, seed: int = 0):
    """``n`` synthetic RGB photos (PNG, size x size) whose brightness sets the target:
    (paths, y (n,) float32)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    brightness = rng.uniform(0.1, 0.9, size=n)
    paths = []
    for i, b in enumerate(brightness):
        pixels = np.clip(rng.normal(255 * b, 25, size=(size, size, 3)), 0, 255).astype(np.uint8)
        path = directory / f"{i}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths, (4.0 + brightness).astype(np.float32)


def _relative_distance(weights, reference, start) -> float:
    """||weights - reference|| / ||reference - start|| over all tensors: how far two trainings
    of the same model ended apart, relative to how far training moved it."""
    def norm(a, b):
        return np.sqrt(sum(np.sum((np.asarray(x, np.float64) - np.asarray(y, np.float64)) ** 2)
                           for x, y in zip(a, b, strict=True)))
    return float(norm(weights, reference) / norm(reference, start))


def _train_pair(build, fit, training_loss, strategy) -> tuple[dict, object]:
    """Train the same model from the same weights for one epoch on ``strategy``'s replicas and
    on one device.

    ``build()`` -> uncompiled model; ``fit(model, learning_rate, rows_per_replica)`` compiles it
    with :func:`shared.models.fit.compile_regressor` (which scales the rate by the model's replica
    count), fits it with the project's pipeline for that many rows per replica and returns the
    history; ``training_loss(weights)`` -> the mean squared error on the training rows of a
    one-device copy holding ``weights``, batch norm on the batch statistics (training mode),
    so that it does not depend on the slowly moving averages after a handful of steps.

    The one-device references: (a) the same global batch and the same scaled learning rate as
    the distributed run (what it should match); (b) the per-replica batch and the unscaled
    rate (plain one-device training, what it should *not* match). Returns (summary, the
    distributed model).
    """
    import keras

    from shared.models.fit import global_batch_size, scaled_learning_rate
    from shared.models.fit import in_strategy, replicas_of

    replicas = int(strategy.num_replicas_in_sync)
    keras.utils.set_random_seed(0)
    reference = build()
    start = reference.get_weights()
    with in_strategy(strategy):
        distributed = build()
        distributed.set_weights(start)
        fit(distributed, LEARNING_RATE, PER_REPLICA_BATCH)
    fit(reference, scaled_learning_rate(LEARNING_RATE, replicas),
        global_batch_size(PER_REPLICA_BATCH, replicas))
    plain = build()
    plain.set_weights(start)
    fit(plain, LEARNING_RATE, PER_REPLICA_BATCH)
    weights = distributed.get_weights()
    return {
        "model_replicas": replicas_of(distributed),
        **_mirrored_info(distributed),
        "loss_before": training_loss(start), "loss_after": training_loss(weights),
        "distance_same_global_batch": _relative_distance(weights, reference.get_weights(), start),
        "distance_plain_one_device": _relative_distance(weights, plain.get_weights(), start),
    }, distributed


def mirrored(workdir: Path) -> dict:
    """MirroredStrategy over 2 logical CPU devices: a linear head, a small mlp, a tiny CNN."""
    from shared.run.devices import configure_determinism, setup_devices

    info = setup_devices(logical_cpus=2)
    configure_determinism(0)
    from shared.models.families.cnn_scratch import build_cnn
    from shared.models.fit import global_batch_size
    from shared.data.images import make_image_dataset
    from shared.models.bundle import ModelBundle
    from shared.models.fit import arrays_dataset, compile_regressor, fit_regressor, replicas_of
    from shared.models.layers import build_mlp, linear_head

    def loss_of(build, x, y):
        def training_loss(weights):
            model = build()
            model.set_weights(weights)
            pred = np.asarray(model(x, training=True)).reshape(-1)
            return float(np.mean((pred - y) ** 2))
        return training_loss

    x, y = _tabular_data()
    x_val, y_val = _tabular_data(64, seed=1)

    # Unshuffled training rows: to build a model under a (non-default) strategy Keras first
    # draws one batch, which starts a pass over the data, so with reshuffle_each_iteration the
    # distributed run's first epoch uses the seeded shuffle's *second* permutation (still
    # seeded and repeatable). The comparison with one device needs the same row order.
    def fit_arrays(model, learning_rate, rows):
        compile_regressor(model, learning_rate)
        train = arrays_dataset((x, y), global_batch_size(rows, replicas_of(model)))
        return fit_regressor(model, train, (x_val, y_val), epochs=1)

    def build_linear():
        return linear_head(np.zeros(x.shape[1]), float(y.mean()))

    def build_small_mlp():  # dropout 0: masks are drawn per replica, they cannot match
        return build_mlp(x.shape[1], (16, 8), 0.0, 0.0, float(y.mean()))

    results, trained = {}, {}
    for name, build in (("linear", build_linear), ("mlp", build_small_mlp)):
        results[name], trained[name] = _train_pair(build, fit_arrays, loss_of(build, x, y),
                                                   info.strategy)
    # Saved as a project bundle, to be reloaded by a process without any strategy.
    save_bundle(ModelBundle("mirrored_mlp", ("tabular",), trained["mlp"]), workdir / "mirrored_mlp")
    results["reload"] = {"x": x_val.tolist(),
                         "predictions": trained["mlp"].predict(x_val, verbose=0).ravel().tolist()}

    paths, targets = _photo_data(workdir / "photos")
    val_paths, val_targets = _photo_data(workdir / "val_photos", n=32, seed=1)
    val_data = make_image_dataset(val_paths, val_targets, image_size=32, batch_size=32)
    images = np.concatenate(list(make_image_dataset(paths, image_size=32, batch_size=256)))

    def fit_photos(model, learning_rate, rows):
        compile_regressor(model, learning_rate)
        train = make_image_dataset(paths, targets, image_size=32,
                                   batch_size=global_batch_size(rows, replicas_of(model)))
        return fit_regressor(model, train, val_data, epochs=1)

    def build_tiny_cnn():
        return build_cnn(32, float(targets.mean()), channels=(4, 8), dropout=0.0)

    results["cnn"], _ = _train_pair(build_tiny_cnn, fit_photos,
                                    loss_of(build_tiny_cnn, images, targets), info.strategy)
    return {"describe": info.describe(), "replicas": info.replicas,
            "global_batch": global_batch_size(PER_REPLICA_BATCH, info.replicas), **results}


def multi_worker(data_dir: Path, models_dir: Path) -> dict:
    """One worker of a MultiWorkerMirroredStrategy cluster (``TF_CONFIG`` set by the parent):
    the project's own run (:func:`shared.run.start.start_run`), its ``mlp`` step evaluated and
    saved, and ``metrics.json`` written beside the models folder (by the chief only)."""
    import os

    import tensorflow as tf

    from shared.models.families import mlp
    from shared.run.records import write_run_metrics
    from shared.run.start import start_run

    exp = start_run(data_dir, models_dir, smoke=True)
    trained = mlp.train_mlp(exp.data, exp.cfg, n_configs=1, epochs=2)
    exp.evaluate(trained)
    metrics = write_run_metrics(exp, models_dir.parent / "metrics.json")
    bundle = trained.bundle
    task = json.loads(os.environ["TF_CONFIG"])["task"]
    return {"task_index": int(task["index"]), "seed": exp.cfg.seed, "device": exp.cfg.device,
            "replicas": exp.cfg.replicas, "is_chief": exp.cfg.is_chief,
            "multi_worker": isinstance(exp.cfg.strategy, tf.distribute.MultiWorkerMirroredStrategy),
            "model_replicas": int(bundle.estimator.distribute_strategy.num_replicas_in_sync),
            **_mirrored_info(bundle.estimator),
            "weights": [w.tolist() for w in bundle.estimator.get_weights()],
            "val_predictions": exp.predictions["mlp"]["val"].tolist(),
            "metrics": str(metrics) if metrics else None,
            "written": sorted(str(p.relative_to(models_dir.parent))  # the cache aside
                              for p in (*models_dir.rglob("*"), models_dir.parent / "metrics.json")
                              if p.is_file()),
            "saved": str(models_dir / "mlp")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=("mirrored", "multi_worker"))
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--models-dir", type=Path)
    args = parser.parse_args(argv)
    if args.scenario == "mirrored":
        result = mirrored(args.workdir)
    else:
        result = multi_worker(args.data_dir, args.models_dir)
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

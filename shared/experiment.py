"""One experiment run: the data, the shared split, and the bookkeeping every report needs.

:func:`prepare` loads the usable listings, reuses (or makes) the persisted split, fits the tabular
preprocessor on the training rows only, and returns an :class:`Experiment` that

* hands each model its inputs (tabular matrices, log-price targets, photo paths) per part;
* evaluates a trained :class:`~shared.modeling.ModelBundle` on validation and test in euros,
  keeps its predictions for plots and paired comparisons, and saves it under
  ``models/<name>/``;
* writes ``metrics.json``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared import config
from shared import features as feats
from shared.dataset import Dataset, load_dataset
from shared.evaluation import regression_metrics, write_metrics
from shared.modeling import ModelBundle
from shared.split import Split, load_or_make_split

PARTS = ("train", "val", "test")


@dataclass
class Experiment:
    dataset: Dataset
    split: Split
    models_dir: Path
    smoke: bool
    parts: dict[str, Dataset]
    preprocessor: object
    tabular: dict[str, np.ndarray]
    seed: int = config.SEED
    device: str = ""
    #: The ``tf.distribute.Strategy`` every Keras model is built, compiled and trained under
    #: (set by :func:`start_run`; None means the current one, the default strategy outside any
    #: scope) and its number of replicas in sync.
    strategy: object = None
    replicas: int = 1
    results: dict = field(default_factory=dict)
    predictions: dict = field(default_factory=dict)
    histories: dict = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def y_log(self, part: str) -> np.ndarray:
        """Log-price target of a part, shape (n,), float32."""
        return feats.log_target(self.parts[part].prices)

    def y_eur(self, part: str) -> np.ndarray:
        return self.parts[part].prices

    def paths(self, part: str) -> list[str]:
        return list(self.parts[part].image_paths)

    def global_batch(self, per_replica_batch: int) -> int:
        """Batch size for a tf.data pipeline: ``per_replica_batch`` rows on each replica
        (:func:`shared.devices.global_batch_size`; unchanged on one device)."""
        from shared.devices import global_batch_size

        return global_batch_size(per_replica_batch, self.replicas)

    def evaluate(self, bundle: ModelBundle, train_seconds: float, history: dict | None = None,
                 save: bool = True, predictions: dict | None = None) -> dict:
        """Score ``bundle`` on validation and test (EUR), record it, save it; return its record.

        ``predictions`` may pass precomputed {"val": eur, "test": eur} to avoid recomputation.
        """
        record = {"train_seconds": float(train_seconds), "params": bundle.params}
        self.predictions[bundle.name] = {}
        for part in ("val", "test"):
            pred = (predictions or {}).get(part)
            if pred is None:
                pred = bundle.predict_eur(self.parts[part])
            self.predictions[bundle.name][part] = np.asarray(pred, dtype=np.float64)
            record[part] = regression_metrics(self.y_eur(part), pred, bootstrap=(part == "test"))
        self.results[bundle.name] = record
        if history:
            self.histories[bundle.name] = history
        if save:
            bundle.save(self.models_dir / bundle.name)
        return record

    def dataset_info(self) -> dict:
        info = self.dataset.summary()
        info.update({"source": str(self.dataset.data_dir), "seed": self.seed,
                     "split": {p: int(len(self.parts[p].frame)) for p in PARTS},
                     "split_fingerprint": self.split.fingerprint,
                     "n_tabular_features": int(self.tabular["train"].shape[1])})
        return info

    def write_metrics(self, path: Path, extra_run: dict | None = None) -> None:
        run = {"device": self.device, "smoke": self.smoke,
               "seconds": round(time.time() - self.started, 1), **(extra_run or {})}
        write_metrics(path, self.dataset_info(), self.results, run)


def prepare(data_dir, models_dir, smoke: bool = False, seed: int = config.SEED) -> Experiment:
    """Load data, split, fit the tabular preprocessor on the training rows only."""
    dataset = load_dataset(data_dir)
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    split = load_or_make_split(dataset, models_dir, seed)
    parts = {name: dataset.subset(ids) for name, ids in split.parts().items()}
    preprocessor = feats.make_preprocessor()
    preprocessor.fit(parts["train"].frame)  # training rows only
    tabular = {name: np.asarray(preprocessor.transform(part.frame), dtype=np.float32)
               for name, part in parts.items()}
    return Experiment(dataset, split, models_dir, smoke, parts, preprocessor, tabular, seed)


def timed_step(exp: Experiment, name: str, train, log=print):
    """Run ``train()`` (which trains and evaluates model ``name`` on ``exp``), log its test MAE
    and wall time, and return what ``train`` returned."""
    start = time.perf_counter()
    result = train()
    log(f"{name}: test MAE {exp.results[name]['test']['mae']:.2f} EUR "
        f"({time.perf_counter() - start:.0f} s)")
    return result


def start_run(data_dir, models_dir, smoke: bool = False) -> Experiment:
    """The common start of every training run (both reports, ``python -m deliverableN.train``):
    devices set up (GPU memory growth, distribution strategy), seeds and deterministic ops
    configured, then :func:`prepare`. ``exp.device`` describes the device used; ``exp.strategy``
    and ``exp.replicas`` are the strategy the training steps run under."""
    from shared.devices import configure_determinism, setup_devices

    info = setup_devices()
    configure_determinism(config.SEED)
    exp = prepare(data_dir, models_dir, smoke=smoke)
    exp.device = info.describe()
    exp.strategy, exp.replicas = info.strategy, info.replicas
    return exp


def training_main(train_all, description: str, argv=None) -> int:
    """Command-line entry of ``python -m deliverableN.train``: :func:`start_run` with
    ``--data-dir`` / ``--models-dir`` / ``--smoke``, then ``train_all``."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-dir")
    parser.add_argument("--models-dir")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    exp = start_run(config.resolve_data_dir(args.data_dir),
                    config.resolve_models_dir(args.models_dir), smoke=args.smoke)
    train_all(exp)
    return 0

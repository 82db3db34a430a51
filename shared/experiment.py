"""One experiment run: the data, the shared split, and the bookkeeping every report needs.

:func:`prepare` loads the usable listings, reuses (or makes) the persisted split, fits the tabular
preprocessor on the training rows only, and returns an :class:`Experiment` that

* hands each model its inputs (tabular matrices, log-price targets, photo paths) per part;
* evaluates a trained :class:`~shared.modeling.ModelBundle` on validation and test in euros,
  calibrates its prediction intervals (:mod:`shared.intervals`: conformal quantile from the
  calibration part, which chooses nothing, width model from training rows) and measures their test coverage, keeps its
  predictions for plots and paired comparisons, and saves it under ``models/<name>/``;
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
from shared.intervals import (DEFAULT_COVERAGES, IntervalCalibration, fit_calibration,
                              interval_report)
from shared.modeling import ModelBundle
from shared.settings import Budget, budget_for
from shared.split import PART_NAMES, Split, load_or_make_split

PARTS = PART_NAMES  # ("train", "val", "cal", "test")


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
    budget: Budget | None = None  # epochs, search and photo sizes; default: by ``smoke``

    def __post_init__(self):
        if self.budget is None:
            self.budget = budget_for(self.smoke)

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

        ``predictions`` may pass precomputed {"val": eur, "test": eur} (and "cal" and "train",
        used by the interval calibration) to avoid recomputation.
        A bundle without an interval calibration gets one (:meth:`calibrate_intervals`); the
        record's ``intervals`` holds its method, calibration size and test coverage / width at
        each of :data:`~shared.intervals.DEFAULT_COVERAGES` the calibration supports (a tiny
        validation part cannot calibrate a 90% range).
        """
        record = {"train_seconds": float(train_seconds), "params": bundle.params}
        self.predictions[bundle.name] = {}
        for part in ("val", "test"):
            pred = (predictions or {}).get(part)
            if pred is None:
                pred = bundle.predict_eur(self.parts[part])
            self.predictions[bundle.name][part] = np.asarray(pred, dtype=np.float64)
            record[part] = regression_metrics(self.y_eur(part), pred, bootstrap=(part == "test"))
        if bundle.intervals is None:
            cal_pred = (predictions or {}).get("cal")
            if cal_pred is None:
                cal_pred = bundle.predict_eur(self.parts["cal"])
            bundle.intervals = self.calibrate_intervals(bundle, cal_pred,
                                                        (predictions or {}).get("train"))
        record["intervals"] = {
            "method": bundle.intervals.method, "calibration_rows": bundle.intervals.n,
            "test": interval_report(bundle.intervals, np.log(self.predictions[bundle.name]["test"]),
                                    self.parts["test"].frame, self.y_eur("test"),
                                    coverages=[c for c in DEFAULT_COVERAGES
                                               if c <= bundle.intervals.max_coverage])}
        self.results[bundle.name] = record
        if history:
            self.histories[bundle.name] = history
        if save:
            bundle.trained_on = self.provenance()
            bundle.save(self.models_dir / bundle.name)
        return record

    def calibrate_intervals(self, bundle: ModelBundle, cal_pred_eur,
                            train_pred_eur=None) -> IntervalCalibration:
        """Interval calibration of ``bundle``: conformal scores from its predictions on the
        calibration part (``cal_pred_eur``, (n_cal,) EUR: rows that chose nothing), width (difficulty) model from its predictions on the
        training rows, a seeded sample of at most ``budget.interval_difficulty_rows`` of them
        (``train_pred_eur``, (n_train,) EUR, when the caller has them; otherwise predicted here:
        one extra pass over those photos for a photo model). Test rows are never used."""
        train = self.parts["train"]
        rows = np.arange(len(train.frame))
        cap = self.budget.interval_difficulty_rows
        if len(rows) > cap:
            rows = np.sort(np.random.default_rng(self.seed).choice(rows, size=cap, replace=False))
            train = train.subset(train.ids[rows])
        train_pred_log = (np.log(np.asarray(train_pred_eur, dtype=np.float64))[rows]
                          if train_pred_eur is not None else bundle.predict_log(train))
        return fit_calibration(np.log(np.asarray(cal_pred_eur, dtype=np.float64)), self.y_log("cal"),
                               self.parts["cal"].frame, train_pred_log,
                               feats.log_target(train.prices), train.frame)

    def provenance(self) -> dict:
        """What a model trained in this run was fitted on (recorded in its saved metadata):
        the split's fingerprint (its usable listing IDs), seed and parts (which listing is in
        which part), and the sha256 of
        ``listings.csv`` (the rows' contents, prices included)."""
        return {"split_fingerprint": self.split.fingerprint, "split_seed": int(self.split.seed),
                "split_parts_sha256": self.split.parts_sha256(),
                "listings_sha256": self.dataset.csv_sha256}

    def dataset_info(self) -> dict:
        """The dataset section of ``metrics.json``: named by its directory name and the sha256
        of ``listings.csv`` (plus its project-relative path when inside the project), never by
        a machine's absolute path."""
        info = self.dataset.summary()
        info.pop("data_dir", None)
        info.update({**dataset_location(self.dataset.data_dir), "seed": self.seed,
                     "split": {p: int(len(self.parts[p].frame)) for p in PARTS},
                     "split_fingerprint": self.split.fingerprint,
                     "n_tabular_features": int(self.tabular["train"].shape[1])})
        return info

    def write_metrics(self, path: Path, extra_run: dict | None = None) -> None:
        """``metrics.json``; ``run.cpu`` records the CPU kind (:func:`shared.reproduce.cpu_kind`)
        so ``nox -s reproduce`` knows whether a rerun must match exactly."""
        from shared.reproduce import cpu_kind

        run = {"device": self.device, "smoke": self.smoke,
               "seconds": round(time.time() - self.started, 1), **(extra_run or {})}
        run.setdefault("cpu", cpu_kind())
        write_metrics(path, self.dataset_info(), self.results, run)


def dataset_location(data_dir) -> dict:
    """{"source": directory name, "source_path": path relative to the project (only when the
    directory is inside it)}: how reports and ``metrics.json`` name a dataset."""
    if data_dir is None:
        return {"source": None}
    path = Path(data_dir).resolve()
    out = {"source": path.name}
    try:
        out["source_path"] = str(path.relative_to(config.PROJECT_ROOT.resolve()))
    except ValueError:
        pass
    return out


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
    """Run ``train()`` (which trains and evaluates model ``name`` on ``exp``), log its validation
    MAE and wall time (test numbers are read once, in the results), and return what ``train``
    returned."""
    start = time.perf_counter()
    result = train()
    log(f"{name}: validation MAE {exp.results[name]['val']['mae']:.2f} EUR "
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


def training_main(run, deliverable: str, description: str, argv=None) -> int:
    """Command-line entry of ``python -m deliverableN.train``: ``run(data_dir, models_dir,
    smoke, output_dir)`` with ``--data-dir`` / ``--models-dir`` / ``--smoke`` / ``--out``.

    ``--out`` (where ``metrics.json`` goes) defaults to ``docs/<deliverable>/``, where
    ``nox -s <deliverable>`` writes it too (same run, same file); a smoke run defaults to
    ``<models-dir>/smoke-metrics/<deliverable>/`` so it never replaces the published numbers.
    """
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-dir")
    parser.add_argument("--models-dir")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--out", help="folder for metrics.json (default: docs/<deliverable>/; "
                                      "with --smoke: <models-dir>/smoke-metrics/<deliverable>/)")
    args = parser.parse_args(argv)
    models_dir = config.resolve_models_dir(args.models_dir)
    if args.out:
        out = Path(args.out)
    elif args.smoke:
        out = models_dir / "smoke-metrics" / deliverable
    else:
        out = config.DOCS_DIR / deliverable
    result = run(config.resolve_data_dir(args.data_dir), models_dir, smoke=args.smoke,
                 output_dir=out)
    print(f"metrics written to {result.metrics_path}")
    return 0

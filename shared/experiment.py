"""The one evaluate-calibrate-save loop of both deliverables, and the start of every training run.

Trainers (:mod:`shared.models`) take the run's :class:`~shared.data.ModelData` and
:class:`~shared.config.RunConfig` and return a :class:`Trained`: a fitted bundle, how long it
took, its learning curve. They never look at the test rows' prices, never score and never save.
:class:`Experiment` owns what happens next, for every model the same way
(:meth:`Experiment.evaluate`):

* validation and test metrics in euros (the test part is read here, once per model);
* the prediction-interval calibration (:mod:`shared.intervals`: conformal quantile from the
  calibration part, which chooses nothing; width model from training rows) and its test coverage;
* provenance (data, split, budget) recorded in the bundle, and the bundle saved under
  ``models/<name>/`` (by the chief only, in a multi-worker run);
* ``metrics.json`` (:meth:`Experiment.write_metrics`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from shared import config, settings
from shared import features as feats
from shared.bundles import ModelBundle
from shared.config import RunConfig
from shared.data import PARTS, ModelData, prepare_data
from shared.evaluation import mae, regression_metrics, write_metrics
from shared.intervals import DEFAULT_COVERAGES, IntervalCalibration, fit_calibration, interval_report
from shared.io import write_json_atomic


@dataclass
class Trained:
    """What a trainer returns.

    ``predict``: ``part -> predicted prices EUR (n,)`` computed from what the trainer already
    holds (e.g. cached photo features), so the evaluation need not recompute them; None: the
    evaluation predicts with the bundle. ``reseed``: ``seed -> predict`` of the chosen settings
    retrained with another seed (initialisation, shuffling, subsampling), for the seed study;
    None when the model has no cheap retrain. ``extra``: anything else the trainer measured that
    the run reports (e.g. feature-extraction stats).
    """

    bundle: ModelBundle
    seconds: float
    history: dict | None = None
    predict: Callable[[str], np.ndarray] | None = None
    reseed: Callable[[int], Callable[[str], np.ndarray]] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.bundle.name


def architecture_of(bundle: ModelBundle) -> dict:
    """For a Keras model: {"n_params": total weights, "architecture": one row per top-level layer
    (layer, type, output shape, parameters)}; {} for other estimators."""
    if not bundle.is_keras:
        return {}
    model = bundle.estimator
    rows = [{"layer": layer.name, "type": type(layer).__name__,
             "output_shape": str(getattr(getattr(layer, "output", None), "shape", "")),
             "params": int(layer.count_params())} for layer in model.layers]
    return {"n_params": int(model.count_params()), "architecture": rows}


def seeds_of(cfg: RunConfig) -> list[int]:
    """The seeds of the seed study: the run's seed (its reported models), then ``budget.seeds
    - 1`` others, far from the seeds a search gives its candidates (run seed + candidate index)."""
    return [cfg.seed] + [cfg.seed + 1000 * i for i in range(1, cfg.budget.seeds)]


def budget_fingerprint(budget: settings.Budget) -> str:
    """16 hex digits identifying a budget's every value (so a model trained under another budget,
    e.g. a smoke run's, is never taken for this run's)."""
    text = json.dumps(asdict(budget), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def provenance(data: ModelData, cfg: RunConfig) -> dict:
    """Everything that changes a model trained in this run, recorded in its saved metadata and
    compared before a saved model is reused: the data and split (:meth:`ModelData.provenance`),
    the budget (name and fingerprint) and the seed."""
    return {**data.provenance(), "budget": settings.budget_name(cfg.budget),
            "budget_fingerprint": budget_fingerprint(cfg.budget), "seed": int(cfg.seed)}


def provenance_difference(saved: dict, current: dict) -> str | None:
    """Why a model saved with provenance ``saved`` cannot be reused in a run of ``current``
    (one phrase), or None when they agree."""
    if not saved:
        return "the saved model does not record what it was trained on"
    if saved.get("budget_fingerprint") != current["budget_fingerprint"]:
        return (f"the saved model was trained under another budget ({saved.get('budget', 'unknown')}"
                f", this run: {current['budget']})")
    if saved.get("listings_sha256") != current["listings_sha256"]:
        return "the saved model was trained on another version of the data"
    differing = sorted(k for k in current if saved.get(k) != current[k])
    if differing:
        return "the saved model was trained on another split or settings (" + ", ".join(differing) + ")"
    return None


@dataclass
class Experiment:
    """The evaluation side of a run: its results, predictions and learning curves, filled by
    :meth:`evaluate` (and :meth:`evaluate_reused`) only."""

    data: ModelData
    cfg: RunConfig
    results: dict = field(default_factory=dict)
    predictions: dict = field(default_factory=dict)
    histories: dict = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def evaluate(self, trained: Trained, save: bool = True, log=print) -> dict:
        """Score ``trained`` on validation and test (EUR), calibrate its intervals, record it and
        save it; return its record."""
        start = time.perf_counter()
        bundle = trained.bundle
        record = {"train_seconds": float(trained.seconds), "params": bundle.params,
                  **architecture_of(bundle)}
        self._score(bundle, record, trained.predict)
        if trained.history:
            self.histories[bundle.name] = trained.history
        if save and self.cfg.is_chief:
            bundle.trained_on = provenance(self.data, self.cfg)
            bundle.save(self.cfg.models_dir / bundle.name)
        log(f"{bundle.name}: validation MAE {record['val']['mae']:.2f} EUR "
            f"({trained.seconds + time.perf_counter() - start:.0f} s)")
        return record

    def evaluate_reused(self, bundle: ModelBundle, val_pred_eur=None) -> dict:
        """Score a model loaded from an earlier run on this split, without saving it again."""
        start = time.perf_counter()
        record = {"reused": True, "params": bundle.params}
        self._score(bundle, record, {"val": val_pred_eur}.get if val_pred_eur is not None else None)
        record["predict_seconds"] = round(time.perf_counter() - start, 1)
        return record

    def _score(self, bundle: ModelBundle, record: dict, predict) -> None:
        """Validation and test metrics, interval calibration and its test report into ``record``
        (and ``self.results`` / ``self.predictions``)."""
        def predicted(part):
            pred = predict(part) if predict is not None else None
            return np.asarray(pred if pred is not None else bundle.predict_eur(self.data.parts[part]),
                              dtype=np.float64)

        self.predictions[bundle.name] = {}
        for part in ("val", "test"):
            self.predictions[bundle.name][part] = predicted(part)
            record[part] = regression_metrics(self.data.y_eur(part), self.predictions[bundle.name][part],
                                              bootstrap=(part == "test"))
        if bundle.intervals is None:
            train_pred = predict("train") if predict is not None else None
            bundle.intervals = self.calibrate_intervals(bundle, predicted("cal"), train_pred)
        record["intervals"] = {
            "method": bundle.intervals.method, "calibration_rows": bundle.intervals.n,
            "test": interval_report(bundle.intervals, np.log(self.predictions[bundle.name]["test"]),
                                    self.data.parts["test"].frame, self.data.y_eur("test"),
                                    coverages=[c for c in DEFAULT_COVERAGES
                                               if c <= bundle.intervals.max_coverage])}
        self.results[bundle.name] = record

    def calibrate_intervals(self, bundle: ModelBundle, cal_pred_eur,
                            train_pred_eur=None) -> IntervalCalibration:
        """Interval calibration of ``bundle``: conformal scores from its predictions on the
        calibration part (``cal_pred_eur``, (n_cal,) EUR: rows that chose nothing), width
        (difficulty) model from its predictions on a seeded sample of at most
        ``budget.interval_difficulty_rows`` training rows (``train_pred_eur``, (n_train,) EUR, when
        the trainer has them; otherwise predicted here). Test rows are never used."""
        train = self.data.parts["train"]
        rows = np.arange(len(train.frame))
        cap = self.cfg.budget.interval_difficulty_rows
        if len(rows) > cap:
            rows = np.sort(np.random.default_rng(self.cfg.seed).choice(rows, size=cap, replace=False))
            train = train.subset(train.ids[rows])
        train_pred_log = (np.log(np.asarray(train_pred_eur, dtype=np.float64))[rows]
                          if train_pred_eur is not None else bundle.predict_log(train))
        return fit_calibration(np.log(np.asarray(cal_pred_eur, dtype=np.float64)),
                               self.data.y_log("cal"), self.data.parts["cal"].frame, train_pred_log,
                               feats.log_target(train.prices), train.frame)

    def record_seeds(self, name: str, reseed, log=print) -> list[dict]:
        """Retrain ``name``'s chosen settings with the other seeds of :func:`seeds_of` and record
        ``results[name]["seeds"] = [{"seed", "test_mae"}]``: first the run's own model (its
        entry says ``"reported": true``), then a retrain (``reseed(seed) -> predict``) per seed.
        Test rows are only scored here, never used to choose."""
        y = self.data.y_eur("test")
        records = [{"seed": int(self.cfg.seed), "reported": True,
                    "test_mae": mae(y, self.predictions[name]["test"])}]
        for seed in seeds_of(self.cfg)[1:]:
            records.append({"seed": int(seed), "test_mae": mae(y, reseed(seed)("test"))})
        self.results[name]["seeds"] = records
        values = [r["test_mae"] for r in records]
        log(f"{name}: test MAE over {len(values)} seeds {np.mean(values):.2f} "
            f"± {np.std(values, ddof=1):.2f} EUR")
        return records

    def forget(self, name: str) -> None:
        """Drop a model's results (a candidate that is not reported)."""
        for store in (self.results, self.predictions, self.histories):
            store.pop(name, None)

    def dataset_info(self) -> dict:
        """The dataset section of ``metrics.json``: named by its directory name and the sha256
        of ``listings.csv`` (plus its project-relative path when inside the project), never by
        a machine's absolute path."""
        info = self.data.dataset.summary()
        info.pop("data_dir", None)
        info.update({**dataset_location(self.data.dataset.data_dir), "seed": self.cfg.seed,
                     "split": {p: int(len(self.data.parts[p].frame)) for p in PARTS},
                     "split_fingerprint": self.data.split.fingerprint,
                     "n_tabular_features": int(self.data.tabular["train"].shape[1])})
        return info

    def write_metrics(self, path: Path, extra_run: dict | None = None) -> Path | None:
        """Write ``metrics.json`` (the chief only; None elsewhere). ``run.cpu`` records the CPU
        kind (:func:`shared.reproduce.cpu_kind`) so ``nox -s reproduce`` knows whether a rerun
        must match exactly."""
        from shared.reproduce import cpu_kind

        if not self.cfg.is_chief:
            return None
        run = {"device": self.cfg.device, "smoke": self.cfg.smoke,
               "budget": settings.budget_name(self.cfg.budget),
               "seconds": round(time.time() - self.started, 1), **(extra_run or {})}
        run.setdefault("cpu", cpu_kind())
        write_metrics(path, self.dataset_info(), self.results, run)
        return path


def dataset_location(data_dir) -> dict:
    """{"source": directory name, "source_path": path relative to the project (only when the
    directory is inside it)}: how reports and ``metrics.json`` name a dataset."""
    if data_dir is None:
        return {"source": None}
    path = Path(data_dir).resolve()
    out = {"source": path.name}
    if path.is_relative_to(config.PROJECT_ROOT.resolve()):
        out["source_path"] = str(path.relative_to(config.PROJECT_ROOT.resolve()))
    return out


def prepare(data_dir, models_dir, smoke: bool = False, budget: settings.Budget | None = None,
            seed: int = config.SEED) -> Experiment:
    """An :class:`Experiment` on the current devices (no device setup): the data prepared and a
    :class:`~shared.config.RunConfig` with the budget of ``smoke`` (or ``budget``). For tests,
    benchmarks and secondary datasets; training runs start with :func:`start_run`."""
    cfg = RunConfig(data_dir=Path(data_dir), models_dir=Path(models_dir),
                    budget=budget or settings.budget_for(smoke), smoke=smoke, seed=seed)
    return Experiment(prepare_data(cfg.data_dir, cfg.models_dir, seed), cfg)


def start_run(data_dir, models_dir, smoke: bool = False,
              budget: settings.Budget | None = None) -> Experiment:
    """The common start of every training run (both reports, ``python -m deliverableN.train``):
    the run configuration resolved once (devices, distribution strategy, budget, seed,
    deterministic ops), then the data prepared (:func:`shared.data.prepare_data`)."""
    from shared.devices import configure_determinism, setup_devices

    info = setup_devices()
    configure_determinism(config.SEED)
    cfg = RunConfig(data_dir=Path(data_dir), models_dir=Path(models_dir),
                    budget=budget or settings.budget_for(smoke), smoke=smoke, seed=config.SEED,
                    device=info.describe(), strategy=info.strategy, replicas=info.replicas,
                    is_chief=info.is_chief)
    return Experiment(prepare_data(cfg.data_dir, cfg.models_dir, cfg.seed, persist=cfg.is_chief),
                      cfg)


def training_main(run, deliverable: str, description: str, argv=None) -> int:
    """Command-line entry of ``python -m deliverableN.train``: ``run(data_dir, models_dir,
    smoke, output_dir)`` with ``--data-dir`` / ``--models-dir`` / ``--smoke`` / ``--out``.

    ``--out`` (where ``metrics.json`` goes) defaults to ``docs/<deliverable>/``, where
    ``nox -s <deliverable>`` writes it too (same run, same file); a smoke run defaults to a
    scratch folder for both its models and its metrics, so it never replaces the published
    numbers nor the real models.
    """
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data-dir")
    parser.add_argument("--models-dir")
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--budget", choices=sorted(settings.BUDGETS),
                        help="training budget (default: full, or smoke with --smoke)")
    parser.add_argument("--out", help="folder for metrics.json (default: docs/<deliverable>/; "
                                      "with --smoke: <models-dir>/smoke-metrics/<deliverable>/, "
                                      "the models dir being a scratch folder unless given)")
    args = parser.parse_args(argv)
    models_dir = (config.smoke_models_dir(args.models_dir) if args.smoke
                  else config.resolve_models_dir(args.models_dir))
    if args.out:
        out = Path(args.out)
    elif args.smoke:
        out = models_dir / "smoke-metrics" / deliverable
    else:
        out = config.DOCS_DIR / deliverable
    result = run(config.resolve_data_dir(args.data_dir), models_dir, smoke=args.smoke,
                 output_dir=out, budget=settings.budget_for(args.smoke, args.budget))
    print(f"metrics written to {result.metrics_path}")
    return 0


def save_json_if_chief(cfg: RunConfig, path: Path, data) -> Path | None:
    """Write a run artefact (JSON) only on the chief."""
    return write_json_atomic(path, data) if cfg.is_chief else None

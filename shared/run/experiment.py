"""The one train-evaluate-calibrate-save loop of both deliverables.

An :class:`Experiment` is a run: its data (:class:`~shared.features.model_data.ModelData`), its
configuration (:class:`~shared.run.config.RunConfig`) and everything it produces. Trainers
(:mod:`shared.models.families`, found through :mod:`shared.models.registry`) see it as their
``run`` (:class:`shared.models.spec.Run`): the data, the models trained or reused so far, the
cached photo features. They never look at the test rows' prices, never score and never save.
What happens next is the same for every model (:meth:`Experiment.evaluate`):

* validation and test metrics in euros (the test part is read here, once per model);
* the prediction-interval calibration (:mod:`shared.evaluation.intervals`: conformal quantile
  from the calibration part, which chooses nothing; width model from training rows) and its
  test coverage;
* provenance (data, split, budget) recorded in the bundle, and the bundle saved under
  ``models/<name>/`` (by the chief only, in a multi-worker run).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from shared.evaluation.intervals import (CALIBRATION_PARTS, DEFAULT_COVERAGES, fit_calibration,
                                        interval_report)
from shared.evaluation.metrics import lowest, mae, regression_metrics
from shared.features import tabular as feats
from shared.features.cache import part_features
from shared.features.model_data import ModelData
from shared.models import registry
from shared.models.bundle import ModelBundle
from shared.models.fit import in_strategy
from shared.models.saved import ModelLoadError, load_bundle, save_bundle
from shared.models.spec import Trained
from shared.run.config import RunConfig
from shared.run.records import architecture_of, provenance, provenance_difference

log = logging.getLogger(__name__)


@dataclass
class Experiment:
    """A run: what it was given (``data``, ``cfg``) and what it produced. ``bundles``: every
    model in use, trained here (calibrated) or reused; ``trained``: what this run's trainers
    returned; ``results`` / ``predictions`` / ``histories``: filled by :meth:`evaluate` and
    :meth:`evaluate_reused` only; ``origin``: how each reused or retrained model was obtained;
    ``shared``: what one trainer leaves for a later one; ``extraction``: feature-cache stats."""

    data: ModelData
    cfg: RunConfig
    results: dict = field(default_factory=dict)
    predictions: dict = field(default_factory=dict)
    histories: dict = field(default_factory=dict)
    bundles: dict = field(default_factory=dict)
    trained: dict = field(default_factory=dict)
    origin: dict = field(default_factory=dict)
    shared: dict = field(default_factory=dict)
    extraction: dict = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    _features: dict = field(default_factory=dict, repr=False)
    _val_prices: dict = field(default_factory=dict, repr=False)
    _reseeds: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ what trainers see

    def bundle(self, name: str) -> ModelBundle:
        return self.bundles[name]

    def has(self, name: str) -> bool:
        return name in self.bundles

    def features(self, backbone: str, image_size: int, flip: bool = False) -> dict:
        """{part: (n, D) float32} cached backbone features, extracted once per run."""
        key = (backbone, int(image_size), bool(flip))
        if key not in self._features:
            with in_strategy(self.cfg):
                self._features[key], stats = part_features(self.data, *key)
            self.extraction[f"{backbone}@{image_size}" + ("-flip" if flip else "")] = stats
        return self._features[key]

    def prices(self, name: str, part: str) -> np.ndarray:
        """(n,) predicted EUR of model ``name`` on ``part``, as evaluated when it was."""
        if part in self.predictions.get(name, {}):
            return self.predictions[name][part]
        if part == "val" and name in self._val_prices:
            return self._val_prices[name]
        if name in self.trained:
            return self.trained[name].prices(part, self.data)
        return self.bundles[name].predict_eur(self.data.parts[part])

    def val_mae(self, name: str) -> float:
        """Validation MAE (EUR) of model ``name`` (evaluated or not)."""
        if name in self.results:
            return self.results[name]["val"]["mae"]
        if name not in self._val_prices:
            self._val_prices[name] = self.prices(name, "val")
        return mae(self.data.y_eur("val"), self._val_prices[name])

    def best_on_validation(self, names) -> str:
        """The model among ``names`` with the lowest validation MAE (ties: the first)."""
        return lowest(list(names), self.val_mae)

    def reseed(self, name: str):
        """``seed -> predict`` retraining ``name``'s chosen settings (its family's reseed), or
        None when it has no cheap retrain. Each (model, seed) is trained once per run: a model
        that two blends share is retrained once for both."""
        spec = registry.spec(name)
        if spec.reseed is None:
            return None
        if name not in self._reseeds:
            self._reseeds[name] = (spec.reseed(self, self.bundles[name]), {})
        retrain, done = self._reseeds[name]

        def reseeded(seed: int):
            if seed not in done:
                done[seed] = functools.cache(retrain(seed))
            return done[seed]

        return reseeded

    # ------------------------------------------------------------------ training

    def train(self, names) -> dict[str, Trained]:
        """Train the named models and the ones they need (``after``), in training order, each
        evaluated, calibrated and saved as soon as it is trained; returns them."""
        wanted = set(names)
        for name in list(wanted):
            wanted.update(registry.spec(name).after)
        done = {}
        for spec in registry.specs():
            if spec.name in wanted:
                trained = spec.train(self)
                trained.bundle = dataclasses.replace(
                    trained.bundle, family=registry.family_of(spec.name).name)
                self.trained[spec.name] = done[spec.name] = trained
                self.evaluate(trained)
        return done

    def reuse_or_train(self, names) -> None:
        """Reuse the saved models of ``names`` trained on this split of this data under this
        budget (``origin``: "reused"); train the others (a model a reference ``after`` needs is
        trained with it), except references declared "if_saved", which are left out."""
        current = provenance(self.data, self.cfg)
        missing = []
        for name in names:
            reason = self._try_reuse(name, current)
            if reason is None:
                continue
            if registry.spec(name).reference == "if_saved":
                self.origin[name] = f"not used: {reason}"
            else:
                self.origin[name] = "trained" if reason == "missing" else f"retrained: {reason}"
                missing.append(name)
        for name in list(missing):
            for needed in registry.spec(name).after:
                if needed not in missing:
                    missing.append(needed)
                    self.origin[needed] = f"retrained with {name}"
        if missing:
            log.info("training the missing deliverable-1 models: %s", ", ".join(missing))
            self.train(missing)

    def _try_reuse(self, name: str, current: dict) -> str | None:
        """Load ``models/<name>`` into :attr:`bundles` when it fits this run; else why not."""
        directory = self.cfg.models_dir / name
        if not (directory / "metadata.json").is_file():
            return "missing"
        try:
            bundle = load_bundle(directory)
        except ModelLoadError as exc:  # the reason, without this machine's path to the models
            return str(exc).replace(str(directory), f"models/{name}")
        reason = provenance_difference(bundle.trained_on, current)
        if reason is None:
            self.bundles[name], self.origin[name] = bundle, "reused"
        return reason

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, trained: Trained, save: bool = True) -> dict:
        """Score ``trained`` on validation and test (EUR), calibrate its intervals, record it and
        save it (the calibrated bundle, with its provenance); return its record."""
        start = time.perf_counter()
        bundle = trained.bundle
        record = {"train_seconds": float(trained.seconds), "params": bundle.params,
                  **architecture_of(bundle)}
        calibrated = self._score(bundle, record, trained)
        calibrated = dataclasses.replace(calibrated, trained_on=provenance(self.data, self.cfg))
        self.bundles[bundle.name] = calibrated
        if trained.history:
            self.histories[bundle.name] = trained.history
        if save and self.cfg.is_chief:
            save_bundle(calibrated, self.cfg.models_dir / bundle.name)
        log.info("%s: validation MAE %.2f EUR (%.0f s)", bundle.name, record["val"]["mae"],
                 trained.seconds + time.perf_counter() - start)
        return record

    def evaluate_reused(self, name: str) -> dict:
        """Score a model loaded from an earlier run on this split, without saving it again."""
        start = time.perf_counter()
        bundle = self.bundles[name]
        record = {"reused": True, "params": bundle.params}
        self._score(bundle, record, None)
        record["predict_seconds"] = round(time.perf_counter() - start, 1)
        return record

    def _score(self, bundle: ModelBundle, record: dict, trained: Trained | None) -> ModelBundle:
        """Validation and test metrics and the intervals' test report into ``record`` (and
        :attr:`results` / :attr:`predictions`); returns the bundle with its interval calibration
        (fitted now when it has none; ``bundle`` itself is left as it was)."""
        name = bundle.name
        self.predictions[name] = {}
        for part in ("val", "test"):
            self.predictions[name][part] = (trained.prices(part, self.data) if trained
                                            else self.prices(name, part))
            record[part] = regression_metrics(self.data.y_eur(part), self.predictions[name][part],
                                              seed=self.cfg.seed if part == "test" else None)
        cal_prices = self._prices(bundle, trained, "cal")
        if bundle.intervals is None:
            own = (trained is not None and ("train" in trained.known or trained.predict))
            prices = {p: self.predictions[name][p] if p == "val" else
                      cal_prices if p == "cal" else self._prices(bundle, trained, p)
                      for p in CALIBRATION_PARTS}
            bundle = dataclasses.replace(bundle, intervals=self.calibrate_intervals(
                bundle, prices, trained.prices("train", self.data) if own else None))
        earlier = bundle.intervals.recalibrated(np.log(cal_prices), self.data.y_log("cal"),
                                                self.data.parts["cal"].frame, mondrian=False)
        test_log = np.log(self.predictions[name]["test"])
        record["intervals"] = {
            "method": bundle.intervals.method, "calibration_rows": bundle.intervals.n,
            "calibration_parts": list(CALIBRATION_PARTS),
            **{key: interval_report(calibration, test_log, self.data.parts["test"].frame,
                                    self.data.y_eur("test"), seed=self.cfg.seed,
                                    coverages=[c for c in DEFAULT_COVERAGES
                                               if c <= calibration.max_coverage])
               for key, calibration in (("test", bundle.intervals),
                                        ("test_earlier_method", earlier))}}
        self.results[name] = record
        return bundle

    def _prices(self, bundle, trained, part):
        return trained.prices(part, self.data) if trained else bundle.predict_eur(
            self.data.parts[part])

    def difficulty_sample(self):
        """(rows, dataset): the training rows whose residuals fit the interval width model, at
        most ``budget.run.interval_difficulty_rows`` of them sampled with the seed
        ``cfg.seed_for("run")`` (``rows``: their positions in the training part)."""
        train = self.data.parts["train"]
        rows = np.arange(len(train.frame))
        cap = self.cfg.budget.run.interval_difficulty_rows
        if len(rows) > cap:
            rng = np.random.default_rng(self.cfg.seed_for("run"))
            rows = np.sort(rng.choice(rows, size=cap, replace=False))
            train = train.subset(train.ids[rows])
        return rows, train

    def calibrate_intervals(self, bundle: ModelBundle, pred_eur: dict, train_pred_eur=None):
        """Interval calibration of ``bundle``: conformal scores from its predictions on the
        parts of :data:`~shared.evaluation.intervals.CALIBRATION_PARTS` (``pred_eur``: {part:
        (n_part,) EUR}), width (difficulty) model from its predictions on a seeded sample of at
        most ``budget.run.interval_difficulty_rows`` training rows (``train_pred_eur``,
        (n_train,) EUR, when the trainer has them; otherwise predicted here). Test rows are
        never used."""
        rows, train = self.difficulty_sample()
        train_pred_log = (np.log(np.asarray(train_pred_eur, dtype=np.float64))[rows]
                          if train_pred_eur is not None else bundle.predict_log(train))
        pred = np.concatenate([np.asarray(pred_eur[p], dtype=np.float64)
                               for p in CALIBRATION_PARTS])
        return fit_calibration(np.log(pred),
                               np.concatenate([self.data.y_log(p) for p in CALIBRATION_PARTS]),
                               pd.concat([self.data.parts[p].frame for p in CALIBRATION_PARTS],
                                         ignore_index=True),
                               train_pred_log, feats.log_target(train.prices), train.frame)

    def seeds(self) -> list[int]:
        """The seeds of the seed study: the run's (its reported models), then
        ``budget.run.seeds - 1`` others, far from the seeds a search gives its candidates."""
        return [self.cfg.seed_for("seed_study", i) for i in range(self.cfg.budget.run.seeds)]

    def record_seeds(self, name: str) -> list[dict] | None:
        """Retrain ``name``'s chosen settings with the other seeds of :meth:`seeds` and record
        ``results[name]["seeds"] = [{"seed", "test_mae"}]``: first the run's own model (its
        entry says ``"reported": true``), then a retrain per seed. A model without a cheap
        retrain records why instead (``seeds_skipped``). Test rows are only scored here."""
        reseed = self.reseed(name)
        if reseed is None:
            self.results[name]["seeds_skipped"] = ("retrained end to end on every photo; too "
                                                   "slow for the budget")
            return None
        y = self.data.y_eur("test")
        seeds = self.seeds()
        records = [{"seed": seeds[0], "reported": True,
                    "test_mae": mae(y, self.predictions[name]["test"])}]
        for seed in seeds[1:]:
            records.append({"seed": int(seed), "test_mae": mae(y, reseed(seed)("test"))})
        self.results[name]["seeds"] = records
        values = [r["test_mae"] for r in records]
        log.info("%s: test MAE over %d seeds %.2f ± %.2f EUR", name, len(values),
                 np.mean(values), np.std(values, ddof=1))
        return records

    def forget(self, name: str) -> None:
        """Drop a model's results (a candidate that is not reported)."""
        for store in (self.results, self.predictions, self.histories):
            store.pop(name, None)

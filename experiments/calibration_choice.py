"""Which prediction-interval calibration to use: the options compared on the validation and
calibration parts only (issue 34).

For each saved model, every option is fitted and scored on the validation and calibration parts
of its split two ways: host-grouped K-fold cross-validation over val ∪ cal, repeated over
``--reps`` shufflings of the host groups (each held-out fold scored by each option fitted on the
other folds, their validation and calibration rows in those roles), and transfer (fitted on one
part, scored on the other; the options needing both parts left out). Host groups are the split's
(:func:`shared.data.split.listing_groups`: same ``Host ID`` or byte-identical photo).

The options (:func:`options`): the earlier method (pooled quantile, σ from a seeded sample of
training rows, quantiles from cal); Mondrian (room type x predicted-price band) with σ from
training rows, σ = 1 or σ from the validation rows; pooled with σ from val; pooled and Mondrian
with quantiles from val ∪ cal (Mondrian: the project's current method); and, when ``mapie`` is
installed (it is no dependency of the project) and the model is tabular, CQR on quantile
gradient boosting fitted on the training rows with hgb's chosen settings.

Printed per option at 80% and 90% (stdout; progress on stderr): overall coverage, median width
(EUR), coverage per room type and per predicted-price band (mean over repetitions), and the worst
deviation from nominal over the groups of at least 100 listings.

**It reads no test row**: the models predict the training sample and the validation and
calibration parts only (:func:`predict_part` refuses any other part); no test price is used. The
adopted method's test coverage is in the deliverables' reports. Run from the project root, with
models trained on the same data and split::

    python -m experiments.calibration_choice select --models-dir models \\
        --data-dir data/airbnb-madrid-10k --models hgb,blend --reps 10
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

from shared import environment
from shared.data.split import listing_groups
from shared.evaluation.conformal import predicted_band, room_types
from shared.evaluation.intervals import fit_calibration, level_order
from shared.features import tabular as feats
from shared.models import saved
from shared.models.files import ModelLoadError
from shared.run.start import prepare

log = logging.getLogger(__name__)

COVERAGES = (0.8, 0.9)
#: The only parts a model predicts here (the training part: a seeded sample); never "test".
PREDICTED_PARTS = ("train", "val", "cal")
FOLDS = 5
REPS = 10
#: The worst deviation from nominal is taken over the groups of at least this many listings.
MIN_REPORTED_ROWS = 100
CQR_SKIPPED = "CQR skipped: mapie not installed"
#: hgb's chosen settings the quantile gradient boosting of CQR reuses (with its number of trees).
HGB_SETTINGS = ("learning_rate", "max_leaf_nodes", "min_samples_leaf", "l2_regularization", "max_features")


# --------------------------------------------------------------------------- rows

@dataclass(frozen=True)
class Rows:
    """Listings with one model's predictions: ``pred`` and ``y`` predicted and true log price
    (n,), ``eur`` true price (n,), ``frame`` (ID, Room Type), ``group`` host group (n,) or None,
    ``x`` tabular features (n, d) or None (only CQR reads them)."""

    pred: np.ndarray
    y: np.ndarray
    eur: np.ndarray
    frame: pd.DataFrame
    group: np.ndarray | None = None
    x: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.pred)

    def take(self, index) -> Rows:
        return Rows(self.pred[index], self.y[index], self.eur[index],
                    self.frame.iloc[index].reset_index(drop=True),
                    None if self.group is None else self.group[index],
                    None if self.x is None else self.x[index])

    @staticmethod
    def concat(first: Rows, second: Rows) -> Rows:
        def both(name):
            a, b = getattr(first, name), getattr(second, name)
            return None if a is None or b is None else np.concatenate([a, b])
        frame = pd.concat([first.frame, second.frame], ignore_index=True)
        return Rows(both("pred"), both("y"), both("eur"), frame, both("group"), both("x"))


def predict_part(bundle, dataset, part: str) -> np.ndarray:
    """(n,) predicted log price of ``dataset`` (rows of ``part``); refuses every part but
    :data:`PREDICTED_PARTS`: the test part is never predicted here."""
    if part not in PREDICTED_PARTS:
        raise ValueError(f"calibration_choice predicts only {PREDICTED_PARTS}, not {part!r}")
    return np.asarray(bundle.predict_log(dataset), dtype=np.float64).reshape(-1)


def model_rows(exp, bundle, with_x: bool) -> dict[str, Rows]:
    """{"train" (the sample), "val", "cal": :class:`Rows`} of ``bundle`` (host groups for val
    and cal, tabular features for val and cal when ``with_x``)."""
    out = {}
    for part in PREDICTED_PARTS:
        dataset = exp.difficulty_sample()[1] if part == "train" else exp.data.parts[part]
        log.info("  %s: predicting %d %s rows", bundle.name, len(dataset.frame), part)
        rows = Rows(predict_part(bundle, dataset, part),
                    np.asarray(feats.log_target(dataset.prices), dtype=np.float64),
                    np.asarray(dataset.prices, dtype=np.float64),
                    dataset.frame.reindex(columns=["ID", "Room Type"]).reset_index(drop=True))
        if part != "train":
            rows = replace(rows, group=listing_groups(dataset),
                           x=np.asarray(exp.data.tabular[part]) if with_x else None)
        out[part] = rows
    return out


def load_model(exp, models_dir: Path, name: str):
    """``models_dir/name`` (a blend with its members), refused unless it was trained on the data
    and split of ``exp`` (else its validation or calibration rows may be its training rows)."""
    bundle = saved.load_bundle(models_dir / name)
    current = exp.data.provenance()
    differing = sorted(k for k in current if bundle.trained_on.get(k) != current[k])
    if differing:
        raise ModelLoadError(f"{models_dir / name}: not trained on this data and split "
                             f"({', '.join(differing)} differ); retrain it or pass the data "
                             "directory it was trained on")
    return bundle


# --------------------------------------------------------------------------- options

@dataclass(frozen=True)
class Option:
    """A calibration option: ``fit(fit_val, fit_cal, train) -> interval`` with ``interval(rows,
    c) -> (low, high)`` EUR; ``needs_val``: it uses the validation rows too (no transfer)."""

    name: str
    fit: Callable
    needs_val: bool


def package_option(name: str, mondrian: bool, sigma: str, quantile_rows: str) -> Option:
    """An option made of :func:`fit_calibration`: σ from the training sample (``"train"``), from
    the fitting rows' validation rows (``"val"``) or none (σ = 1); quantiles from the fitting
    rows' calibration rows (``"cal"``) or from their validation and calibration rows."""
    def fit(fit_val, fit_cal, train):
        q = fit_cal if quantile_rows == "cal" else Rows.concat(fit_val, fit_cal)
        s = {"train": train, "val": fit_val, "none": None}[sigma]
        extra = () if s is None else (s.pred, s.y, s.frame)
        calibration = fit_calibration(q.pred, q.y, q.frame, *extra, mondrian=mondrian)
        return lambda rows, c: calibration.interval(rows.pred, rows.frame, c)
    return Option(name, fit, sigma == "val" or quantile_rows != "cal")


def cqr_option(name: str, models: dict, quantile_rows: str) -> Option:
    """Conformalized quantile regression (Romano et al. 2019): MAPIE's
    ``ConformalizedQuantileRegressor`` on the prefit [lower, upper, median] quantile models of
    each coverage, symmetric correction; widened to contain the point prediction (the project
    promises low <= predicted <= high)."""
    from mapie.regression import ConformalizedQuantileRegressor

    def fit(fit_val, fit_cal, _train):
        rows = fit_cal if quantile_rows == "cal" else Rows.concat(fit_val, fit_cal)
        cqr = {c: ConformalizedQuantileRegressor(list(m), confidence_level=c, prefit=True)
               .conformalize(rows.x, rows.y) for c, m in models.items()}

        def interval(scored: Rows, coverage: float):
            _, bounds = cqr[coverage].predict_interval(scored.x, symmetric_correction=True)
            return (np.exp(np.minimum(bounds[:, 0, 0], scored.pred)),
                    np.exp(np.maximum(bounds[:, 1, 0], scored.pred)))
        return interval
    return Option(name, fit, quantile_rows != "cal")


def options(cqr_models: dict | None) -> list[Option]:
    """Every option compared (CQR only with its quantile models)."""
    out = [package_option("earlier: pooled, σ train, cal", False, "train", "cal"),
           package_option("Mondrian, σ train, cal", True, "train", "cal"),
           package_option("Mondrian, σ = 1, cal", True, "none", "cal"),
           package_option("pooled, σ from val, cal", False, "val", "cal"),
           package_option("Mondrian, σ from val, cal", True, "val", "cal"),
           package_option("pooled, σ train, val+cal", False, "train", "val+cal"),
           package_option("Mondrian, σ train, val+cal (current)", True, "train", "val+cal")]
    if cqr_models is not None:
        out += [cqr_option(f"CQR (MAPIE), {q}", cqr_models, q) for q in ("cal", "val+cal")]
    return out


def is_tabular(bundle) -> bool:
    """The model reads the tabular features only (a blend: all its members do)."""
    members = getattr(bundle.estimator, "members", None)
    if members is not None:
        return all(is_tabular(m) for m in members)
    return tuple(bundle.inputs) == ("tabular",)


def hgb_settings(models_dir: Path, bundle) -> dict:
    """HistGradientBoostingRegressor settings: hgb's chosen ones and number of trees (from the
    model itself when it is a gradient boosting model, else from ``models_dir/hgb``; sklearn's
    defaults without either). No early stopping: the validation rows stay out of the fit."""
    params = bundle.params if "n_trees" in bundle.params else {}
    if not params and (models_dir / "hgb" / "metadata.json").is_file():
        params = saved.load_bundle(models_dir / "hgb").params
    settings = {k: params[k] for k in HGB_SETTINGS if k in params}
    if "n_trees" in params:
        settings["max_iter"] = int(params["n_trees"])
    return settings


def cqr_models(exp, models_dir: Path, bundle) -> dict | None:
    """{coverage: [lower, upper, median] quantile models} fitted on every training row, or None
    (the reason printed) when mapie is missing or the model is not tabular."""
    if importlib.util.find_spec("mapie") is None:
        print(CQR_SKIPPED)
        return None
    if not is_tabular(bundle):
        print(f"CQR skipped: {bundle.name} is not a tabular model")
        return None
    from sklearn.ensemble import HistGradientBoostingRegressor

    settings = hgb_settings(models_dir, bundle)
    log.info("  %s: quantile gradient boosting for CQR (%s)", bundle.name, settings or "defaults")
    x, y = exp.data.tabular["train"], exp.data.y_log("train")
    return {c: [HistGradientBoostingRegressor(loss="quantile", quantile=q, early_stopping=False,
                                              random_state=exp.cfg.seed_for("run"), **settings
                                              ).fit(x, y)
                for q in ((1 - c) / 2, (1 + c) / 2, 0.5)] for c in COVERAGES}


# --------------------------------------------------------------------------- scoring

def empty_results(opts, reps: int, n: int) -> dict:
    return {o.name: {c: {"hit": np.zeros((reps, n), dtype=bool), "width": np.zeros((reps, n))}
                     for c in COVERAGES} for o in opts}


def score(interval, rows: Rows, out: dict, index, rep: int) -> None:
    """Hits and widths (EUR) of ``rows`` into positions ``index`` of repetition ``rep``."""
    for c in COVERAGES:
        low, high = interval(rows, c)
        out[c]["hit"][rep, index] = (rows.eur >= low) & (rows.eur <= high)
        out[c]["width"][rep, index] = high - low


def cross_validate(parts: dict, opts, reps: int, folds: int, seed: int) -> tuple[dict, Rows]:
    """Host-grouped ``folds``-fold CV over val ∪ cal, ``reps`` seeded shufflings of the host
    groups: ({option: {c: {"hit", "width": (reps, n)}}}, the val ∪ cal rows)."""
    rows = Rows.concat(parts["val"], parts["cal"])
    is_val = np.r_[np.ones(len(parts["val"]), bool), np.zeros(len(parts["cal"]), bool)]
    _, hosts = np.unique(rows.group, return_inverse=True)
    out = empty_results(opts, reps, len(rows))
    for rep in range(reps):
        shuffled = np.random.default_rng((seed, rep)).permutation(hosts.max() + 1)[hosts]
        for fitted_on, held in GroupKFold(folds).split(np.zeros(len(rows)), groups=shuffled):
            fit_val = rows.take(fitted_on[is_val[fitted_on]])
            fit_cal = rows.take(fitted_on[~is_val[fitted_on]])
            for option in opts:
                score(option.fit(fit_val, fit_cal, parts["train"]), rows.take(held),
                      out[option.name], held, rep)
        log.info("  cross-validation: repetition %d/%d done", rep + 1, reps)
    return out, rows


def transfer(parts: dict, opts) -> tuple[dict, Rows]:
    """Each option that needs no validation rows fitted on cal and scored on val, then fitted on
    val (in the calibration role) and scored on cal."""
    val, cal = parts["val"], parts["cal"]
    rows = Rows.concat(val, cal)
    kept = [o for o in opts if not o.needs_val]
    out = empty_results(kept, 1, len(rows))
    for fit_on, scored, index in ((cal, val, np.arange(len(val))),
                                  (val, cal, np.arange(len(val), len(rows)))):
        for option in kept:
            score(option.fit(None, fit_on, parts["train"]), scored, out[option.name], index, 0)
    return out, rows


def summarise(results: dict, rows: Rows, coverage: float) -> pd.DataFrame:
    """One line per option at ``coverage``: overall coverage, median width (EUR), coverage per
    room type and predicted-price band (mean over repetitions; columns "level (listings)"), worst
    |coverage - nominal| over the groups of :data:`MIN_REPORTED_ROWS`+ listings (NaN: none)."""
    groups = [room_types(rows.frame, len(rows)), predicted_band(rows.pred)]
    lines = []
    for name, by_coverage in results.items():
        hit, width = by_coverage[coverage]["hit"], by_coverage[coverage]["width"]
        line = {"option": name, "coverage": hit.mean(), "median width EUR": np.median(width)}
        deviations = []
        for labels in groups:
            for level in level_order(np.unique(labels)):
                mask = labels == level
                line[f"{level} ({mask.sum()})"] = hit[:, mask].mean()
                if mask.sum() >= MIN_REPORTED_ROWS:
                    deviations.append(abs(hit[:, mask].mean() - coverage))
        line["worst dev"] = max(deviations) if deviations else np.nan
        lines.append(line)
    return pd.DataFrame(lines)


def print_tables(title: str, results: dict, rows: Rows) -> None:
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.max_rows", 400):
        for c in COVERAGES:
            print(f"\n=== {title}: {c:.0%} ranges")
            print(summarise(results, rows, c).round(3).to_string(index=False), flush=True)


# --------------------------------------------------------------------------- command line

def select(exp, models_dir: Path, names, reps: int = REPS, folds: int = FOLDS) -> None:
    """Print the comparison tables of each model of ``names`` (saved in ``models_dir``)."""
    for name in names:
        start = time.perf_counter()
        log.info("%s: loading", name)
        bundle = load_model(exp, models_dir, name)
        print(f"\n##### {name}")
        quantile_models = cqr_models(exp, models_dir, bundle)
        parts = model_rows(exp, bundle, with_x=quantile_models is not None)
        hosts = len(np.unique(np.r_[parts["val"].group, parts["cal"].group]))
        print(f"{len(parts['val'])} validation and {len(parts['cal'])} calibration listings in "
              f"{hosts} host groups; σ from {len(parts['train'])} training rows")
        opts = options(quantile_models)
        print_tables(f"{name}: host-grouped {folds}-fold CV over val ∪ cal, {reps} repetitions",
                     *cross_validate(parts, opts, reps, folds, exp.cfg.seed_for("run")))
        print_tables(f"{name}: transfer (fit on cal, score val; fit on val, score cal)",
                     *transfer(parts, opts))
        log.info("%s: done (%.0f s)", name, time.perf_counter() - start)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m experiments.calibration_choice",
                                     description=" ".join(__doc__.split("\n\n")[0].split()))
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("select", help="compare the options on val and cal")
    command.add_argument("--models-dir", help="saved models (default: $AIRBNB_MODELS_DIR, models/)")
    command.add_argument("--data-dir", help="their dataset (default: $AIRBNB_DATA_DIR, the default)")
    command.add_argument("--models", default="hgb,blend", help="comma-separated model names")
    command.add_argument("--reps", type=int, default=REPS, help="shufflings of the host groups")
    command.add_argument("--folds", type=int, default=FOLDS, help="cross-validation folds")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    models_dir = environment.resolve_models_dir(args.models_dir)
    try:
        data_dir = environment.resolve_data_dir(args.data_dir)
        if not models_dir.is_dir():
            raise ModelLoadError(f"models directory {models_dir} does not exist")
        with environment.showing_progress("stderr"):   # this command's lines only
            exp = prepare(data_dir, models_dir, smoke=False)
            select(exp, models_dir, [n.strip() for n in args.models.split(",") if n.strip()],
                   args.reps, args.folds)
    except (ModelLoadError, environment.DataDirError) as exc:
        print(f"calibration_choice: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

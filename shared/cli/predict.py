"""``airbnb-dl predict``: score a dataset directory with any saved model of either deliverable.

Loads ``models/<name>/`` (model + fitted preprocessing + interval calibration, never retrained),
keeps the listings of the directory that can be scored (valid ID, in Madrid, decodable photo; a
Price column is optional), writes ``ID,predicted_price,price_low,price_high`` (euros, 2 decimals,
``price_low <= predicted_price <= price_high``) for them, lists the others on stderr with their
reason, and prints the metrics (and the intervals' coverage and median width) when the directory
has prices. The dataset directory is only read.

The interval is the model's calibrated ``coverage`` prediction interval (:mod:`shared.evaluation.intervals`,
default 80%). A model saved without an interval calibration (trained before intervals existed)
still predicts: without an explicit ``--coverage`` only ``ID,predicted_price`` is written and a
note says to retrain it; with ``--coverage`` that is an input error.

Exit status: 0 every listing scored, 1 some listings skipped, 2 unusable input.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from shared.features import tabular as feats
from shared.data.dataset import DatasetError, load_dataset
from shared.evaluation.metrics import regression_metrics
from shared.evaluation.intervals import IntervalError, check_coverage, conformal_rank, interval_metrics
from shared.io import atomic_path
from shared.models.bundle import ModelBundle
from shared.models.saved import load_bundle
from shared.run.config import SEED

DEFAULT_COVERAGE = 0.8


def predict_frame(bundle: ModelBundle, dataset, coverage: float | None = DEFAULT_COVERAGE,
                  **features) -> pd.DataFrame:
    """DataFrame with columns ID (int), predicted_price and, when ``coverage`` is given,
    price_low, price_high (EUR, 2 decimals; low <= predicted <= high). ``features``: how photo
    features are computed (``ModelBundle.predict_log``: ``cache_root``, ``backbones``).

    Raises:
        IntervalError: ``coverage`` is given but the bundle has no interval calibration, or the
            coverage is outside (0, 1) or above what its calibration supports.
    """
    pred_log = bundle.predict_log(dataset, **features)
    result = pd.DataFrame({"ID": dataset.ids,
                           "predicted_price": np.round(feats.price_from_log(pred_log), 2)})
    if coverage is not None:
        if bundle.intervals is None:
            raise IntervalError(no_calibration_message(bundle))
        low, high = bundle.intervals.interval(pred_log, dataset.frame, coverage)
        # rounding is monotone, so low <= predicted <= high survives it
        result["price_low"], result["price_high"] = np.round(low, 2), np.round(high, 2)
    return result


def no_calibration_message(bundle: ModelBundle) -> str:
    how = f"`nox -s {bundle.deliverable}`" if bundle.deliverable else "its training run"
    return (f"model {bundle.name!r} has no interval calibration (intervals.json; it was saved "
            f"before prediction intervals existed): retrain it with {how} to get price ranges")


def check_model_columns(bundle: ModelBundle, dataset) -> None:
    """Raise :class:`DatasetError` (one line naming the file and every missing column) when the
    dataset lacks raw columns the bundle's preprocessor was fitted on; extra columns are fine."""
    try:
        for preprocessor in bundle.preprocessors():   # a blend's: its members'
            feats.check_input_columns(preprocessor, dataset.frame.columns)
    except feats.MissingColumnsError as exc:
        raise DatasetError(f"{dataset.data_dir / 'listings.csv'} lacks column(s) model "
                           f"{bundle.name!r} was fitted on: {', '.join(exc.columns)}") from None


def predict_command(model_dir: Path, data_dir, out: Path, coverage=None) -> int:
    """Run ``airbnb-dl predict``; ``coverage`` None means the default (0.8) when the model has an
    interval calibration and no interval otherwise. Returns the exit status."""
    explicit = coverage is not None
    try:  # before any slow work
        coverage = check_coverage(coverage if explicit else DEFAULT_COVERAGE)
    except IntervalError as exc:
        raise IntervalError(f"--coverage: {exc}") from None
    bundle = load_bundle(model_dir)
    if bundle.intervals is None:
        if explicit:
            raise IntervalError(no_calibration_message(bundle))
        print(f"note: {no_calibration_message(bundle)}; writing ID,predicted_price only",
              file=sys.stderr)
        coverage = None
    else:
        try:  # too high for its number of calibration rows: fail before scoring
            conformal_rank(bundle.intervals.n, coverage)
        except IntervalError as exc:
            raise IntervalError(f"--coverage for model {bundle.name!r}: {exc}") from None
    dataset = load_dataset(data_dir, require_price=False)
    check_model_columns(bundle, dataset)
    skipped = sum(len(ids) for ids in dataset.drops.values())
    for reason, ids in sorted(dataset.drops.items()):
        for listing in ids:
            print(f"skipped {listing}: {reason}", file=sys.stderr)
    if len(dataset.frame) == 0:
        print(f"airbnb-dl: error: no listing in {dataset.data_dir} can be scored", file=sys.stderr)
        return 2
    out = Path(out).resolve()
    if dataset.data_dir in out.parents:
        print(f"airbnb-dl: error: {out} is inside the dataset directory, which is never written to",
              file=sys.stderr)
        return 2
    result = predict_frame(bundle, dataset, coverage)
    with atomic_path(out, suffix=".csv") as tmp:
        result.to_csv(tmp, index=False)
    print(f"{bundle.name}: wrote {len(result)} predictions"
          + (f" with {coverage:.0%} intervals" if coverage is not None else "") + f" to {out}"
          + (f" ({skipped} listing(s) skipped, see above)" if skipped else ""))
    priced = dataset.frame["price"].notna().to_numpy()
    if priced.any():
        _print_metrics(dataset.prices[priced], result[priced], coverage,
                       int(bundle.trained_on.get("seed", SEED)))
        if coverage is not None:
            seen = np.isin(dataset.ids[priced], bundle.intervals.calibration_ids).sum()
            if seen:
                print(f"note: {seen} of these listings calibrated the intervals and the "
                      "model's training rows may be among the others: coverage on listings the "
                      "model has seen is optimistic")
    return 1 if skipped else 0


def _print_metrics(y_eur: np.ndarray, result: pd.DataFrame, coverage: float | None,
                   seed: int) -> None:
    """Point metrics and, with intervals, their coverage (bootstrap resamples seeded by ``seed``,
    the model's training run's) and median width, on priced rows."""
    metrics = regression_metrics(y_eur, result["predicted_price"].to_numpy(), seed=None)
    print(f"metrics on the {len(y_eur)} listings with a price: "
          + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    if coverage is not None:
        m = interval_metrics(y_eur, result["price_low"].to_numpy(),
                             result["price_high"].to_numpy(), seed=seed, nominal=coverage)
        ci = m["coverage_ci95"]
        print(f"{coverage:.0%} intervals: coverage {m['coverage']:.1%}"
              + (f" (95% bootstrap interval {ci[0]:.1%}-{ci[1]:.1%})" if ci else "")
              + f", median width {m['median_width_eur']:.2f} EUR")

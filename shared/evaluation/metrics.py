"""Metrics in euros with bootstrap intervals, paired comparisons, plots and ``metrics.json``.

Every model predicts log price; :func:`regression_metrics` takes prices in euros (after the
inverse transform) and reports:

* ``mae``, ``rmse`` (EUR), ``mape``, ``medape`` (%, mean / median absolute percentage error),
* ``r2_log``: R² of the prediction on log price (0 = no better than predicting the mean),
* ``mae_ci95``: 95% percentile-bootstrap interval of the MAE (and the same for the others).

``metrics.json`` schema (one file per deliverable)::

    {"dataset": {"source", "listings_sha256", "rows_read", "rows_usable", "split": {"train", "val",
                 "test"}, "seed", ...},
     "run": {"device", "smoke", "started", "seconds"},
     "models": {NAME: {"val": {metrics}, "test": {metrics + *_ci95}, "train_seconds": float,
                       "params": {...}}}}
"""

from __future__ import annotations

import numpy as np


METRIC_NAMES = ("mae", "rmse", "mape", "medape", "r2_log")
N_BOOTSTRAP = 1000
#: Two errors (EUR) closer than this are a tie. Every "smaller wins" choice of the project
#: (:func:`lowest`) keeps the first of tied candidates, so a choice does not depend on how a CPU
#: rounds the last digits of two equal scores (e.g. a blend of a model with itself).
TIE_EUR = 1e-6


def mae(y_true, y_pred) -> float:
    """Mean absolute error, in the unit of the inputs (EUR for prices); shapes (n,)."""
    return float(np.mean(np.abs(np.asarray(y_pred) - np.asarray(y_true))))


def lowest(candidates, score):
    """The first of ``candidates`` whose ``score(candidate)`` (EUR, lower is better) is within
    :data:`TIE_EUR` of the lowest; NaN scores never win (ValueError when all are NaN or there
    are none)."""
    items = [(c, float(score(c))) for c in candidates]
    finite = [s for _, s in items if np.isfinite(s)]
    if not finite:
        raise ValueError("no candidate has a finite score")
    best = min(finite)
    return next(c for c, s in items if np.isfinite(s) and s <= best + TIE_EUR)


def better(new: float, old: float) -> bool:
    """Whether the error ``new`` is lower than ``old`` by more than :data:`TIE_EUR` (EUR)."""
    return bool(np.isfinite(new) and new < old - TIE_EUR)


def _point_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    error = y_pred - y_true
    ape = np.abs(error) / y_true * 100.0
    log_true, log_pred = np.log(y_true), np.log(np.clip(y_pred, 1e-6, None))
    ss_res = float(np.sum((log_true - log_pred) ** 2))
    ss_tot = float(np.sum((log_true - log_true.mean()) ** 2))
    return {
        "mae": mae(y_true, y_pred),
        "rmse": float(np.sqrt(np.mean(error ** 2))),
        "mape": float(np.mean(ape)),
        "medape": float(np.median(ape)),
        "r2_log": float(1.0 - ss_res / ss_tot) if ss_tot > 0 else float("nan"),
    }


def bootstrap_indices(n: int, *, seed: int, n_boot: int = N_BOOTSTRAP) -> np.ndarray:
    """(n_boot, n) resampling indices; the same seed gives the same resamples for every model,
    which is what makes the paired comparison paired."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def regression_metrics(y_true_eur, y_pred_eur, *, seed: int | None,
                       n_boot: int = N_BOOTSTRAP) -> dict[str, float]:
    """Metrics of price predictions (euros, shape (n,)), with 95% bootstrap intervals (resamples
    seeded by ``seed``, the run's) unless ``seed`` is None."""
    y_true = np.asarray(y_true_eur, dtype=np.float64).reshape(-1)
    y_pred = np.asarray(y_pred_eur, dtype=np.float64).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"shape mismatch: {y_true.shape} vs {y_pred.shape}")
    metrics = _point_metrics(y_true, y_pred)
    if seed is not None and len(y_true) >= 5:
        samples = [_point_metrics(y_true[idx], y_pred[idx])
                   for idx in bootstrap_indices(len(y_true), seed=seed, n_boot=n_boot)]
        for name in METRIC_NAMES:
            values = np.array([s[name] for s in samples])
            metrics[f"{name}_ci95"] = [float(np.nanpercentile(values, 2.5)),
                                       float(np.nanpercentile(values, 97.5))]
    return metrics


def paired_bootstrap_mae(y_true_eur, pred_a, pred_b, *, seed: int,
                         n_boot: int = N_BOOTSTRAP) -> dict[str, float]:
    """Compare model A with model B on the same rows: MAE(A) - MAE(B) over shared resamples.

    Returns the observed difference (EUR; negative = A better), its 95% interval and
    ``p_a_better``: the share of resamples in which A's MAE is lower.
    """
    y = np.asarray(y_true_eur, dtype=np.float64).reshape(-1)
    pred_a = np.asarray(pred_a, dtype=np.float64).reshape(-1)
    pred_b = np.asarray(pred_b, dtype=np.float64).reshape(-1)
    if not len(y) == len(pred_a) == len(pred_b):
        raise ValueError(f"length mismatch: y {len(y)}, A {len(pred_a)}, B {len(pred_b)}")
    err_a, err_b = np.abs(pred_a - y), np.abs(pred_b - y)
    idx = bootstrap_indices(len(y), seed=seed, n_boot=n_boot)
    diffs = err_a[idx].mean(axis=1) - err_b[idx].mean(axis=1)
    return {"mae_diff": float(err_a.mean() - err_b.mean()),
            "mae_diff_ci95": [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))],
            "relative_diff": float(err_a.mean() / err_b.mean() - 1.0),
            "p_a_better": float(np.mean(diffs < 0))}


# --------------------------------------------------------------------------- plots


#: Edges (EUR per night) of the price bands of the error breakdowns; the last band is open.
PRICE_BAND_EDGES = (0.0, 30.0, 50.0, 80.0, 120.0, np.inf)


def band_names(edges=PRICE_BAND_EDGES) -> list[str]:
    """Names of the bands cut at ``edges`` (EUR), in price order: "<30", "30-50", ...,
    ">=120" (the last when the last edge is inf)."""
    edges = [float(e) for e in edges]
    return [(f">={a:g}" if np.isinf(b) else (f"<{b:g}" if a == 0 else f"{a:g}-{b:g}"))
            for a, b in zip(edges[:-1], edges[1:], strict=True)]


def price_band(prices_eur, edges=PRICE_BAND_EDGES) -> np.ndarray:
    """(n,) band label (:func:`band_names`) of each price (EUR); bands are left-closed (30 is in
    "30-50")."""
    edges = [float(e) for e in edges]
    idx = np.digitize(np.asarray(prices_eur, dtype=np.float64).reshape(-1), edges[1:-1],
                      right=False)
    return np.asarray(band_names(edges), dtype=object)[idx]

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


def metrics_table(models: dict, split: str = "test"):
    """pandas DataFrame: one row per model, the metrics of ``split`` with formatted intervals."""
    import pandas as pd

    rows = {}
    for name, record in models.items():
        m = record.get(split, {})
        row = {}
        for key in METRIC_NAMES:
            if key not in m:
                continue
            value = m[key]
            ci = m.get(f"{key}_ci95")
            row[key] = f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if key == "r2_log" and ci else (
                f"{value:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else round(value, 3))
        if "train_seconds" in record:
            row["train_s"] = round(record["train_seconds"], 1)
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def summary_table(models: dict):
    """pandas DataFrame, the reports' one results table: per model the test MAE (EUR) with its 95%
    interval, R² on log price, validation MAE, what stopped its training and its weights."""
    import pandas as pd

    rows = {}
    for name, record in models.items():
        test, params = record["test"], record.get("params", {})
        ci = test.get("mae_ci95")
        rows[name] = {
            "test MAE (EUR)": f"{test['mae']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""),
            "test R² log": round(test["r2_log"], 3), "val MAE (EUR)": round(record["val"]["mae"], 2),
            "stopped by": params.get("stopped_by", "n/a (closed form)").replace("_", " "),
            "weights": record.get("n_params", "")}
    return pd.DataFrame.from_dict(rows, orient="index")


# --------------------------------------------------------------------------- plots

def seed_table(results: dict):
    """pandas DataFrame, one row per model with a seed study: the reported run's test MAE and
    the mean, standard deviation, minimum and maximum over the seeds (EUR)."""
    import pandas as pd

    rows = {}
    for name, record in results.items():
        maes = [s["test_mae"] for s in record.get("seeds", [])]
        if maes:
            rows[name] = {"reported run": record["test"]["mae"], "seeds": len(maes),
                          "mean": float(np.mean(maes)), "sd": float(np.std(maes, ddof=1)),
                          "min": min(maes), "max": max(maes)}
    return pd.DataFrame(rows).T.round(2)


def training_table(results: dict):
    """pandas DataFrame, one row per model that trains iteratively: what stopped it
    (``early_stopping`` or ``epoch_limit``), epochs (or trees) run of the cap, and its number of
    weights (Keras models)."""
    import pandas as pd

    rows = {}
    for name, record in results.items():
        p = record.get("params", {})
        if "stopped_by" in p:
            ran = p.get("epochs_run", p.get("n_trees"))
            cap = p.get("max_epochs", p.get("max_trees"))
            rows[name] = {"stopped by": p["stopped_by"], "epochs (trees) run": ran, "cap": cap,
                          "weights": record.get("n_params", "")}
    return pd.DataFrame(rows).T


def plot_predicted_vs_actual(predictions: dict[str, np.ndarray], y_true_eur, ncols: int = 3):
    """Scatter of predicted vs actual price (EUR), one panel per model; returns the figure.

    Both axes span the actual prices' range (the data's price cap): the rare prediction above it
    is drawn on the top edge as a triangle, and the panel title counts them."""
    import matplotlib.pyplot as plt

    names = list(predictions)
    nrows = int(np.ceil(len(names) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.8 * nrows), squeeze=False)
    y = np.asarray(y_true_eur)
    lim = (0, float(y.max()) * 1.05)
    for ax, name in zip(axes.flat, names, strict=False):
        pred = np.asarray(predictions[name])
        above = pred > lim[1]
        ax.scatter(y[~above], pred[~above], s=8, alpha=0.5)
        if above.any():
            ax.scatter(y[above], np.full(above.sum(), lim[1]), s=14, marker="^", color="C3")
        ax.plot(lim, lim, color="grey", lw=1, ls="--")
        ax.set(xlim=lim, ylim=lim, xlabel="actual price (EUR)", ylabel="predicted price (EUR)",
               title=name + (f" ({above.sum()} above {lim[1]:.0f})" if above.any() else ""))
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_residuals_by_group(predictions: dict[str, np.ndarray], y_true_eur, groups, title: str):
    """Box plot of absolute error (EUR) per group (e.g. room type or price band) and model."""
    import matplotlib.pyplot as plt
    import pandas as pd

    y = np.asarray(y_true_eur)
    frames = [pd.DataFrame({"model": name, "group": np.asarray(groups),
                            "abs_error": np.abs(np.asarray(p) - y)})
              for name, p in predictions.items()]
    data = pd.concat(frames)
    levels = sorted(data["group"].unique(), key=str)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(levels) * len(predictions) / 2), 4))
    width = 0.8 / len(predictions)
    for k, name in enumerate(predictions):
        sub = data[data["model"] == name]
        values = [sub.loc[sub["group"] == g, "abs_error"].to_numpy() for g in levels]
        positions = np.arange(len(levels)) + (k - (len(predictions) - 1) / 2) * width
        box = ax.boxplot(values, positions=positions, widths=width * 0.9, patch_artist=True,
                         showfliers=False)
        for patch in box["boxes"]:
            patch.set_facecolor(plt.cm.tab10(k % 10))
        ax.plot([], [], color=plt.cm.tab10(k % 10), lw=8, label=name)
    counts = data[data["model"] == names_first(predictions)]["group"].value_counts()
    ax.set_xticks(np.arange(len(levels)), [f"{g}\n(n={counts.get(g, 0)})" for g in levels])
    ax.set(ylabel="absolute error (EUR)", title=title)
    ax.legend(fontsize=8, ncols=2)
    fig.tight_layout()
    return fig


def names_first(predictions: dict) -> str:
    return next(iter(predictions))


def plot_mae_with_intervals(models: dict, split: str = "test", title: str = "Test MAE (EUR)"):
    """Horizontal bars of MAE with their 95% bootstrap intervals, best model at the top."""
    import matplotlib.pyplot as plt

    items = [(n, r[split]["mae"], r[split].get("mae_ci95")) for n, r in models.items()
             if split in r and "mae" in r[split]]
    items.sort(key=lambda t: -t[1])
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(items) + 1.2))
    for i, (_, mae, ci) in enumerate(items):
        err = [[mae - ci[0]], [ci[1] - mae]] if ci else None
        ax.barh(i, mae, xerr=err, color=plt.cm.tab10(i % 10), alpha=0.8, capsize=3)
        ax.text(mae, i, f" {mae:.1f}", va="center", fontsize=8)
    ax.set_yticks(range(len(items)), [t[0] for t in items])
    ax.set(xlabel="MAE (EUR), 95% bootstrap interval", title=title)
    fig.tight_layout()
    return fig


def plot_learning_curves(histories: dict[str, dict], metric: str = "loss",
                         phases: dict[str, list[dict]] | None = None):
    """Training vs validation curves (one panel per model) from Keras ``History.history`` dicts.

    ``phases``: {model: [{"start": epoch index, "label": text}]} for models trained in phases
    (e.g. head first, then end to end); each phase start gets a vertical line named in the legend
    by its label (say there whether the phase was kept or reverted)."""
    import matplotlib.pyplot as plt

    names = [n for n, h in histories.items() if h and metric in h]
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(4.2 * max(1, len(names)), 3.4),
                             squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        history = histories[name]
        ax.plot(history[metric], label="train")
        if f"val_{metric}" in history:
            ax.plot(history[f"val_{metric}"], label="validation")
        for phase, style in zip((phases or {}).get(name, []), ("--", ":", "-."), strict=False):
            # named in the legend, not written on the axes, so it never covers the legend
            ax.axvline(phase["start"], color="grey", ls=style, lw=1, label=phase["label"])
        ax.set(title=name, xlabel="epoch", ylabel=metric)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


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

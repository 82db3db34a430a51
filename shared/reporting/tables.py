"""The tables both reports show (pandas DataFrames built from ``metrics.json`` records)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from shared.evaluation.metrics import METRIC_NAMES
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


def interval_table(reports: dict[str, dict]):
    """pandas DataFrame, one row per model: coverage [95% CI] and median width (EUR) at each
    coverage of ``reports`` (``{model: interval_report(...)}``)."""
    rows = {}
    for name, report in reports.items():
        row = {}
        for key, m in report.items():
            label = f"{float(key):.0%}"
            ci = m.get("coverage_ci95")
            row[f"{label} coverage"] = (f"{m['coverage']:.1%} [{ci[0]:.1%}, {ci[1]:.1%}]" if ci
                                        else f"{m['coverage']:.1%}")
            row[f"{label} median width (EUR)"] = round(m["median_width_eur"], 1)
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")

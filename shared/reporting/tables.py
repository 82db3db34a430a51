"""The tables both reports show (pandas DataFrames built from ``metrics.json`` records)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from shared.evaluation.metrics import METRIC_NAMES

#: The fewest test listings a group (e.g. a neighbourhood) needs to get its own comparison in
#: :func:`group_differences`: below it a paired 95% interval spans most of the plot.
MIN_GROUP_LISTINGS = 30


def metrics_table(models: dict, split: str = "test"):
    """pandas DataFrame: one row per model, the metrics of ``split`` with formatted intervals."""
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
    (``early_stopping`` or ``epoch_limit``; a phased training: its last phase), epochs (or trees)
    run of the cap (all phases), and its number of weights (Keras models)."""
    rows = {}
    for name, record in results.items():
        p = record.get("params", {})
        if "stopped_by" in p:  # a phased training: its phases' epochs, summed
            ran = p.get("epochs_run", p.get("n_trees")) or sum(
                v for k, v in p.items() if k.endswith("_epochs_run")) or None
            cap = p.get("max_epochs", p.get("max_trees")) or sum(
                v for k, v in p.items() if k.endswith("_max_epochs")) or None
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


def _coverage_cell(m: dict) -> str:
    ci = m.get("coverage_ci95")
    return f"{m['coverage']:.1%} [{ci[0]:.1%}, {ci[1]:.1%}]" if ci else f"{m['coverage']:.1%}"


def group_coverage_table(results: dict, names, coverage: float,
                         breakdowns=("room_type", "predicted_band")) -> pd.DataFrame:
    """Test coverage of the ``coverage`` range per model, overall and per group of
    ``breakdowns`` (rows), for this version's calibration and the earlier method (one pooled
    quantile from the calibration part) side by side: n, coverage [95% CI], median width (EUR)."""
    key, rows = f"{coverage:g}", []
    for name in names:
        intervals = results[name]["intervals"]
        new, old = intervals["test"][key], intervals.get("test_earlier_method", {}).get(key)
        cells = [("all", "", new, old)] + [
            (b, level, m, (old or {}).get("groups", {}).get(b, {}).get(level))
            for b in breakdowns for level, m in new.get("groups", {}).get(b, {}).items()]
        for breakdown, level, m, earlier in cells:
            rows.append({"model": name, "group": f"{breakdown.replace('_', ' ')} {level}".strip(),
                         "n": m.get("n", new["n"]), "coverage": _coverage_cell(m),
                         "median width (EUR)": round(m["median_width_eur"], 1),
                         "earlier method: coverage": _coverage_cell(earlier) if earlier else "",
                         "earlier: width": round(earlier["median_width_eur"], 1) if earlier
                         else None})
    return pd.DataFrame(rows).set_index(["model", "group"])


def left_aligned(table: pd.DataFrame):
    """``table`` styled for reading: text left-aligned, in full (a pandas Styler)."""
    left = [{"selector": cell, "props": [("text-align", "left")]} for cell in ("th", "td")]
    return table.style.set_table_styles(left).format(precision=3)


def goal_table(goals: list[dict]) -> pd.DataFrame:
    """One row per goal (``{"goal", "verdict", "reason", ...}``): the goal, its verdict and why,
    in full (the reports show text columns untruncated)."""
    return pd.DataFrame([{"goal": g["goal"], "verdict": g["verdict"], "why": g["reason"]}
                         for g in goals]).set_index("goal")


def _paired_cells(c: dict) -> dict:
    lo, hi = c["mae_diff_ci95"]
    rel = c.get("relative_ci95")
    return {"MAE difference (EUR) [95%]": f"{c['mae_diff']:+.2f} [{lo:+.2f}, {hi:+.2f}]",
            "relative [95%]": f"{c['relative_diff']:+.1%}" + (
                f" [{rel[0]:+.1%}, {rel[1]:+.1%}]" if rel else ""),
            "P(better)": round(c["p_a_better"], 3)}


def controls_table(controls: dict) -> pd.DataFrame:
    """What isolates the photo, paired on the test rows: each fusion model against the tabular
    model it is built on (``controls["vs_base"]``), then ``blend`` against ``tabular_blend``
    (``controls["blend_vs_tabular_blend"]``, plain ensembling without the photo). Differences:
    model - reference, EUR (< 0: the model better)."""
    rows = {f"{n} vs {c['reference']}": _paired_cells(c) for n, c in controls["vs_base"].items()}
    if controls.get("blend_vs_tabular_blend"):
        rows["blend vs tabular_blend (ensembling control)"] = _paired_cells(
            controls["blend_vs_tabular_blend"])
    return pd.DataFrame.from_dict(rows, orient="index")


def ties_table(picks: dict[str, tuple[str, list[dict]]], most: int = 2) -> pd.DataFrame:
    """The runners-up of validation's picks (``{what: (chosen, ties)}``, ties as
    :func:`deliverable2.ablation.near_ties` / ``blend_pair_ties`` give them): up to ``most``
    per pick, their validation gap (EUR) and whether validation can tell them apart."""
    rows = []
    for what, (chosen, ties) in picks.items():
        for t in (ties or [])[:most]:
            rows.append({"pick": f"{what}: {chosen}",
                         "runner-up": t.get("model") or " + ".join(t["members"]),
                         "validation gap (EUR)": round(t["gap_eur"], 2),
                         "near tie (paired 95% interval contains 0)": "yes" if t["tie"] else "no"})
    return pd.DataFrame(rows).set_index(["pick", "runner-up"]) if rows else pd.DataFrame()


def group_mae(predictions: dict[str, np.ndarray], y_eur, groups, ordered_by=None) -> pd.DataFrame:
    """Mean absolute error (EUR) per group (rows, (n,) labels) and model (columns, ``{model:
    (n,) EUR}``), with ``n``; groups largest first, or by the mean of ``ordered_by`` (n,)."""
    y, groups = np.asarray(y_eur, float).reshape(-1), np.asarray(groups)
    table = pd.DataFrame({m: np.abs(np.asarray(p).reshape(-1) - y) for m, p in predictions.items()})
    out = table.groupby(groups).mean().round(2)
    out.insert(0, "n", pd.Series(groups).value_counts().reindex(out.index).to_numpy())
    key = out["n"] * -1 if ordered_by is None else pd.Series(ordered_by).groupby(groups).mean()
    return out.loc[key.sort_values(kind="stable").index]


def group_differences(frame: pd.DataFrame, y_eur, pred_eur, ref_eur, model: str, reference: str,
                      *, min_count: int, seed: int, column: str | None = None) -> pd.DataFrame:
    """Per group of ``column`` (default: the first neighbourhood column present) with at least
    ``min_count`` rows: MAE(model) - MAE(reference) (EUR) and its 95% paired-bootstrap
    interval (``ci_low``, ``ci_high``); ``y_eur``, ``pred_eur``, ``ref_eur``: (n,) EUR for the
    rows of ``frame``. Sorted by difference; attrs ``model``, ``reference``, ``column``,
    ``min_count``."""
    from shared.evaluation.diagnostics import NEIGHBOURHOOD_COLUMNS
    from shared.evaluation.metrics import paired_bootstrap_mae

    column = column or next(c for c in NEIGHBOURHOOD_COLUMNS if c in frame.columns)
    labels = frame[column].astype("string").fillna("missing").to_numpy()
    y, a, b = (np.asarray(v, float).reshape(-1) for v in (y_eur, pred_eur, ref_eur))
    rows = {}
    for group, n in pd.Series(labels).value_counts().items():
        if n >= min_count:
            mask = labels == group
            c = paired_bootstrap_mae(y[mask], a[mask], b[mask], seed=seed)
            rows[group] = {"n": int(n), "mae_diff": c["mae_diff"], "ci_low": c["mae_diff_ci95"][0],
                           "ci_high": c["mae_diff_ci95"][1]}
    table = pd.DataFrame.from_dict(rows, orient="index",
                                   columns=["n", "mae_diff", "ci_low", "ci_high"])
    table = table.sort_values("mae_diff", kind="stable")
    table.attrs.update(model=model, reference=reference, column=column, min_count=int(min_count))
    return table

"""Every figure of both reports, drawn one way: one colour per model (:func:`model_colour`), the
same in every figure of both reports.

Each function returns a matplotlib Figure (or draws into a given ``ax``) and never shows or saves
it, except :func:`save_local_figure`, which writes photo grids to a local folder only (listing
photos are never published).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from shared import environment
from shared.evaluation.diagnostics import as_vector, coordinates, extremes, same_length
from shared.evaluation.intervals import level_order
from shared.io import atomic_path
def plot_predicted_vs_actual(predictions: dict[str, np.ndarray], y_true_eur, ncols: int = 3):
    """Scatter of predicted vs actual price (EUR), one panel per model; returns the figure.

    Both axes span the actual prices' range (the data's price cap): the rare prediction above it
    is drawn on the top edge as a triangle, and the panel title counts them."""

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


def plot_importance(table: pd.DataFrame, top: int = 15,
                    title: str = "Permutation importance (validation)", ax=None):
    """Horizontal bars of the ``top`` columns of :func:`permutation_importance` (largest at the
    top), error bars = sd over repeats, into ``ax`` (a new figure when None); returns the Figure."""

    shown = table.head(top).iloc[::-1]
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 0.35 * len(shown) + 1.3))
    else:
        fig = ax.figure
    ax.barh(np.arange(len(shown)), shown["mae_increase_eur"], xerr=shown["sd_eur"], capsize=2,
            color="tab:blue", alpha=0.8)
    ax.set_yticks(np.arange(len(shown)), [str(c) for c in shown.index], fontsize=8)
    ax.axvline(0, color="grey", lw=0.8)
    baseline = table.attrs.get("baseline_mae_eur")
    ax.set(xlabel="MAE increase (EUR)",
           title=title if baseline is None else f"{title}\n(unpermuted MAE {baseline:.1f} EUR)")
    fig.tight_layout()
    return fig


def price_map(frame: pd.DataFrame, values, title: str = "", cmap: str = "viridis",
              label: str = "price (EUR)", symmetric: bool = False, ax=None):
    """Listings at their Longitude x Latitude, coloured by ``values`` (n,) (EUR).

    ``symmetric=True`` (residuals): colour limits ``±`` the 95th percentile of ``|values|``,
    centred at 0 (use a diverging ``cmap``); else limits are the 5th and 95th percentiles. Larger
    ``|values|`` are drawn on top; rows without coordinates are skipped. The axes keep degrees,
    with an aspect of 1 / cos(latitude) so distances look the same in both directions. Draws into
    ``ax`` when given; returns the Figure.
    """

    lon, lat = coordinates(frame)
    v = as_vector(values, "values")
    same_length(values=v, frame=lon)
    ok = np.isfinite(lon) & np.isfinite(lat) & np.isfinite(v)
    lon, lat, v = lon[ok], lat[ok], v[ok]
    if symmetric:
        limit = float(np.percentile(np.abs(v), 95)) if len(v) else 1.0
        vmin, vmax = -(limit or 1.0), (limit or 1.0)
        order = np.argsort(np.abs(v), kind="stable")
    else:
        vmin, vmax = (np.percentile(v, [5, 95]) if len(v) else (0.0, 1.0))
        order = np.argsort(v, kind="stable")
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 5.5))
    fig = ax.figure
    points = ax.scatter(lon[order], lat[order], c=v[order], s=4, cmap=cmap, vmin=vmin, vmax=vmax,
                        linewidths=0)
    fig.colorbar(points, ax=ax, label=label, extend="both", shrink=0.8)
    if len(lat):
        ax.set_aspect(1.0 / np.cos(np.radians(np.mean(lat))))
    ax.set(xlabel="longitude (°)", ylabel="latitude (°)", title=title)
    return fig


def price_and_residual_maps(frame: pd.DataFrame, y_eur, pred_eur, title: str | None = None):
    """Two maps side by side: the true price (EUR) and the residual predicted - true (EUR,
    diverging colours centred at 0, limits ± the 95th percentile of |residual|); returns the
    Figure. ``y_eur``, ``pred_eur``: (n,) for the n rows of ``frame``."""

    y, pred = as_vector(y_eur, "y_eur"), as_vector(pred_eur, "pred_eur")
    same_length(y_eur=y, pred_eur=pred)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5))
    price_map(frame, y, "true price", "viridis", "price (EUR)", ax=axes[0])
    price_map(frame, pred - y, "residual (predicted - true)", "RdBu_r",
              "predicted - true (EUR)", symmetric=True, ax=axes[1])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_errors_by_group(table: pd.DataFrame, title: str | None = None):
    """Horizontal bars of MAE (EUR) per group of :func:`errors_by_group`, ``n`` annotated;
    returns the Figure."""

    shown = table.iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(shown) + 1.3))
    ys = np.arange(len(shown))
    ax.barh(ys, shown["mae_eur"], color="tab:orange", alpha=0.8)
    for y, (mae_eur, n) in zip(ys, zip(shown["mae_eur"], shown["n"], strict=True), strict=True):
        ax.text(mae_eur, y, f" n={int(n)}", va="center", fontsize=7)
    ax.set_yticks(ys, [str(g) for g in shown.index], fontsize=8)
    column = table.attrs.get("column", "group")
    ax.set(xlabel="MAE (EUR)", ylabel=column, title=title or f"Test MAE by {column}")
    ax.margins(x=0.15)
    fig.tight_layout()
    return fig


def photo_grid(paths, captions, ncols: int = 4, image_size: int = 224):
    """Photos (decoded as the models see them: :func:`shared.data.images.decode_photo`, squashed to
    ``image_size`` square) with a caption under each; returns the Figure.

    Listing photos must never be committed: save the figure with :func:`save_local_figure` only
    and close it (do not leave it to be shown inline in a committed notebook).
    """
    import tensorflow as tf

    from shared.data.images import decode_photo

    paths, captions = [str(p) for p in paths], [str(c) for c in captions]
    same_length(paths=paths, captions=captions)
    nrows = max(1, int(np.ceil(len(paths) / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3 * ncols, 3.3 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, path, caption in zip(axes.flat, paths, captions, strict=False):
        ax.imshow(decode_photo(tf.constant(path), image_size).numpy())
        ax.set_title(caption, fontsize=8)
    fig.tight_layout()
    return fig


def save_local_figure(fig, directory, name: str, dpi: int = 100) -> Path:
    """Write ``fig`` as ``<directory>/<name>.png`` atomically (temporary sibling, then
    :func:`os.replace`) and return the path.

    For figures that must stay local (listing photos): ``directory`` must be a non-committed
    folder (e.g. under :func:`shared.environment.cache_dir` or ``models/``); the published ``docs/``
    tree is refused.
    """
    directory = Path(directory).resolve()
    if directory == environment.DOCS_DIR.resolve() or environment.DOCS_DIR.resolve() in directory.parents:
        raise ValueError(f"{directory} is inside the published docs/ tree: local figures only")
    target = directory / (name if name.endswith(".png") else f"{name}.png")
    with atomic_path(target, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return target


def plot_sensitivity_map(mean_map, title: str = "Occlusion sensitivity (mean over photos)"):
    """Heat map of a :func:`mean_sensitivity_map` (gh, gw), top-left square at the top left,
    colour bar in units of the map's mean; returns the Figure. An average over many photos, not a
    photo: it may be committed."""

    mean_map = np.asarray(mean_map, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(4.8, 4))
    shown = ax.imshow(mean_map, cmap="magma", origin="upper")
    fig.colorbar(shown, ax=ax, label="sensitivity (mean = 1)")
    gh, gw = mean_map.shape
    ax.set_xticks(range(gw), [str(j) for j in range(gw)])
    ax.set_yticks(range(gh), [str(i) for i in range(gh)])
    ax.set(xlabel="position in photo: left → right (grid cell)",
           ylabel="position in photo: top → bottom (grid cell)", title=title)
    fig.tight_layout()
    return fig


def local_photo_grid(tables: dict[str, pd.DataFrame], paths_by_id: dict, directory, name: str,
                     image_size: int = 224) -> Path:
    """The photos of :func:`extremes`' listings, captioned with the table they come from and true
    / predicted EUR, saved to ``directory`` (never ``docs/``: listing photos are not published);
    returns the PNG's path."""

    paths, captions = [], []
    for kind, table in tables.items():
        for row in table.itertuples(index=False):
            paths.append(paths_by_id[row[0]])
            captions.append(f"{kind}: {row[1]:.0f} -> {row[2]:.0f} EUR")
    fig = photo_grid(paths, captions, ncols=4, image_size=image_size)
    try:
        return save_local_figure(fig, directory, name)
    finally:
        plt.close(fig)


def extremes_report(ids, paths, y_eur, pred_eur, directory, name: str,
                    n: int = 4) -> tuple[pd.DataFrame, Path]:
    """What a report shows of a model's best and worst listings: :func:`extremes` as one table
    (index: kind, rank; values rounded to 0.1) and the path of their photo grid, saved locally by
    :func:`local_photo_grid` (``ids``, ``paths``: (m,) listing IDs and their photo paths)."""
    tables = extremes(ids, y_eur, pred_eur, n)
    grid = local_photo_grid(tables, dict(zip(np.asarray(ids).reshape(-1), paths, strict=True)),
                            directory, name)
    return pd.concat(tables, names=["kind", ""]).round(1), grid


def plot_coverage_by_group(metrics_by_model: dict[str, dict], group_names=("room_type",
                           "price_band"), title: str | None = None):
    """Coverage per group level (bars with 95% bootstrap intervals) for several models, one panel
    per breakdown, with a dashed line at the nominal coverage; returns the figure.

    ``metrics_by_model``: ``{model: interval_metrics(...)}`` at one nominal coverage.
    """

    names = list(metrics_by_model)
    nominal = next((m["nominal"] for m in metrics_by_model.values() if m.get("nominal")), None)
    fig, axes = plt.subplots(1, len(group_names), squeeze=False,
                             figsize=(5.5 * len(group_names), 4))
    width = 0.8 / max(1, len(names))
    for ax, group in zip(axes.flat, group_names, strict=False):
        levels = level_order({lv for m in metrics_by_model.values()
                               for lv in m.get("groups", {}).get(group, {})})
        for k, name in enumerate(names):
            stats = metrics_by_model[name].get("groups", {}).get(group, {})
            xs = np.arange(len(levels)) + (k - (len(names) - 1) / 2) * width
            values = [stats.get(lv, {}).get("coverage", np.nan) for lv in levels]
            cis = [stats.get(lv, {}).get("coverage_ci95") or [v, v] for lv, v in zip(levels, values, strict=True)]
            err = np.array([[v - c[0] for v, c in zip(values, cis, strict=True)],
                            [c[1] - v for v, c in zip(values, cis, strict=True)]])
            ax.bar(xs, values, width * 0.9, yerr=err, capsize=2, label=name,
                   color=plt.cm.tab10(k % 10), alpha=0.85)
        counts = {lv: max(m.get("groups", {}).get(group, {}).get(lv, {}).get("n", 0)
                          for m in metrics_by_model.values()) for lv in levels}
        ax.set_xticks(np.arange(len(levels)), [f"{lv}\n(n={counts[lv]})" for lv in levels])
        if nominal is not None:
            ax.axhline(nominal, color="black", ls="--", lw=1, label=f"nominal {nominal:.0%}")
        ax.set(ylim=(0, 1.05), ylabel="test coverage", title=group.replace("_", " "))
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncols=min(6, len(labels)), fontsize=8,
               frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.07 * int(np.ceil(len(labels) / 6)), 1, 1))
    return fig


def plot_paired_differences(comparisons: dict[str, dict], reference: str):
    """Forest plot: MAE(fusion) - MAE(reference) with its 95% paired-bootstrap interval (EUR)."""

    names = list(comparisons)
    fig, ax = plt.subplots(figsize=(7, 0.55 * len(names) + 1.3))
    for i, name in enumerate(names):
        c = comparisons[name]
        lo, hi = c["mae_diff_ci95"]
        ax.errorbar(c["mae_diff"], i, xerr=[[c["mae_diff"] - lo], [hi - c["mae_diff"]]], fmt="o",
                    capsize=4, color=plt.cm.tab10(i % 10))
        ax.text(hi, i, f"  P(better) {c['p_a_better']:.2f}", va="center", fontsize=8)
    ax.axvline(0, color="grey", lw=1)
    ax.margins(x=0.3)  # room for the P(better) labels
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel=f"test MAE difference vs {reference} (EUR); < 0: fusion better",
           title="Paired bootstrap, 95% intervals")
    fig.tight_layout()
    return fig


def plot_group_errors(tables: dict[str, pd.DataFrame]):
    """One panel per grouping: mean absolute error (EUR) per group, one bar per model."""

    fig, axes = plt.subplots(1, len(tables), figsize=(6.5 * len(tables), 3.8), squeeze=False)
    for ax, (title, table) in zip(axes.flat, tables.items(), strict=False):
        models = [c for c in table.columns if c != "n"]
        width = 0.8 / len(models)
        x = np.arange(len(table))
        for k, name in enumerate(models):
            ax.bar(x + (k - (len(models) - 1) / 2) * width, table[name], width, label=name,
                   color=plt.cm.tab10(k % 10))
        ax.set_xticks(x, [f"{g}\n(n={n})" for g, n in zip(table.index, table["n"], strict=True)], fontsize=8)
        ax.set(ylabel="mean absolute error (EUR)", title=title)
    axes.flat[0].legend(fontsize=7, ncols=2)
    fig.tight_layout()
    return fig

"""Every plot of both reports, drawn one way.

One colour per model (:func:`model_colour`), the same in every figure of both reports; grey means
"reverted" (a training phase validation did not keep), never a model. Labels sit beside error
bars, never on them; price bands say whether they bin the true or the predicted price, and empty
bands are dropped; every residual map has one colour scale (:data:`RESIDUAL_LIMIT_EUR`).

Each function returns a matplotlib Figure (or draws into a given ``ax``), never shown or saved;
listing photos are never drawn here (:mod:`shared.reporting.photos`). Prices, errors: EUR.
"""

from __future__ import annotations

import functools
import zlib

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, MaxNLocator

from shared.evaluation.diagnostics import as_vector, coordinates, same_length
from shared.evaluation.intervals import level_order

#: Colours of the registry's models, in its training order (mean, ridge, hgb, mlp, ...).
PALETTE = ("#9c755f", "#bcbd22", "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1",
           "#76b7b2", "#1b3a6b", "#e73f74", "#000000", "#7f3c8d", "#edc948", "#499894")
#: Colours of models the registry does not list (e.g. a test's), picked by a hash of the name.
EXTRA = ("#a0cbe8", "#ffbe7d", "#8cd17d", "#d4a6c8", "#fabfd2", "#86bcb6", "#d7b5a6")
REVERTED = "#a6a6a6"   # a training phase validation reverted
#: Every residual map's colour scale: predicted - true from -limit to +limit EUR.
RESIDUAL_LIMIT_EUR = 50.0
GROUP_TITLES = {"room_type": "room type", "price_band": "true price band (EUR)",
                "predicted_band": "predicted price band (EUR)"}


@functools.lru_cache(maxsize=1)
def _registry_order() -> tuple[str, ...]:
    from shared.models import registry  # the families' modules load TensorFlow: on first colour

    return registry.names()


def model_colour(name: str) -> str:
    """The colour of model ``name`` in every figure: :data:`PALETTE` by its rank in the
    registry's order; a name the registry does not know (or beyond the palette) gets one of
    :data:`EXTRA`, the same for the same name in every process."""
    rank = _registry_order().index(name) if name in _registry_order() else len(PALETTE)
    return PALETTE[rank] if rank < len(PALETTE) else EXTRA[zlib.crc32(name.encode()) % len(EXTRA)]


def band_title(title: str) -> str:
    """``title`` naming the price its price bands bin: the TRUE price unless it says otherwise."""
    return title if "true" in title or "predicted" in title else title.replace("price band",
                                                                               "true price band")


def _grid(n: int, ncols: int, width: float, height: float):
    ncols, nrows = max(1, min(ncols, n)), max(1, int(np.ceil(n / max(1, min(ncols, n)))))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, list(axes.flat)


def plot_price_distribution(prices_by_part: dict, frame_train: pd.DataFrame, y_train):
    """Price (EUR) and log price histograms per part (``{part: (n,) EUR}``, densities) and a
    map of the training listings (``frame_train``, ``y_train`` (n,) EUR); returns the Figure."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.4))
    for part, y in prices_by_part.items():
        axes[0].hist(y, bins=30, alpha=0.5, density=True, label=part)
        axes[1].hist(np.log(y), bins=30, alpha=0.5, density=True, label=part)
    axes[0].set(title="nightly price (EUR)", xlabel="EUR", ylabel="density")
    axes[1].set(title="log price: the training target", xlabel="log(EUR)")
    axes[0].legend()
    price_map(frame_train, y_train, title="training listings by price", label="EUR", ax=axes[2])
    fig.tight_layout()
    return fig


def plot_pca_curve(curve, marks=()):
    """Cumulative explained variance (share, (k,)) against the number of components, log axis;
    a dotted line at each of ``marks`` (component counts) with its share."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(range(1, len(curve) + 1), curve)
    for k in (k for k in marks if k <= len(curve)):
        ax.axvline(k, color="grey", lw=0.6, ls=":")
        ax.text(k, 0.05, f" {k}: {curve[k - 1]:.0%}", fontsize=7, rotation=90)
    ax.set(xscale="log", xlabel="number of principal components", ylim=(0, 1), ylabel="cumulative "
           "explained variance", title="PCA of standardised backbone features (training rows)")
    fig.tight_layout()
    return fig


def plot_predicted_vs_actual(predictions: dict[str, np.ndarray], y_true_eur, ncols: int = 3):
    """Predicted vs actual price (EUR), one panel per model (``{model: (n,) EUR}``). Both axes
    span the actual prices' range: a prediction above it is a triangle on the top edge, counted
    in the panel title."""
    y = np.asarray(y_true_eur)
    lim = (0, float(y.max()) * 1.05)
    fig, axes = _grid(len(predictions), ncols, 4.2, 3.8)
    for ax, (name, pred) in zip(axes, predictions.items(), strict=False):
        pred, colour = np.asarray(pred).reshape(-1), model_colour(name)
        above = pred > lim[1]
        ax.scatter(y[~above], pred[~above], s=8, alpha=0.5, color=colour)
        ax.scatter(y[above], np.full(above.sum(), lim[1]), s=16, marker="^", color=colour)
        ax.plot(lim, lim, color="grey", lw=1, ls="--")
        ax.set(xlim=lim, ylim=lim, xlabel="actual price (EUR)", ylabel="predicted price (EUR)",
               title=name + (f" ({above.sum()} above {lim[1]:.0f})" if above.any() else ""))
    fig.tight_layout()
    return fig


def _interval_rows(ax, rows, xlabel: str, title: str, zero: bool = True):
    """Estimates with 95% intervals, first row at the top, one per (label, colour, value,
    (lo, hi), note); the note is written right of the axes, away from the bars; a line at 0
    when ``zero``. Returns the Figure."""
    for i, (_, colour, value, (lo, hi), note) in enumerate(rows):
        ax.errorbar(value, i, xerr=[[value - lo], [hi - value]], fmt="o", color=colour, capsize=4)
        ax.text(1.02, i, note, va="center", fontsize=8, transform=ax.get_yaxis_transform())
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.set(xlabel=xlabel, title=title, ylim=(len(rows) - 0.4, -0.6))
    if zero:
        ax.axvline(0, color="grey", lw=1)
    ax.figure.tight_layout()
    return ax.figure


def plot_mae_with_intervals(models: dict, split: str = "test", title: str = "Test MAE (EUR)"):
    """MAE (EUR) per model with its 95% bootstrap interval, best at the top; the value is
    written right of the axes."""
    items = sorted(((n, r[split]["mae"], r[split].get("mae_ci95") or [r[split]["mae"]] * 2)
                    for n, r in models.items() if "mae" in r.get(split, {})), key=lambda t: t[1])
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(items) + 1.3))
    return _interval_rows(ax, [(n, model_colour(n), m, ci, f"{m:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]")
                               for n, m, ci in items], "MAE (EUR), 95% bootstrap interval", title,
                          zero=False)


def plot_paired_differences(comparisons: dict[str, dict], reference: str | None = None,
                            title: str = "Paired bootstrap, 95% intervals"):
    """MAE(model) - MAE(reference) (EUR) with its 95% paired-bootstrap interval, one row per
    ``{label: paired comparison}`` (top first; the model is the comparison's ``model``, else the
    label). A comparison's own ``reference`` overrides ``reference``: the row then reads "model
    vs reference" (a label that is not a model name is shown as it is). P(model better) is
    written right of the axes."""
    rows = [(key if c.get("model", key) != key or c.get("reference", reference) == reference
             else f"{key} vs {c['reference']}", model_colour(c.get("model", key)), c["mae_diff"],
             c["mae_diff_ci95"], f"P(better) {c['p_a_better']:.2f}") for key, c in comparisons.items()]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 1.4))
    return _interval_rows(ax, rows, "test MAE difference (EUR); < 0: the first model better"
                          + (f"; reference {reference}" if reference else ""), title)


def plot_group_differences(table: pd.DataFrame):
    """A model's test MAE minus a reference's per group (e.g. neighbourhood), EUR, with 95%
    paired-bootstrap intervals (:func:`shared.reporting.tables.group_differences`: columns ``n``,
    ``mae_diff``, ``ci_low``, ``ci_high``; attrs ``model``, ``reference``, ``column``,
    ``min_count``); only groups of at least ``min_count`` listings."""
    a = table.attrs
    rows = [(f"{g} (n={int(r.n)})", model_colour(a["model"]), r.mae_diff, (r.ci_low, r.ci_high),
             f"{r.mae_diff:+.1f}") for g, r in table.iterrows()]
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.6))
    title = (f"{a['model']} - {a['reference']}: test MAE by {a['column']}\n(groups of at least "
             f"{a['min_count']} test listings; 95% paired bootstrap intervals)")
    if not rows:
        ax.text(0.5, 0.5, f"no group has {a['min_count']} test listings", ha="center",
                transform=ax.transAxes)
    return _interval_rows(ax, rows, "MAE difference (EUR); < 0: " + a["model"] + " better", title)


def plot_seed_study(results: dict):
    """Test MAE (EUR) of each model with a seed study: one dot per seed, and the reported run
    (diamond) with its 95% bootstrap interval (spread over test listings)."""
    names = [n for n, r in results.items() if r.get("seeds")]
    fig, ax = plt.subplots(figsize=(7.5, 0.5 * len(names) + 1.4))
    for i, name in enumerate(names):
        test, colour, seeds = results[name]["test"], model_colour(name), results[name]["seeds"]
        ax.plot(test.get("mae_ci95") or [test["mae"]] * 2, [i - 0.15] * 2, color=colour, lw=1.2)
        ax.plot(test["mae"], i - 0.15, "D", color=colour)
        ax.plot([s["test_mae"] for s in seeds], [i + 0.15] * len(seeds), "o", mfc="none", color=colour)
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="test MAE (EUR)", ylim=(len(names) - 0.4, -0.6),
           title="Seeds (circles) vs the reported run (diamond, 95% bootstrap interval)")
    fig.tight_layout()
    return fig


def restored_epoch(history: dict, phases: list[dict] | None = None) -> int | None:
    """The epoch (0-based index into ``history``) whose weights the model keeps: the lowest
    ``val_loss`` of the last phase validation kept (early stopping restores it); None when no
    phase was kept (the model is its starting point) or there is no validation loss."""
    val = history.get("val_loss") or []
    kept = [(s, e) for s, e, phase in phase_spans(phases, len(val)) if phase.get("kept", True) and e > s]
    if not kept:
        return None
    start, end = kept[-1]
    return start + int(np.argmin(val[start:end]))


def phase_spans(phases: list[dict] | None, n: int) -> list[tuple[int, int, dict]]:
    """[(start, end, phase)] epoch ranges of ``phases`` (``{"start", "label", "kept"}``) over a
    history of ``n`` epochs; no phases: one kept phase over all."""
    phases = phases or [{"start": 0, "label": "", "kept": True}]
    ends = [p["start"] for p in phases[1:]] + [n]
    return [(p["start"], end, p) for p, end in zip(phases, ends, strict=True)]


def _draw_history(ax, name: str, history: dict, phases, window=None):
    """Train (dashed) and validation (solid) loss per phase into ``ax``, epochs numbered from 1:
    kept phases in the model's colour, reverted ones grey and named; the kept epoch starred; log
    y axis. ``window``: (first, last) epoch indices shown."""
    train, val = np.asarray(history["loss"]), np.asarray(history.get("val_loss", []))
    for start, end, phase in phase_spans(phases, len(train)):
        colour = model_colour(name) if phase.get("kept", True) else REVERTED
        xs = np.arange(max(0, start - 1), end)
        ax.plot(xs + 1, train[xs], ls="--", color=colour, lw=1)
        if len(val):
            ax.plot(xs + 1, val[xs], color=colour, lw=1.5,
                    label=f"phase {phase['label']}" if phase.get("label") else None)
        if start > 0:
            ax.axvline(start + 0.5, color="grey", ls=":", lw=1)
    best = restored_epoch(history, phases)
    if best is not None:
        ax.plot(best + 1, val[best], "*", ms=12, color="black", label=f"kept: epoch {best + 1}")
    shown = np.concatenate([train, val]) if window is None else np.concatenate(
        [train[window[0]:window[1] + 1], val[window[0]:window[1] + 1]])
    ax.set(yscale="log", ylim=(shown.min() * 0.9, shown.max() * 1.1),
           xlim=(0.5, len(train) + 0.5) if window is None else (window[0] + 0.5, window[1] + 1.5))
    decades = np.log10(shown.max() / shown.min())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:.2g}" if decades < 1 else ""))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7, title=None if best is not None or not len(val) else "no phase kept: starting weights")


def _panels(histories: dict, settings: dict) -> list[tuple[str, tuple | None]]:
    """(model, window) per panel: every model whole, plus a zoom on each phase shorter than a
    tenth of its training (e.g. a few fine-tuning epochs after hundreds)."""
    panels = []
    for name, history in histories.items():
        panels.append((name, None))
        n = len(history["loss"])
        for start, end, _ in phase_spans(settings.get(name, {}).get("phases"), n)[1:]:
            if 0 < end - start < 0.1 * n:
                panels.append((name, (max(0, start - 3 * (end - start) - 2), end - 1)))
    return panels


def plot_learning_curves(histories: dict[str, dict], settings: dict[str, dict] | None = None,
                         ncols: int = 3):
    """Loss per epoch (log scale): train dashed, validation solid, one panel per model
    (``{model: Keras History.history}``), plus a zoomed panel for any short phase.

    ``settings``: ``{model: params}`` with ``loss`` ("mse" or "huber", named in the panel
    title) and, for phased training, ``phases`` (``[{"start", "label", "kept"}]``): reverted
    phases are grey and named; the star marks the epoch whose weights were kept."""
    settings = settings or {}
    histories = {n: h for n, h in histories.items() if h and h.get("loss")}
    panels = _panels(histories, settings)
    fig, axes = _grid(len(panels), ncols, 4.6, 3.5)
    for ax, (name, window) in zip(axes, panels, strict=False):
        params = settings.get(name, {})
        _draw_history(ax, name, histories[name], params.get("phases"), window)
        loss = {"mse": "MSE", "huber": "Huber loss"}.get(params.get("loss"), "loss")
        ax.set(xlabel="epoch", ylabel=f"{loss} on log price (log scale)",
               title=f"{name}: {loss}" + (" (zoom on the last epochs)" if window else ""))
    fig.suptitle("Dashed: training loss; solid: validation loss; grey: a phase validation reverted; "
                 "star: the epoch whose weights the model keeps", fontsize=9)
    fig.tight_layout()
    return fig


def plot_importance(table: pd.DataFrame, top: int = 15,
                    title: str = "Permutation importance (validation)", ax=None,
                    model: str | None = None):
    """The ``top`` columns of :func:`permutation_importance` (MAE increase, EUR; error bars: sd
    over repeats), largest at the top, in ``model``'s colour, into ``ax`` (new figure if None)."""
    shown = table.head(top).iloc[::-1]
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.35 * len(shown) + 1.3))
    ax.barh(np.arange(len(shown)), shown["mae_increase_eur"], xerr=shown["sd_eur"], capsize=2,
            color=model_colour(model) if model else "tab:blue", alpha=0.85)
    ax.set_yticks(np.arange(len(shown)), [str(c) for c in shown.index], fontsize=8)
    ax.axvline(0, color="grey", lw=0.8)
    baseline = table.attrs.get("baseline_mae_eur")
    ax.set(xlabel="MAE increase (EUR)",
           title=title if baseline is None else f"{title}\n(unpermuted MAE {baseline:.1f} EUR)")
    ax.figure.tight_layout()
    return ax.figure


def price_map(frame: pd.DataFrame, values, title: str = "", cmap: str = "viridis",
              label: str = "price (EUR)", limits: tuple | None = None, ax=None):
    """Listings at their Longitude x Latitude (degrees, aspect 1 / cos(latitude)) coloured by
    ``values`` (n,) EUR, larger ``|values|`` on top; rows without coordinates skipped.
    ``limits``: the colour scale's (low, high); default the 5th and 95th percentiles."""
    lon, lat = coordinates(frame)
    v = as_vector(values, "values")
    same_length(values=v, frame=lon)
    ok = np.isfinite(lon) & np.isfinite(lat) & np.isfinite(v)
    lon, lat, v = lon[ok], lat[ok], v[ok]
    vmin, vmax = limits or (np.percentile(v, [5, 95]) if len(v) else (0.0, 1.0))
    order = np.argsort(np.abs(v), kind="stable")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5.5))
    points = ax.scatter(lon[order], lat[order], c=v[order], s=4, cmap=cmap, vmin=vmin, vmax=vmax,
                        linewidths=0)
    ax.figure.colorbar(points, ax=ax, label=label, extend="both", shrink=0.8)
    if len(lat):
        ax.set_aspect(1.0 / np.cos(np.radians(np.mean(lat))))
    ax.set(xlabel="longitude (°)", ylabel="latitude (°)", title=title)
    return ax.figure


def price_and_residual_maps(frame: pd.DataFrame, y_eur, pred_eur, title: str | None = None):
    """The true price (EUR) and the residual predicted - true (EUR, diverging colours on the
    one scale of every report: ± :data:`RESIDUAL_LIMIT_EUR`) side by side. ``y_eur``,
    ``pred_eur``: (n,) for the n rows of ``frame``."""
    y, pred = as_vector(y_eur, "y_eur"), as_vector(pred_eur, "pred_eur")
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5))
    price_map(frame, y, "true price", "viridis", "price (EUR)", ax=axes[0])
    price_map(frame, pred - y, f"residual (predicted - true); the one scale of every report, "
              f"±{RESIDUAL_LIMIT_EUR:.0f} EUR", "RdBu_r", "predicted - true (EUR)",
              limits=(-RESIDUAL_LIMIT_EUR, RESIDUAL_LIMIT_EUR), ax=axes[1])
    fig.suptitle(title or "")
    fig.tight_layout()
    return fig


def plot_sensitivity_map(mean_map, title: str = "Occlusion sensitivity (mean over photos)"):
    """Heat map of a mean occlusion map (gh, gw), top-left cell at the top left, in units of
    its mean. An average over many photos, not a photo: it may be committed."""
    mean_map = np.asarray(mean_map, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(4.8, 4))
    fig.colorbar(ax.imshow(mean_map, cmap="magma", origin="upper"), ax=ax,
                 label="sensitivity (mean = 1)")
    gh, gw = mean_map.shape
    ax.set_xticks(range(gw), [str(j) for j in range(gw)])
    ax.set_yticks(range(gh), [str(i) for i in range(gh)])
    ax.set(xlabel="position in photo: left → right (grid cell)",
           ylabel="position in photo: top → bottom (grid cell)", title=title)
    fig.tight_layout()
    return fig


def _grouped_bars(ax, values: dict[str, list], intervals: dict[str, list] | None = None):
    """Bars per level, one per model (``{model: [value per level]}``) in the models' colours,
    with ``{model: [(low, high) per level]}`` error bars when given."""
    width = 0.8 / max(1, len(values))
    for k, (name, ys) in enumerate(values.items()):
        err = None if intervals is None else np.abs(np.array(intervals[name], float).T - ys)
        ax.bar(np.arange(len(ys)) + (k - (len(values) - 1) / 2) * width, ys, width * 0.9,
               yerr=err, capsize=2, label=name, color=model_colour(name), alpha=0.9)


def _legend_below(fig, ax):
    """``ax``'s legend under the panels of ``fig`` (never over a bar); returns ``fig``."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncols=min(6, len(labels)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07 * int(np.ceil(len(labels) / 6)), 1, 1))
    return fig


def plot_coverage_by_group(metrics_by_model: dict[str, dict], group_names=("room_type",
                           "price_band"), title: str | None = None):
    """Coverage per group level (bars, 95% bootstrap intervals) per model, one panel per
    breakdown, dashed line at the nominal coverage; empty levels dropped. ``metrics_by_model``:
    ``{model: interval metrics at one coverage}`` (``groups`` of the TRUE price's band)."""
    nominal = next((m["nominal"] for m in metrics_by_model.values() if m.get("nominal")), None)
    fig, axes = plt.subplots(1, len(group_names), squeeze=False, figsize=(5.8 * len(group_names), 4))
    for ax, group in zip(axes.flat, group_names, strict=False):
        stats = {n: m.get("groups", {}).get(group, {}) for n, m in metrics_by_model.items()}
        counts = {lv: max(s.get(lv, {}).get("n", 0) for s in stats.values())
                  for lv in level_order({lv for s in stats.values() for lv in s})}
        cells = {n: [s.get(lv, {}) for lv, c in counts.items() if c] for n, s in stats.items()}
        values = {n: [c.get("coverage", np.nan) for c in cs] for n, cs in cells.items()}
        _grouped_bars(ax, values, {n: [c.get("coverage_ci95") or [v, v] for c, v in
                                       zip(cs, values[n], strict=True)] for n, cs in cells.items()})
        ax.set_xticks(range(sum(map(bool, counts.values()))),
                      [f"{lv}\n(n={c})" for lv, c in counts.items() if c])
        if nominal is not None:
            ax.axhline(nominal, color="black", ls="--", lw=1, label=f"nominal {nominal:.0%}")
        ax.set(ylim=(0, 1.05), ylabel="test coverage", title=GROUP_TITLES.get(group, group))
    fig.suptitle(title or "")
    return _legend_below(fig, axes.flat[0])


def plot_group_errors(tables: dict[str, pd.DataFrame]):
    """One panel per grouping (``{title: DataFrame}``, a column per model and ``n``): mean
    absolute error (EUR) per group, a bar per model; empty groups dropped; a title's price band
    says true or predicted price (:func:`band_title`)."""
    fig, axes = plt.subplots(1, len(tables), figsize=(6.5 * len(tables), 3.8), squeeze=False)
    for ax, (title, table) in zip(axes.flat, tables.items(), strict=False):
        table = table[table["n"] > 0]
        _grouped_bars(ax, {c: table[c].tolist() for c in table.columns if c != "n"})
        ax.set_xticks(np.arange(len(table)), [f"{g}\n(n={n})" for g, n in
                                              zip(table.index, table["n"], strict=True)], fontsize=8)
        ax.set(ylabel="mean absolute error (EUR)", title=band_title(title))
    return _legend_below(fig, axes.flat[0])

"""Report diagnostics: what a model relies on, where and on which listings it errs.

Small, deterministic helpers the reports call (they never print):

* :func:`permutation_importance` / :func:`plot_importance`: MAE increase (EUR) when one RAW
  input column is shuffled across the rows of a part (any bundle with tabular inputs);
* :func:`price_map` / :func:`price_and_residual_maps`: prices or residuals on the map;
* :func:`errors_by_group` / :func:`plot_errors_by_group`: MAE and bias per neighbourhood;
* :func:`extremes`: the most over-priced, under-priced and best-priced listings;
* :func:`photo_grid` / :func:`save_local_figure`: photos with captions, saved ONLY to a local,
  non-committed folder (listing photos are never committed, nor embedded in committed reports);
* :func:`occlusion_sensitivity` / :func:`mean_sensitivity_map` / :func:`plot_sensitivity_map`:
  which part of the photo a photo model reacts to (the average map is not a photo: committable);
* :func:`coverage_by_band`: prediction-interval coverage and width per price band (built on
  :func:`shared.evaluation.intervals.interval_metrics`).

Units: prices, errors and widths in EUR; photo-model outputs in log EUR.
"""

from __future__ import annotations

import dataclasses
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from shared import environment

from shared.data import schema
from shared.evaluation.metrics import band_names, mae, price_band
from shared.features.tabular import _numbers, input_columns
from shared.io import atomic_path

#: Columns of a Dataset's frame that identify a row or its photo: never permuted (the frame's
#: invariants, sorted by ID and one photo per ID, must hold in a permuted copy).
PROTECTED_COLUMNS = (schema.ID_COLUMN, schema.TARGET_COLUMN, "price", "image_path", "image_width",
                     "image_height")
#: Neighbourhood columns tried in order by :func:`errors_by_group` when the asked one is absent
#: (the 814-listing set has all three; the 10k set only ``Neighbourhood Cleansed``).
NEIGHBOURHOOD_COLUMNS = ("Neighbourhood Group Cleansed", "Neighbourhood Cleansed", "Neighbourhood")
#: Default price bands of :func:`coverage_by_band`, EUR per night (last band open-ended).
COVERAGE_BANDS = (0.0, 40.0, 80.0, 120.0, 200.0, np.inf)


def _vector(values, name: str) -> np.ndarray:
    out = np.asarray(values, dtype=np.float64).reshape(-1)
    if out.ndim != 1:
        raise ValueError(f"{name} must be a vector")
    return out


def _same_length(**vectors) -> int:
    lengths = {name: len(v) for name, v in vectors.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"lengths differ: {lengths}")
    return next(iter(lengths.values()))


# --------------------------------------------------------------------------- permutation importance

def permuted_dataset(dataset, column: str, permutation: np.ndarray):
    """A copy of ``dataset`` whose ``column`` holds its values reordered by ``permutation``.

    ``dataset`` (a :class:`shared.data.dataset.Dataset`) is left unchanged; every other column, the
    row order (sorted by ID), IDs, prices and photo paths of the copy are those of ``dataset``.
    ``permutation``: (n,) int, a permutation of ``range(n)``.
    """
    if column in PROTECTED_COLUMNS:
        raise ValueError(f"{column!r} identifies a row or its photo; it is never permuted")
    frame = dataset.frame
    if column not in frame.columns:
        raise KeyError(f"column {column!r} is not in the dataset")
    permutation = np.asarray(permutation)
    if sorted(permutation.tolist()) != list(range(len(frame))):
        raise ValueError("permutation is not a permutation of the rows")
    values = pd.Series(frame[column].to_numpy()[permutation], index=frame.index,
                       dtype=frame[column].dtype)
    return dataclasses.replace(dataset, frame=frame.assign(**{column: values}))


def _model_callable(model):
    """(predict_eur callable, preprocessor or None) from a bundle, its bound ``predict_eur`` or
    any callable dataset -> (n,) EUR."""
    owner = model if hasattr(model, "predict_eur") else getattr(model, "__self__", None)
    predict = model.predict_eur if hasattr(model, "predict_eur") else model
    return predict, getattr(owner, "preprocessor", None)


def permutation_importance(predict_eur, dataset, y_eur=None, columns=None, n_repeats: int = 3,
                           seed: int = 0) -> pd.DataFrame:
    """Importance of each RAW input column: MAE increase (EUR) when it is shuffled across rows.

    Args:
        predict_eur: a :class:`~shared.models.bundle.ModelBundle`, its ``predict_eur`` method, or any
            callable ``Dataset -> (n,) EUR``.
        dataset: the rows to score (the validation part in the reports), n rows.
        y_eur: their true prices, (n,) EUR; default ``dataset.prices``.
        columns: the raw columns to permute; default the inputs of the bundle's preprocessor
            (:func:`shared.features.tabular.input_columns`), which needs a bundle or its bound method.
        n_repeats: shuffles per column.
        seed: the shuffles of a column depend only on ``seed`` and the column's name, so the
            same seed gives the same table, whatever other columns are asked for.

    Returns:
        DataFrame indexed by column name, sorted by ``mae_increase_eur`` descending, with
        ``mae_increase_eur`` (mean over repeats of permuted MAE - unpermuted MAE, EUR) and
        ``sd_eur`` (their sample sd, 0 for one repeat). ``attrs``: ``baseline_mae_eur``,
        ``n_repeats``, ``seed``.
    """
    predict, preprocessor = _model_callable(predict_eur)
    if columns is None:
        if preprocessor is None:
            raise ValueError("columns is required unless a bundle (or its predict_eur) is given")
        columns = input_columns(preprocessor)
    if n_repeats < 1:
        raise ValueError("n_repeats must be at least 1")
    y = dataset.prices if y_eur is None else _vector(y_eur, "y_eur")
    n = _same_length(y_eur=y, dataset=dataset.frame)
    baseline = mae(y, _vector(predict(dataset), "prediction"))
    rows = {}
    for column in columns:
        rng = np.random.default_rng([seed, zlib.crc32(str(column).encode())])
        increases = [mae(y, _vector(predict(permuted_dataset(dataset, column, rng.permutation(n))),
                                    "prediction")) - baseline
                     for _ in range(n_repeats)]
        rows[column] = {"mae_increase_eur": float(np.mean(increases)),
                        "sd_eur": float(np.std(increases, ddof=1)) if n_repeats > 1 else 0.0}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["mae_increase_eur", "sd_eur"])
    table.index.name = "column"
    table = table.sort_index().sort_values("mae_increase_eur", ascending=False, kind="mergesort")
    table.attrs.update(baseline_mae_eur=baseline, n_repeats=int(n_repeats), seed=int(seed))
    return table


def plot_importance(table: pd.DataFrame, top: int = 15,
                    title: str = "Permutation importance (validation)", ax=None):
    """Horizontal bars of the ``top`` columns of :func:`permutation_importance` (largest at the
    top), error bars = sd over repeats, into ``ax`` (a new figure when None); returns the Figure."""
    import matplotlib.pyplot as plt

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


# --------------------------------------------------------------------------- maps

def coordinates(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(longitude, latitude) in degrees, each (n,) float, NaN when unparseable.

    Parsed like every numeric column (:func:`shared.features.tabular._numbers`), after a decimal comma
    becomes a dot (a coordinate has no thousands separator, so a comma is always decimal).
    """
    def parse(column):
        return _numbers(frame[column].astype("string").str.replace(",", ".", regex=False)
                        ).to_numpy(dtype=np.float64)
    return parse("Longitude"), parse("Latitude")


def price_map(frame: pd.DataFrame, values, title: str = "", cmap: str = "viridis",
              label: str = "price (EUR)", symmetric: bool = False, ax=None):
    """Listings at their Longitude x Latitude, coloured by ``values`` (n,) (EUR).

    ``symmetric=True`` (residuals): colour limits ``±`` the 95th percentile of ``|values|``,
    centred at 0 (use a diverging ``cmap``); else limits are the 5th and 95th percentiles. Larger
    ``|values|`` are drawn on top; rows without coordinates are skipped. The axes keep degrees,
    with an aspect of 1 / cos(latitude) so distances look the same in both directions. Draws into
    ``ax`` when given; returns the Figure.
    """
    import matplotlib.pyplot as plt

    lon, lat = coordinates(frame)
    v = _vector(values, "values")
    _same_length(values=v, frame=lon)
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
    import matplotlib.pyplot as plt

    y, pred = _vector(y_eur, "y_eur"), _vector(pred_eur, "pred_eur")
    _same_length(y_eur=y, pred_eur=pred)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5))
    price_map(frame, y, "true price", "viridis", "price (EUR)", ax=axes[0])
    price_map(frame, pred - y, "residual (predicted - true)", "RdBu_r",
              "predicted - true (EUR)", symmetric=True, ax=axes[1])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- errors by group

def errors_by_group(frame: pd.DataFrame, y_eur, pred_eur,
                    column: str = "Neighbourhood Group Cleansed", min_count: int = 20
                    ) -> pd.DataFrame:
    """Error per group (e.g. neighbourhood) of the rows of ``frame``.

    If ``column`` is not in ``frame`` the first present of :data:`NEIGHBOURHOOD_COLUMNS` is used
    (``table.attrs["column"]`` says which; ``attrs["requested"]`` the one asked for). Missing
    labels become "missing"; groups of fewer than ``min_count`` rows are pooled as "other".

    Args:
        y_eur, pred_eur: true and predicted prices of the rows, (n,) EUR.

    Returns:
        DataFrame indexed by group, sorted by ``mae_eur`` descending, with ``n``,
        ``median_price_eur`` (true), ``mae_eur`` and ``mean_error_eur`` (mean of predicted -
        true: > 0 over-priced on average).
    """
    used = next((c for c in (column, *NEIGHBOURHOOD_COLUMNS) if c in frame.columns), None)
    if used is None:
        raise KeyError(f"neither {column!r} nor any of {list(NEIGHBOURHOOD_COLUMNS)} is in the frame")
    y, pred = _vector(y_eur, "y_eur"), _vector(pred_eur, "pred_eur")
    _same_length(y_eur=y, pred_eur=pred, frame=frame)
    labels = frame[used].astype("string").str.strip()
    labels = labels.where(labels.notna() & (labels != ""), "missing").astype(str).to_numpy()
    counts = pd.Series(labels).value_counts()
    small = set(counts[counts < min_count].index)
    labels = np.where(np.isin(labels, list(small)), "other", labels)
    data = pd.DataFrame({"group": labels, "y": y, "error": pred - y})
    table = data.groupby("group").agg(n=("y", "size"), median_price_eur=("y", "median"),
                                      mae_eur=("error", lambda e: float(np.mean(np.abs(e)))),
                                      mean_error_eur=("error", "mean"))
    table = table.sort_index().sort_values("mae_eur", ascending=False, kind="mergesort")
    table["n"] = table["n"].astype(int)
    table.attrs.update(column=used, requested=column, min_count=int(min_count))
    return table


def plot_errors_by_group(table: pd.DataFrame, title: str | None = None):
    """Horizontal bars of MAE (EUR) per group of :func:`errors_by_group`, ``n`` annotated;
    returns the Figure."""
    import matplotlib.pyplot as plt

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


# --------------------------------------------------------------------------- extremes and photos

def extremes(ids, y_eur, pred_eur, n: int = 4) -> dict[str, pd.DataFrame]:
    """The listings a model gets most wrong either way, and most right (by log error).

    Args:
        ids: listing IDs, (m,); y_eur, pred_eur: true and predicted prices, (m,) EUR.

    Returns:
        ``{"over-priced": ..., "under-priced": ..., "most right": ...}``, each a DataFrame of up
        to ``n`` rows (worst, resp. best, first) with ``ID``, ``true EUR``, ``predicted EUR``,
        ``error EUR`` (predicted - true) and ``log error`` (log predicted - log true).
    """
    ids = np.asarray(ids).reshape(-1)
    y, pred = _vector(y_eur, "y_eur"), _vector(pred_eur, "pred_eur")
    _same_length(ids=ids, y_eur=y, pred_eur=pred)
    log_error = np.log(pred) - np.log(y)
    table = pd.DataFrame({"ID": ids, "true EUR": y, "predicted EUR": pred, "error EUR": pred - y,
                          "log error": log_error})
    over = np.argsort(-log_error, kind="stable")
    under = np.argsort(log_error, kind="stable")
    right = np.argsort(np.abs(log_error), kind="stable")
    return {"over-priced": table.iloc[over[:n]][log_error[over[:n]] > 0].reset_index(drop=True),
            "under-priced": table.iloc[under[:n]][log_error[under[:n]] < 0].reset_index(drop=True),
            "most right": table.iloc[right[:n]].reset_index(drop=True)}


def photo_grid(paths, captions, ncols: int = 4, image_size: int = 224):
    """Photos (decoded as the models see them: :func:`shared.data.images.decode_photo`, squashed to
    ``image_size`` square) with a caption under each; returns the Figure.

    Listing photos must never be committed: save the figure with :func:`save_local_figure` only
    and close it (do not leave it to be shown inline in a committed notebook).
    """
    import matplotlib.pyplot as plt
    import tensorflow as tf

    from shared.data.images import decode_photo

    paths, captions = [str(p) for p in paths], [str(c) for c in captions]
    _same_length(paths=paths, captions=captions)
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


# --------------------------------------------------------------------------- occlusion

def occlusion_sensitivity(model, images, patch: int = 32, stride: int = 32, fill=None,
                          batch_size: int = 64) -> np.ndarray:
    """How much a photo model's prediction moves when a square of the photo is hidden.

    Args:
        model: Keras model, (k, S, S, 3) float [0, 255] -> (k, 1) log price (e.g.
            :func:`shared.models.families.transfer.assemble_end_to_end` of ``transfer_frozen``).
        images: (n, S, S, 3) photos, float in [0, 255].
        patch, stride: side of the hidden square and step between squares (px); the grid has
            ``gh = gw = (S - patch) // stride + 1`` positions per side.
        fill: colour of the square: None -> each photo's mean colour, else a scalar or (3,).
        batch_size: photo and its occluded copies predicted per model call (one call for a
            7 x 7 grid with the default 64).

    Returns:
        (n, gh, gw) float64: |prediction with square (i, j) hidden - prediction of the photo|,
        log-price units; cell (0, 0) is the top-left square.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or images.shape[1] != images.shape[2] or images.shape[3] != 3:
        raise ValueError(f"images must be (n, S, S, 3), got {images.shape}")
    size = images.shape[1]
    if not 0 < patch <= size or stride < 1:
        raise ValueError(f"patch must be in (0, {size}] and stride >= 1")
    starts = list(range(0, size - patch + 1, stride))
    g = len(starts)
    maps = np.zeros((len(images), g, g), dtype=np.float64)
    for k, image in enumerate(images):
        colour = image.mean(axis=(0, 1)) if fill is None else np.broadcast_to(
            np.asarray(fill, dtype=np.float32), (3,))
        batch = np.repeat(image[None], g * g + 1, axis=0)  # copy 0: the photo itself
        for c, (i, j) in enumerate((i, j) for i in range(g) for j in range(g)):
            batch[c + 1, starts[i]:starts[i] + patch, starts[j]:starts[j] + patch] = colour
        preds = np.concatenate([np.asarray(model.predict_on_batch(batch[s:s + batch_size]),
                                           dtype=np.float64).reshape(-1)
                                for s in range(0, len(batch), batch_size)])
        maps[k] = np.abs(preds[1:] - preds[0]).reshape(g, g)
    return maps


def mean_sensitivity_map(maps, per_photo: bool = False) -> np.ndarray:
    """Average of :func:`occlusion_sensitivity` maps, (n, gh, gw) -> (gh, gw), scaled to mean 1
    (all zeros stays zeros). ``per_photo``: scale each photo's map to mean 1 first, so photos the
    model reacts strongly to do not dominate (photos with an all-zero map are left out)."""
    maps = np.asarray(maps, dtype=np.float64)
    if per_photo:
        means = maps.mean(axis=(1, 2))
        maps = maps[means > 0] / means[means > 0, None, None]
    average = maps.mean(axis=0) if len(maps) else np.zeros(maps.shape[1:])
    scale = average.mean()
    return average / scale if scale > 0 else average


def plot_sensitivity_map(mean_map, title: str = "Occlusion sensitivity (mean over photos)"):
    """Heat map of a :func:`mean_sensitivity_map` (gh, gw), top-left square at the top left,
    colour bar in units of the map's mean; returns the Figure. An average over many photos, not a
    photo: it may be committed."""
    import matplotlib.pyplot as plt

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


# --------------------------------------------------------------------------- interval coverage

def band_labels(prices_eur, bands=COVERAGE_BANDS) -> tuple[np.ndarray, list[str]]:
    """(labels (n,) object, band names in order) for prices (EUR) cut at ``bands`` edges
    (left-closed: 40 is in "40-80"); the last band is ">=edge" when the last edge is inf."""
    return price_band(_vector(prices_eur, "prices"), bands), band_names(bands)


def coverage_by_band(y_eur, low_eur, high_eur, pred_eur, bands=COVERAGE_BANDS,
                     by: str = "predicted", n_boot: int = 1000, *, seed: int) -> pd.DataFrame:
    """Coverage and width of prediction intervals per price band.

    Counts, coverage and its bootstrap interval come from
    :func:`shared.evaluation.intervals.interval_metrics` (the same numbers as the reports' interval
    tables); this adds the mean width and the ordering of bands.

    Args:
        y_eur, low_eur, high_eur, pred_eur: true price, interval bounds and point prediction,
            each (n,) EUR.
        bands: band edges, EUR (default 0, 40, 80, 120, 200, inf).
        by: "predicted" (bands of the prediction: what a user sees) or "true".

    Returns:
        DataFrame indexed by band (every band, in price order) with ``n``, ``coverage`` (share
        of true prices inside their interval, NaN for an empty band), ``coverage_ci95_low`` /
        ``_high``, ``mean_width_eur`` and ``median_width_eur``. ``attrs["by"]``: ``by``.
    """
    from shared.evaluation.intervals import interval_metrics

    if by not in ("predicted", "true"):
        raise ValueError("by must be 'predicted' or 'true'")
    y, low, high, pred = (_vector(v, name) for v, name in
                          ((y_eur, "y_eur"), (low_eur, "low_eur"), (high_eur, "high_eur"),
                           (pred_eur, "pred_eur")))
    _same_length(y_eur=y, low_eur=low, high_eur=high, pred_eur=pred)
    labels, names = band_labels(pred if by == "predicted" else y, bands)
    stats = interval_metrics(y, low, high, {"band": labels}, n_boot=n_boot, seed=seed)
    stats = stats["groups"]["band"]
    width = high - low
    rows = {}
    for name in names:
        s = stats.get(name, {})
        ci = s.get("coverage_ci95") or [np.nan, np.nan]
        mask = labels == name
        rows[name] = {"n": int(mask.sum()), "coverage": s.get("coverage", np.nan),
                      "coverage_ci95_low": ci[0], "coverage_ci95_high": ci[1],
                      "mean_width_eur": float(width[mask].mean()) if mask.any() else np.nan,
                      "median_width_eur": s.get("median_width_eur", np.nan)}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = f"{by} price band (EUR)"
    table.attrs["by"] = by
    return table


# --------------------------------------------------------------------------- photo models

def load_photos(paths, image_size: int) -> np.ndarray:
    """(n, image_size, image_size, 3) float32 in [0, 255]: photos decoded as the models see them."""
    import tensorflow as tf

    from shared.data.images import decode_photo

    return np.stack([decode_photo(tf.constant(str(p)), image_size).numpy() for p in paths]
                    ).astype(np.float32)


def photo_sensitivity(model, paths, image_size: int, patch: int = 32,
                      stride: int = 32) -> np.ndarray:
    """Mean occlusion map (gh, gw), per-photo maps scaled to mean 1 first, of a photo-only Keras
    ``model`` ((n, S, S, 3) [0, 255] -> (n, 1) log price, S = ``image_size``) over the photos at
    ``paths`` (:func:`occlusion_sensitivity`)."""
    maps = occlusion_sensitivity(model, load_photos(paths, image_size), patch=patch,
                                 stride=stride)
    return mean_sensitivity_map(maps, per_photo=True)


def local_photo_grid(tables: dict[str, pd.DataFrame], paths_by_id: dict, directory, name: str,
                     image_size: int = 224) -> Path:
    """The photos of :func:`extremes`' listings, captioned with the table they come from and true
    / predicted EUR, saved to ``directory`` (never ``docs/``: listing photos are not published);
    returns the PNG's path."""
    import matplotlib.pyplot as plt

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

"""Report diagnostics: what a model relies on, where and on which listings it errs.

Small, deterministic helpers the reports call (they never print or plot; the plots are in
:mod:`shared.reporting.figures`, the local-only photo grids in :mod:`shared.reporting.photos`):

* :func:`permutation_importance`: MAE increase (EUR) when one RAW input column is shuffled
  across the rows of a part (any bundle with tabular inputs);
* :func:`coordinates`: a part's latitude and longitude, for the maps;
* :func:`errors_by_group`: MAE and bias per neighbourhood;
* :func:`extremes`: the most over-priced, under-priced and best-priced listings;
* :func:`occlusion_sensitivity` / :func:`mean_sensitivity_map` / :func:`photo_sensitivity`:
  which part of the photo a photo model reacts to (the average map is not a photo: committable);
* :func:`coverage_by_band`: prediction-interval coverage and width per price band (built on
  :func:`shared.evaluation.intervals.interval_metrics`).

Units: prices, errors and widths in EUR; photo-model outputs in log EUR.
"""

from __future__ import annotations

import dataclasses
import zlib

import numpy as np
import pandas as pd


from shared.data import schema
from shared.evaluation.intervals import interval_metrics
from shared.evaluation.metrics import band_names, mae, price_band
from shared.features.tabular import _numbers, input_columns

#: Columns of a Dataset's frame that identify a row or its photo: never permuted (the frame's
#: invariants, sorted by ID and one photo per ID, must hold in a permuted copy).
PROTECTED_COLUMNS = (schema.ID_COLUMN, schema.TARGET_COLUMN, "price", "image_path", "image_width",
                     "image_height")
#: Neighbourhood columns tried in order by :func:`errors_by_group` when the asked one is absent
#: (the 814-listing set has all three; the 10k set only ``Neighbourhood Cleansed``).
NEIGHBOURHOOD_COLUMNS = ("Neighbourhood Group Cleansed", "Neighbourhood Cleansed", "Neighbourhood")
#: Default price bands of :func:`coverage_by_band`, EUR per night (last band open-ended).
COVERAGE_BANDS = (0.0, 40.0, 80.0, 120.0, 200.0, np.inf)


def as_vector(values, name: str) -> np.ndarray:
    out = np.asarray(values, dtype=np.float64).reshape(-1)
    if out.ndim != 1:
        raise ValueError(f"{name} must be a vector")
    return out


def same_length(**vectors) -> int:
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
    y = dataset.prices if y_eur is None else as_vector(y_eur, "y_eur")
    n = same_length(y_eur=y, dataset=dataset.frame)
    baseline = mae(y, as_vector(predict(dataset), "prediction"))
    rows = {}
    for column in columns:
        rng = np.random.default_rng([seed, zlib.crc32(str(column).encode())])
        increases = [mae(y, as_vector(predict(permuted_dataset(dataset, column, rng.permutation(n))),
                                    "prediction")) - baseline
                     for _ in range(n_repeats)]
        rows[column] = {"mae_increase_eur": float(np.mean(increases)),
                        "sd_eur": float(np.std(increases, ddof=1)) if n_repeats > 1 else 0.0}
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["mae_increase_eur", "sd_eur"])
    table.index.name = "column"
    table = table.sort_index().sort_values("mae_increase_eur", ascending=False, kind="mergesort")
    table.attrs.update(baseline_mae_eur=baseline, n_repeats=int(n_repeats), seed=int(seed))
    return table


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
    y, pred = as_vector(y_eur, "y_eur"), as_vector(pred_eur, "pred_eur")
    same_length(y_eur=y, pred_eur=pred, frame=frame)
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
    y, pred = as_vector(y_eur, "y_eur"), as_vector(pred_eur, "pred_eur")
    same_length(ids=ids, y_eur=y, pred_eur=pred)
    log_error = np.log(pred) - np.log(y)
    table = pd.DataFrame({"ID": ids, "true EUR": y, "predicted EUR": pred, "error EUR": pred - y,
                          "log error": log_error})
    over = np.argsort(-log_error, kind="stable")
    under = np.argsort(log_error, kind="stable")
    right = np.argsort(np.abs(log_error), kind="stable")
    return {"over-priced": table.iloc[over[:n]][log_error[over[:n]] > 0].reset_index(drop=True),
            "under-priced": table.iloc[under[:n]][log_error[under[:n]] < 0].reset_index(drop=True),
            "most right": table.iloc[right[:n]].reset_index(drop=True)}


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


# --------------------------------------------------------------------------- interval coverage

def band_labels(prices_eur, bands=COVERAGE_BANDS) -> tuple[np.ndarray, list[str]]:
    """(labels (n,) object, band names in order) for prices (EUR) cut at ``bands`` edges
    (left-closed: 40 is in "40-80"); the last band is ">=edge" when the last edge is inf."""
    return price_band(as_vector(prices_eur, "prices"), bands), band_names(bands)


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
    if by not in ("predicted", "true"):
        raise ValueError("by must be 'predicted' or 'true'")
    y, low, high, pred = (as_vector(v, name) for v, name in
                          ((y_eur, "y_eur"), (low_eur, "low_eur"), (high_eur, "high_eur"),
                           (pred_eur, "pred_eur")))
    same_length(y_eur=y, low_eur=low, high_eur=high, pred_eur=pred)
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
    # TensorFlow: only the photo diagnostics get here (the tabular ones run without it)
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



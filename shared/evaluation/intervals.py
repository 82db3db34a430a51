"""Calibrated prediction intervals for every saved model: normalised split conformal prediction.

What a user gets
    For a listing with predicted log price ŷ the ``c`` interval (e.g. ``c = 0.8``) is, in euros,
    ``[exp(ŷ - q_c σ(x)), exp(ŷ + q_c σ(x))]``: symmetric on the log scale (a relative range,
    e.g. "-25% / +33%"), asymmetric in euros, and always containing the point prediction
    ``exp(ŷ)``. ``σ(x)`` is a *difficulty* estimate of the listing, ``q_c`` a conformal quantile.

The method, and why it is this one
    *Split conformal prediction* (Vovk et al. 2005; Lei et al. 2018) needs nothing from the model
    but its predictions: the same code calibrates ridge, gradient boosting, the MLPs, the photo
    CNNs and the fusion networks, which is what "every saved model" asks. Given ``n`` calibration
    rows that took no part in fitting the model, with scores ``s_i = |y_i - ŷ_i| / σ(x_i)``, the
    interval ``|y - ŷ| <= q σ(x)`` with ``q`` the ``k``-th smallest score,
    ``k = ceil((n + 1) c)``, covers a new exchangeable listing with probability at least ``c``
    and (for continuous scores) at most ``c + 1 / (n + 1)``: a finite-sample guarantee that
    holds for any model and any error distribution. With the 814-listing set ``n = 82``
    (coverage between 80.0% and 81.2% for ``c = 0.8``), with the 10k set ``n ≈ 1,035``.

    *Adaptive width.* Plain split conformal gives every listing the same relative width. Errors
    are not that even: they depend on the room type and on where the prediction falls in the
    price range. Two adaptive designs were considered:

    * Mondrian (group-wise) conformal by room type x predicted price band: one quantile per
      group. With 82 calibration rows a group of 10-20 rows has a quantile that jumps by whole
      ranks (the 80% quantile of 12 rows is the 11th of 12 scores), and shared rooms (15 of 814
      listings, ~2 in validation) never reach a usable group size, so most groups would fall back
      to the pooled quantile anyway.
    * *Normalised* conformal (chosen): one pooled quantile of normalised scores, where the
      difficulty ``σ(x)`` is a small log-linear model of the absolute log residual,
      ``log σ(x) = b0 + b1 z + b2 z² + Σ_r b_r [room type = r]`` with ``z`` the standardised
      predicted log price. Only the pooled quantile is estimated from the calibration rows, so
      82 rows are enough, and the width still varies smoothly with price and room type.

    ``σ`` is fitted on the **training rows' residuals**, never on calibration rows (fitting it
    on them would break the exchangeability the guarantee rests on). Training residuals are
    smaller than out-of-sample ones for a model that fits its training rows closely, but only the
    *shape* of ``σ`` is taken from them: its scale is absorbed by the conformal quantile, which
    comes from the calibration rows. A badly shaped ``σ`` costs width (efficiency), never the
    marginal coverage guarantee. To keep a poorly fitted ``σ`` harmless its ratio to the median
    training difficulty is clipped to ``[1/3, 3]``, and residuals are floored at a tenth of their
    median before the log. Inputs of ``σ`` are the model's own prediction and ``Room Type``,
    present in both datasets; ``Price`` is never an input. Without training predictions (e.g.
    when predicting on all training photos is too slow) ``σ = 1`` and the method is plain split
    conformal on log-price residuals.

Which rows calibrate it, and why not the validation rows
    The calibration rows are the **calibration part** of the shared split (``cal``, 10% of the
    listings, :mod:`shared.data.split`). It chooses nothing: no hyperparameter, no early-stopping
    epoch, no model choice reads it, so its residuals are those of listings the model was never
    selected on, and the conformal guarantee holds. An earlier version calibrated on the
    validation rows, which also chose hyperparameters and stopped training: on the 814-listing
    set the 80% ranges of the three fusion models, the most searched on validation, then covered
    only 72-73% of test prices, their whole 95% bootstrap interval below 80%. The training rows
    cannot calibrate either (they are fitted, so their residuals are too small); cross-fitting
    would retrain every model, photo networks included, several times. Test rows never enter the
    calibration (``fit_calibration`` has no argument that could take them, and it refuses
    calibration rows that overlap the training rows); each report shows the test coverage with
    a 95% bootstrap interval as the check.

Public interface (what training code and the reports call)
    :func:`fit_calibration` -> :class:`IntervalCalibration` (JSON: ``to_dict`` / ``from_dict``,
    saved in a model bundle as ``intervals.json``); ``IntervalCalibration.interval`` for any
    coverage in (0, 1); :func:`interval_metrics` / :func:`interval_report` (coverage with its
    bootstrap interval, median width, per-group coverage); :func:`evaluation_groups`;
    :func:`plot_coverage_by_group`; :func:`interval_table`;
    :func:`coverage_sentence`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shared.io import write_json_atomic
from shared.evaluation.metrics import N_BOOTSTRAP, bootstrap_indices, price_band

CALIBRATION_FILE = "intervals.json"
CALIBRATION_FORMAT = 1
ROOM_TYPE_COLUMN = "Room Type"
ID_COLUMN = "ID"
SIGMA_CLIP = (1.0 / 3.0, 3.0)      # difficulty relative to its training median
RESIDUAL_FLOOR = 0.1               # residuals floored at this share of their median before log
MIN_LEVEL_ROWS = 20                # a room type needs this many training rows for its own term
RIDGE_PENALTY = 1.0                # on the summed squared error of the difficulty regression
DEFAULT_COVERAGES = (0.8, 0.9)
PRICE_BAND_ORDER = ("<30", "30-50", "50-80", "80-120", ">=120")


class IntervalError(ValueError):
    """An interval cannot be computed as asked (bad coverage, bad input); the message says why."""


def check_coverage(coverage) -> float:
    """``coverage`` as a float strictly between 0 and 1, else :class:`IntervalError`."""
    try:
        value = float(coverage)
    except (TypeError, ValueError):
        raise IntervalError(f"coverage must be a number strictly between 0 and 1, got {coverage!r}"
                            ) from None
    if isinstance(coverage, bool) or not 0.0 < value < 1.0:  # also rejects NaN
        raise IntervalError(f"coverage must be a number strictly between 0 and 1, got {coverage!r}")
    return value


def conformal_rank(n: int, coverage: float) -> int:
    """``k = ceil((n + 1) * coverage)``: the rank (1-based) of the calibration score used as the
    conformal quantile of ``n`` scores. Raises :class:`IntervalError` when ``k > n`` (too few
    calibration rows for that coverage: the interval would be unbounded)."""
    coverage = check_coverage(coverage)
    k = math.ceil((n + 1) * coverage - 1e-9)  # 1e-9: (9 + 1) * 0.8 is 8.000000000000002
    if k > n:
        raise IntervalError(
            f"a {coverage:g} interval needs at least {k} calibration rows "
            f"(ceil((n + 1) * coverage) <= n), this calibration has {n}: the largest coverage it "
            f"supports is {n}/{n + 1} = {math.floor(n / (n + 1) * 1000) / 1000:.3f}")
    return max(k, 1)


# --------------------------------------------------------------------------- difficulty model

def _room_types(frame: pd.DataFrame, n: int) -> np.ndarray:
    """Room type per row, shape (n,), str ('' when missing)."""
    if not isinstance(frame, pd.DataFrame) or ROOM_TYPE_COLUMN not in frame.columns:
        raise IntervalError(f"the listing frame needs a {ROOM_TYPE_COLUMN!r} column")
    if len(frame) != n:
        raise IntervalError(f"{n} predictions but {len(frame)} listing rows")
    return frame[ROOM_TYPE_COLUMN].fillna("").astype(str).to_numpy()


def _as_vector(values, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise IntervalError(f"{name} holds {int((~np.isfinite(array)).sum())} non-finite value(s)")
    return array


@dataclass(frozen=True)
class Difficulty:
    """``σ(x)``: relative difficulty of a listing from its predicted log price and room type.

    ``log σ = intercept + coef · [z, z², 1{room = r} for r in room_types]`` with
    ``z = clip((ŷ - center) / scale, *z_range)``; the result is divided by ``median`` (so the
    median training listing has σ = 1) and clipped to :data:`SIGMA_CLIP`. Unitless.
    """

    center: float
    scale: float
    z_range: tuple[float, float]
    room_types: tuple[str, ...]
    coef: tuple[float, ...]
    intercept: float
    median: float
    n_train: int

    @classmethod
    def fit(cls, pred_log: np.ndarray, y_log: np.ndarray, frame: pd.DataFrame) -> Difficulty:
        """Fit on training rows: ``pred_log``, ``y_log`` (n,) log EUR, ``frame`` (n rows)."""
        rooms = _room_types(frame, len(pred_log))
        center, scale = float(pred_log.mean()), float(pred_log.std())
        scale = scale if scale > 1e-12 else 1.0
        z = (pred_log - center) / scale
        levels, counts = np.unique(rooms, return_counts=True)
        frequent = [str(lv) for lv, c in zip(levels, counts, strict=True) if c >= MIN_LEVEL_ROWS]
        reference = str(levels[np.argmax(counts)])
        room_types = tuple(lv for lv in frequent if lv != reference)
        partial = cls(center, scale, (float(z.min()), float(z.max())), room_types,
                      (0.0,) * (2 + len(room_types)), 0.0, 1.0, len(pred_log))
        X = partial._design(pred_log, rooms)
        abs_res = np.abs(y_log - pred_log)
        floor = max(RESIDUAL_FLOOR * float(np.median(abs_res)), 1e-6)
        target = np.log(np.maximum(abs_res, floor))
        coef, intercept = _ridge(X, target, RIDGE_PENALTY)
        raw = np.exp(intercept + X @ coef)
        return cls(partial.center, partial.scale, partial.z_range, room_types,
                   tuple(map(float, coef)), float(intercept), float(np.median(raw)), len(pred_log))

    def _design(self, pred_log: np.ndarray, rooms: np.ndarray) -> np.ndarray:
        z = np.clip((pred_log - self.center) / self.scale, *self.z_range)
        columns = [z, z ** 2] + [(rooms == r).astype(np.float64) for r in self.room_types]
        return np.column_stack(columns)

    def sigma(self, pred_log: np.ndarray, frame: pd.DataFrame) -> np.ndarray:
        """Difficulty per row, shape (n,), in (1/3, 3)."""
        rooms = _room_types(frame, len(pred_log))
        raw = np.exp(self.intercept + self._design(pred_log, rooms) @ np.asarray(self.coef))
        return np.clip(raw / self.median, *SIGMA_CLIP)

    def to_dict(self) -> dict:
        return {"center": self.center, "scale": self.scale, "z_range": list(self.z_range),
                "room_types": list(self.room_types), "coef": list(self.coef),
                "intercept": self.intercept, "median": self.median, "n_train": self.n_train,
                "features": ["z", "z^2"] + [f"room type = {r}" for r in self.room_types]}

    @classmethod
    def from_dict(cls, data: dict) -> Difficulty:
        return cls(float(data["center"]), float(data["scale"]),
                   tuple(map(float, data["z_range"])), tuple(map(str, data["room_types"])),
                   tuple(map(float, data["coef"])), float(data["intercept"]),
                   float(data["median"]), int(data["n_train"]))


def _ridge(X: np.ndarray, y: np.ndarray, penalty: float) -> tuple[np.ndarray, float]:
    """Ridge regression with an unpenalised intercept: (coef (d,), intercept)."""
    mean_x, mean_y = X.mean(axis=0), float(y.mean())
    Xc = X - mean_x
    coef = np.linalg.solve(Xc.T @ Xc + penalty * np.eye(X.shape[1]), Xc.T @ (y - mean_y))
    return coef, mean_y - float(mean_x @ coef)


# --------------------------------------------------------------------------- calibration

@dataclass(frozen=True)
class IntervalCalibration:
    """A fitted interval method: sorted calibration scores + the difficulty model.

    Attributes:
        scores: sorted normalised scores ``|y - ŷ| / σ(x)`` of the calibration rows (log-price
            units divided by a unitless difficulty), shape (n,).
        difficulty: the fitted :class:`Difficulty`, or None (σ = 1, plain split conformal).
        calibration_ids: listing IDs of the calibration rows (sorted), for audits.
    """

    scores: tuple[float, ...]
    difficulty: Difficulty | None
    calibration_ids: tuple[int, ...] = ()

    @property
    def n(self) -> int:
        return len(self.scores)

    @property
    def method(self) -> str:
        return ("normalised split conformal on log price" if self.difficulty is not None
                else "split conformal on log price")

    @property
    def max_coverage(self) -> float:
        """The largest coverage with a bounded interval: n / (n + 1)."""
        return self.n / (self.n + 1)

    def quantile(self, coverage) -> float:
        """Conformal quantile ``q`` of the normalised scores for ``coverage`` in (0, 1)."""
        return self.scores[conformal_rank(self.n, coverage) - 1]

    def sigma(self, pred_log, frame: pd.DataFrame) -> np.ndarray:
        """Difficulty σ(x) per row, shape (n,) (all ones without a difficulty model)."""
        pred_log = _as_vector(pred_log, "predicted log prices")
        if self.difficulty is None:
            _room_types(frame, len(pred_log))
            return np.ones_like(pred_log)
        return self.difficulty.sigma(pred_log, frame)

    def interval(self, pred_log, frame: pd.DataFrame, coverage) -> tuple[np.ndarray, np.ndarray]:
        """``coverage`` prediction interval per listing.

        Args:
            pred_log: the model's predicted log price (log EUR), shape (n,).
            frame: the listings' DataFrame (n rows; ``Room Type`` is read).
            coverage: nominal coverage in (0, 1), e.g. 0.8.

        Returns:
            (low_eur, high_eur), each shape (n,), float64 euros, with
            ``low <= exp(pred_log) <= high``. Each row depends only on that row and on this
            calibration, never on the other rows scored with it.
        """
        q = self.quantile(coverage)
        pred_log = _as_vector(pred_log, "predicted log prices")
        half = q * self.sigma(pred_log, frame)
        return np.exp(pred_log - half), np.exp(pred_log + half)

    def to_dict(self) -> dict:
        """JSON-serialisable content (what ``intervals.json`` holds)."""
        return {"format": CALIBRATION_FORMAT, "method": self.method, "n_calibration": self.n,
                "scores": list(self.scores),
                "difficulty": None if self.difficulty is None else self.difficulty.to_dict(),
                "calibration_ids": list(self.calibration_ids)}

    @classmethod
    def from_dict(cls, data: dict) -> IntervalCalibration:
        """Inverse of :meth:`to_dict`; :class:`IntervalError` when the content is not usable."""
        try:
            if data.get("format") != CALIBRATION_FORMAT:
                raise IntervalError(f"interval calibration format {data.get('format')!r}, this "
                                    f"project reads format {CALIBRATION_FORMAT}")
            scores = tuple(map(float, data["scores"]))
            difficulty = (None if data.get("difficulty") is None
                          else Difficulty.from_dict(data["difficulty"]))
            ids = tuple(map(int, data.get("calibration_ids", [])))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, IntervalError):
                raise
            raise IntervalError(f"interval calibration is malformed ({type(exc).__name__}: {exc})"
                                ) from None
        if not scores or list(scores) != sorted(scores) or not np.all(np.isfinite(scores)):
            raise IntervalError("interval calibration scores must be a non-empty sorted list of "
                                "finite numbers")
        return cls(scores, difficulty, ids)


def _frame_ids(frame: pd.DataFrame) -> np.ndarray | None:
    if isinstance(frame, pd.DataFrame) and ID_COLUMN in frame.columns:
        return frame[ID_COLUMN].to_numpy()
    return None


def fit_calibration(pred_log, y_log, frame: pd.DataFrame, train_pred_log=None, train_y_log=None,
                    train_frame: pd.DataFrame | None = None) -> IntervalCalibration:
    """Fit the interval method of one model from its calibration rows (never test rows).

    Args:
        pred_log, y_log: the model's predicted and the true log price (log EUR) of the
            calibration rows (the calibration part of the split), shape (n_cal,).
        frame: the calibration rows' listing DataFrame (n_cal rows; ``Room Type`` and, when
            present, ``ID`` are read).
        train_pred_log, train_y_log, train_frame: the same for the model's **training** rows,
            used only to fit the difficulty model σ; all three or none (none: σ = 1).

    Returns:
        An :class:`IntervalCalibration`, JSON-serialisable with ``to_dict``.

    Raises:
        IntervalError: shapes disagree, non-finite values, fewer than 2 calibration rows,
            duplicate calibration IDs, or calibration rows that are also training rows.
    """
    pred_log, y_log = _as_vector(pred_log, "predicted log prices"), _as_vector(y_log, "log prices")
    if pred_log.shape != y_log.shape:
        raise IntervalError(f"{len(pred_log)} predictions but {len(y_log)} targets")
    if len(pred_log) < 2:
        raise IntervalError(f"at least 2 calibration rows are needed, got {len(pred_log)}")
    _room_types(frame, len(pred_log))  # validates the frame
    ids = _frame_ids(frame)
    if ids is not None and len(np.unique(ids)) != len(ids):
        raise IntervalError("the calibration rows hold duplicate listing IDs")
    given = [v is not None for v in (train_pred_log, train_y_log, train_frame)]
    if any(given) and not all(given):
        raise IntervalError("train_pred_log, train_y_log and train_frame go together: pass all "
                            "three (difficulty model) or none (plain split conformal)")
    difficulty = None
    if all(given):
        train_ids = _frame_ids(train_frame)
        if ids is not None and train_ids is not None:
            overlap = np.intersect1d(ids, train_ids)
            if len(overlap):
                raise IntervalError(f"{len(overlap)} calibration row(s) are also training rows "
                                    f"(IDs {', '.join(map(str, overlap[:5]))}); calibration rows "
                                    "must take no part in fitting")
        train_pred = _as_vector(train_pred_log, "training predictions")
        train_y = _as_vector(train_y_log, "training log prices")
        if train_pred.shape != train_y.shape:
            raise IntervalError(f"{len(train_pred)} training predictions but {len(train_y)} "
                                "training targets")
        difficulty = Difficulty.fit(train_pred, train_y, train_frame)
    sigma = np.ones_like(pred_log) if difficulty is None else difficulty.sigma(pred_log, frame)
    scores = np.sort(np.abs(y_log - pred_log) / sigma)
    id_tuple = () if ids is None else tuple(int(i) for i in np.sort(ids))
    return IntervalCalibration(tuple(map(float, scores)), difficulty, id_tuple)


def save_calibration(calibration: IntervalCalibration, directory: Path) -> Path:
    """Write ``directory/intervals.json`` atomically."""
    return write_json_atomic(Path(directory) / CALIBRATION_FILE, calibration.to_dict())


def load_calibration(directory: Path) -> IntervalCalibration | None:
    """Read ``directory/intervals.json``; None when the file is absent (model saved without
    intervals); :class:`IntervalError` naming the file when it is unreadable."""
    path = Path(directory) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        return IntervalCalibration.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError, IntervalError) as exc:
        raise IntervalError(f"{path}: {exc}") from None


# --------------------------------------------------------------------------- evaluation

def evaluation_groups(frame: pd.DataFrame, y_eur) -> dict[str, np.ndarray]:
    """The breakdowns the reports use: ``room_type`` and ``price_band`` (of the TRUE price,
    :func:`shared.evaluation.metrics.price_band`), each an (n,) array of labels."""
    return {"room_type": _room_types(frame, len(np.asarray(y_eur).reshape(-1))),
            "price_band": price_band(np.asarray(y_eur, dtype=np.float64).reshape(-1))}


def level_order(levels) -> list[str]:
    levels = [str(v) for v in levels]
    if set(levels) <= set(PRICE_BAND_ORDER):
        return [b for b in PRICE_BAND_ORDER if b in levels]
    return sorted(levels)


def _bootstrap_share(hits: np.ndarray, n_boot: int, seed: int) -> list[float] | None:
    """95% percentile-bootstrap interval of the mean of a 0/1 vector (None below 5 rows)."""
    if len(hits) < 5:
        return None
    means = hits[bootstrap_indices(len(hits), seed=seed, n_boot=n_boot)].mean(axis=1)
    return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def interval_metrics(y_eur, low_eur, high_eur, groups: dict[str, np.ndarray] | None = None, *,
                     seed: int, n_boot: int = N_BOOTSTRAP, nominal: float | None = None) -> dict:
    """How well intervals cover true prices (JSON-serialisable, goes into ``metrics.json``).

    Args:
        y_eur, low_eur, high_eur: true price and interval bounds in euros, shape (n,).
        groups: optional ``{breakdown name: (n,) labels}`` (see :func:`evaluation_groups`).
        n_boot, seed: bootstrap resamples (the same seed gives the same resamples for every
            model, as in :func:`shared.evaluation.metrics.regression_metrics`).
        nominal: the coverage the intervals were built for (recorded as is).

    Returns:
        ``{"nominal", "n", "coverage" (share in [0, 1]), "coverage_ci95" [lo, hi],
        "below", "above" (shares of prices under / over the interval), "median_width_eur",
        "median_width_eur_ci95", "mean_width_eur", "groups": {name: {level: {"n", "coverage",
        "coverage_ci95", "median_width_eur"}}}}``.
    """
    y = np.asarray(y_eur, dtype=np.float64).reshape(-1)
    low = np.asarray(low_eur, dtype=np.float64).reshape(-1)
    high = np.asarray(high_eur, dtype=np.float64).reshape(-1)
    if not len(y) == len(low) == len(high) or len(y) == 0:
        raise IntervalError(f"lengths differ or are zero: y {len(y)}, low {len(low)}, "
                            f"high {len(high)}")
    hits = ((y >= low) & (y <= high)).astype(np.float64)
    width = high - low
    out = {"nominal": None if nominal is None else float(nominal), "n": int(len(y)),
           "coverage": float(hits.mean()), "coverage_ci95": _bootstrap_share(hits, n_boot, seed),
           "below": float(np.mean(y < low)), "above": float(np.mean(y > high)),
           "median_width_eur": float(np.median(width)), "median_width_eur_ci95": None,
           "mean_width_eur": float(width.mean()), "groups": {}}
    if len(y) >= 5:
        medians = np.median(width[bootstrap_indices(len(y), seed=seed, n_boot=n_boot)], axis=1)
        out["median_width_eur_ci95"] = [float(np.percentile(medians, 2.5)),
                                        float(np.percentile(medians, 97.5))]
    for name, labels in (groups or {}).items():
        labels = np.asarray(labels).astype(str).reshape(-1)
        if len(labels) != len(y):
            raise IntervalError(f"group {name!r} has {len(labels)} labels for {len(y)} rows")
        out["groups"][name] = {
            level: {"n": int(mask.sum()), "coverage": float(hits[mask].mean()),
                    "coverage_ci95": _bootstrap_share(hits[mask], n_boot, seed),
                    "median_width_eur": float(np.median(width[mask]))}
            for level in level_order(np.unique(labels)) for mask in [labels == level]}
    return out


def interval_report(calibration: IntervalCalibration, pred_log, frame: pd.DataFrame, y_eur, *,
                    seed: int, coverages=DEFAULT_COVERAGES,
                    n_boot: int = N_BOOTSTRAP) -> dict[str, dict]:
    """:func:`interval_metrics` at each coverage, with the :func:`evaluation_groups` breakdown.

    Args:
        pred_log: predicted log price (log EUR) of the scored rows (e.g. the test part), (n,).
        frame, y_eur: their listing DataFrame (n rows) and true prices in euros, (n,).

    Returns:
        ``{"0.8": metrics, "0.9": metrics}`` (keys are ``f"{coverage:g}"``).
    """
    groups = evaluation_groups(frame, y_eur)
    report = {}
    for coverage in coverages:
        low, high = calibration.interval(pred_log, frame, coverage)
        report[f"{coverage:g}"] = interval_metrics(y_eur, low, high, groups, seed=seed, n_boot=n_boot,
                                                   nominal=coverage)
    return report





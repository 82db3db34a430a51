"""Calibrated prediction intervals for every saved model: Mondrian normalised split conformal.

What a user gets
    For a listing with predicted log price ŷ the ``c`` interval (e.g. ``c = 0.8``) is, in euros,
    ``[exp(ŷ - q_g(c) σ(x)), exp(ŷ + q_g(c) σ(x))]``: symmetric on the log scale, asymmetric in
    euros, always containing ``exp(ŷ)``. ``σ(x)`` is a *difficulty* estimate and ``q_g(c)`` the
    conformal quantile of the listing's *group* ``g``: its room type and the band of its
    PREDICTED price (<30, 30-50, 50-80, 80-120, >=120 EUR), both known at prediction time.

The guarantee, and why groups
    Split conformal prediction (Vovk et al. 2005; Lei et al. 2018) needs only the model's
    predictions, so one code calibrates every model: with ``n`` calibration rows and scores
    ``s_i = |y_i - ŷ_i| / σ(x_i)``, the ``ceil((n + 1) c)``-th smallest score bounds an interval
    covering a new exchangeable listing with probability at least ``c``. One pooled quantile
    promises that on average only; *Mondrian* conformal prediction (Vovk et al. 2005, ch. 4)
    takes the quantile within the listing's group, so the guarantee holds in every group.
    Coverage per TRUE-price band (``price_band``) cannot be promised by any calibration.

Small and unknown groups (:class:`~shared.evaluation.conformal.MondrianGroups`)
    Decided from the calibration rows' room types and predicted prices only: a band with fewer
    than 100 calibration rows is merged with a neighbouring band of the same room type (the
    guarantee is then for the merged group); a room type with fewer than 10 rows, or never seen
    in calibration (e.g. a new "Hotel room"), takes the pooled quantile of all calibration rows
    (the marginal guarantee), as does a group too small for the asked coverage.

The difficulty σ(x), fitted on training rows (:class:`~shared.evaluation.conformal.Difficulty`)
    A ridge regression of the log absolute residual of a sample of training rows on the
    standardised predicted log price, its square and the room type; ``σ = 1`` without them.

Which rows calibrate it (:data:`CALIBRATION_PARTS`)
    The validation and calibration parts together (~2,000 listings on the 10k set): chosen by
    host-grouped cross-validation over those parts (docs/methodology.md, "Prediction
    intervals", gives the comparison and says that it came after a test read). Never test rows:
    ``fit_calibration`` has no argument that could take them and refuses training rows.

``intervals.json`` format 2; format 1 (one pooled quantile) still reads, with the same intervals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from shared.evaluation.conformal import (BANDS, POOLED, Difficulty, IntervalError, MondrianGroups,
                                         as_vector, check_coverage, conformal_rank,
                                         group_quantiles, predicted_band, room_types)
from shared.evaluation.metrics import N_BOOTSTRAP, bootstrap_indices, price_band
from shared.io import write_json_atomic

__all__ = ["CALIBRATION_FILE", "DEFAULT_COVERAGES", "Difficulty", "IntervalCalibration",
           "IntervalError", "check_coverage", "conformal_rank", "evaluation_groups",
           "fit_calibration", "interval_metrics", "interval_report", "level_order",
           "load_calibration", "save_calibration"]

CALIBRATION_FILE = "intervals.json"
#: The parts of the split whose rows calibrate every model (never test; see "Which rows").
CALIBRATION_PARTS = ("val", "cal")
CALIBRATION_FORMAT = 2
READABLE_FORMATS = (1, 2)
ID_COLUMN = "ID"
DEFAULT_COVERAGES = (0.8, 0.9)
PRICE_BAND_ORDER = BANDS


# --------------------------------------------------------------------------- calibration

@dataclass(frozen=True)
class IntervalCalibration:
    """A fitted interval method: calibration scores (pooled and per group), groups, difficulty.

    Attributes:
        scores: sorted scores ``|y - ŷ| / σ(x)`` (log price / unitless σ) of all rows, (n,).
        difficulty: the fitted :class:`Difficulty`, or None (σ = 1).
        calibration_ids: listing IDs of the calibration rows (sorted), for audits.
        groups: the Mondrian groups, or None (one pooled quantile: format 1, today's method).
        group_scores: {group label: sorted scores of its calibration rows}.
    """

    scores: tuple[float, ...]
    difficulty: Difficulty | None
    calibration_ids: tuple[int, ...] = ()
    groups: MondrianGroups | None = None
    group_scores: dict = field(default_factory=dict, hash=False)

    @property
    def n(self) -> int:
        """Calibration rows in all (the pooled group)."""
        return len(self.scores)

    @property
    def method(self) -> str:
        kind = ("normalised split conformal" if self.difficulty is not None
                else "split conformal")
        if self.groups is not None:
            return f"Mondrian {kind} on log price (room type x predicted price band)"
        return f"{kind} on log price"

    @property
    def max_coverage(self) -> float:
        """The largest coverage with a bounded interval: n / (n + 1) (a group too small for a
        coverage takes the pooled quantile)."""
        return self.n / (self.n + 1)

    def quantile(self, coverage) -> float:
        """Pooled conformal quantile of the normalised scores for ``coverage`` in (0, 1)."""
        return self.scores[conformal_rank(self.n, coverage) - 1]

    def sigma(self, pred_log, frame: pd.DataFrame) -> np.ndarray:
        """Difficulty σ(x) per row, shape (n,) (all ones without a difficulty model)."""
        pred_log = as_vector(pred_log, "predicted log prices")
        if self.difficulty is None:
            room_types(frame, len(pred_log))
            return np.ones_like(pred_log)
        return self.difficulty.sigma(pred_log, frame)

    def group_of(self, pred_log, frame: pd.DataFrame) -> np.ndarray:
        """(n,) label of the calibration group answering for each listing (:data:`POOLED` for
        a rare or unseen room type, and for every listing without groups)."""
        pred_log = as_vector(pred_log, "predicted log prices")
        rooms = room_types(frame, len(pred_log))
        if self.groups is None:
            return np.full(len(pred_log), POOLED, dtype=object)
        return self.groups.assign(rooms, predicted_band(pred_log))

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
        quantiles = group_quantiles(self.scores, self.group_scores, check_coverage(coverage))
        pred_log = as_vector(pred_log, "predicted log prices")
        q = np.array([quantiles[g] for g in self.group_of(pred_log, frame)], dtype=np.float64)
        half = q * self.sigma(pred_log, frame)
        return np.exp(pred_log - half), np.exp(pred_log + half)

    def recalibrated(self, pred_log, y_log, frame: pd.DataFrame, *,
                     mondrian: bool) -> IntervalCalibration:
        """The same σ with quantiles from other calibration rows (arguments as
        :func:`fit_calibration`'s); ``mondrian=False``: one pooled quantile. For comparisons
        (the earlier method: pooled, calibration part only)."""
        return _calibrate(pred_log, y_log, frame, self.difficulty, mondrian)

    def to_dict(self) -> dict:
        """JSON-serialisable content (what ``intervals.json`` holds)."""
        return {"format": CALIBRATION_FORMAT, "method": self.method, "n_calibration": self.n,
                "scores": list(self.scores),
                "difficulty": None if self.difficulty is None else self.difficulty.to_dict(),
                "groups": None if self.groups is None else self.groups.to_dict(),
                "group_scores": {k: list(v) for k, v in self.group_scores.items()},
                "calibration_ids": list(self.calibration_ids)}

    @classmethod
    def from_dict(cls, data: dict) -> IntervalCalibration:
        """Inverse of :meth:`to_dict` (format 2), also reading format 1 (one pooled quantile);
        :class:`IntervalError` when the content is not usable."""
        try:
            if data.get("format") not in READABLE_FORMATS:
                raise IntervalError(f"interval calibration format {data.get('format')!r}, this "
                                    f"project reads formats {READABLE_FORMATS}")
            scores = tuple(map(float, data["scores"]))
            difficulty = (None if data.get("difficulty") is None
                          else Difficulty.from_dict(data["difficulty"]))
            ids = tuple(map(int, data.get("calibration_ids", [])))
            groups = (None if data.get("groups") is None
                      else MondrianGroups.from_dict(data["groups"]))
            group_scores = {str(k): tuple(map(float, v))
                            for k, v in (data.get("group_scores") or {}).items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, IntervalError):
                raise
            raise IntervalError(f"interval calibration is malformed ({type(exc).__name__}: {exc})"
                                ) from None
        for values in (scores, *group_scores.values()):
            if not values or list(values) != sorted(values) or not np.all(np.isfinite(values)):
                raise IntervalError("interval calibration scores must be non-empty sorted lists "
                                    "of finite numbers")
        if set(groups.labels if groups is not None else ()) != set(group_scores):
            raise IntervalError("interval calibration groups and group scores disagree")
        return cls(scores, difficulty, ids, groups, group_scores)


def _frame_ids(frame: pd.DataFrame) -> np.ndarray | None:
    if isinstance(frame, pd.DataFrame) and ID_COLUMN in frame.columns:
        return frame[ID_COLUMN].to_numpy()
    return None


def _check_rows(pred_log: np.ndarray, y_log: np.ndarray, frame: pd.DataFrame) -> None:
    """Shapes agree, 2+ calibration rows, a usable frame, no duplicate IDs (else IntervalError)."""
    if pred_log.shape != y_log.shape:
        raise IntervalError(f"{len(pred_log)} predictions but {len(y_log)} targets")
    if len(pred_log) < 2:
        raise IntervalError(f"at least 2 calibration rows are needed, got {len(pred_log)}")
    room_types(frame, len(pred_log))
    ids = _frame_ids(frame)
    if ids is not None and len(np.unique(ids)) != len(ids):
        raise IntervalError("the calibration rows hold duplicate listing IDs")


def _fit_difficulty(cal_frame: pd.DataFrame, train_pred_log, train_y_log,
                    train_frame) -> Difficulty | None:
    """σ from the training rows (all three given) or None (none given); refuses calibration
    rows that are also training rows."""
    given = [v is not None for v in (train_pred_log, train_y_log, train_frame)]
    if any(given) and not all(given):
        raise IntervalError("train_pred_log, train_y_log and train_frame go together: pass all "
                            "three (difficulty model) or none (σ = 1)")
    if not all(given):
        return None
    ids, train_ids = _frame_ids(cal_frame), _frame_ids(train_frame)
    if ids is not None and train_ids is not None:
        overlap = np.intersect1d(ids, train_ids)
        if len(overlap):
            raise IntervalError(f"{len(overlap)} calibration row(s) are also training rows "
                                f"(IDs {', '.join(map(str, overlap[:5]))}); calibration rows "
                                "must take no part in fitting")
    train_pred = as_vector(train_pred_log, "training predictions")
    train_y = as_vector(train_y_log, "training log prices")
    if train_pred.shape != train_y.shape:
        raise IntervalError(f"{len(train_pred)} training predictions but {len(train_y)} "
                            "training targets")
    return Difficulty.fit(train_pred, train_y, train_frame)


def fit_calibration(pred_log, y_log, frame: pd.DataFrame, train_pred_log=None, train_y_log=None,
                    train_frame: pd.DataFrame | None = None, *,
                    mondrian: bool = True) -> IntervalCalibration:
    """Fit the interval method of one model from its calibration rows (never test rows).

    Args:
        pred_log, y_log: the model's predicted and the true log price (log EUR) of the
            calibration rows (the calibration part of the split), shape (n_cal,).
        frame: the calibration rows' listing DataFrame (n_cal rows; ``Room Type`` and, when
            present, ``ID`` are read).
        train_pred_log, train_y_log, train_frame: the same for (a sample of) the model's
            **training** rows, used only to fit the difficulty model σ; all three or none
            (none: σ = 1).
        mondrian: one quantile per group (room type x predicted band; the method of this
            version); False gives the single pooled quantile of format 1 (the earlier method,
            kept for comparisons).

    Returns:
        An :class:`IntervalCalibration`, JSON-serialisable with ``to_dict``.

    Raises:
        IntervalError: shapes disagree, non-finite values, fewer than 2 calibration rows,
            duplicate calibration IDs, or calibration rows that are also training rows.
    """
    return _calibrate(pred_log, y_log, frame,
                      _fit_difficulty(frame, train_pred_log, train_y_log, train_frame), mondrian)


def _calibrate(pred_log, y_log, frame: pd.DataFrame, difficulty: Difficulty | None,
               mondrian: bool) -> IntervalCalibration:
    """Scores (and groups) of the calibration rows under ``difficulty``."""
    pred_log, y_log = as_vector(pred_log, "predicted log prices"), as_vector(y_log, "log prices")
    _check_rows(pred_log, y_log, frame)
    sigma = np.ones_like(pred_log) if difficulty is None else difficulty.sigma(pred_log, frame)
    scores = np.abs(y_log - pred_log) / sigma
    groups, group_scores = None, {}
    if mondrian:
        rooms, bands = room_types(frame, len(pred_log)), predicted_band(pred_log)
        groups = MondrianGroups.fit(rooms, bands)
        labels = groups.assign(rooms, bands)
        group_scores = {g: tuple(map(float, np.sort(scores[labels == g])))
                        for g in groups.labels}
    ids = _frame_ids(frame)
    id_tuple = () if ids is None else tuple(int(i) for i in np.sort(ids))
    return IntervalCalibration(tuple(map(float, np.sort(scores))), difficulty, id_tuple, groups,
                               group_scores)


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

def evaluation_groups(frame: pd.DataFrame, y_eur, pred_log=None) -> dict[str, np.ndarray]:
    """The breakdowns the reports use, each an (n,) array of labels: ``room_type``,
    ``predicted_band`` (band of the PREDICTED price ``exp(pred_log)``, when given: the groups
    the calibration promises coverage in) and ``price_band`` (band of the TRUE price,
    :func:`shared.evaluation.metrics.price_band`: a diagnostic, no calibration can promise it)."""
    y = np.asarray(y_eur, dtype=np.float64).reshape(-1)
    groups = {"room_type": room_types(frame, len(y))}
    if pred_log is not None:
        pred_log = as_vector(pred_log, "predicted log prices")
        if len(pred_log) != len(y):
            raise IntervalError(f"{len(pred_log)} predictions for {len(y)} prices")
        groups["predicted_band"] = predicted_band(pred_log)
    groups["price_band"] = price_band(y)
    return groups


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
        ``{"0.8": metrics, "0.9": metrics}`` (keys are ``f"{coverage:g}"``), each with the
        groups ``room_type``, ``predicted_band`` and ``price_band``.
    """
    groups = evaluation_groups(frame, y_eur, pred_log)
    report = {}
    for coverage in coverages:
        low, high = calibration.interval(pred_log, frame, coverage)
        report[f"{coverage:g}"] = interval_metrics(y_eur, low, high, groups, seed=seed, n_boot=n_boot,
                                                   nominal=coverage)
    return report

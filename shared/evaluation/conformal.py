"""The maths of the prediction intervals: conformal ranks, the difficulty model σ(x) and the
Mondrian groups (room type x predicted-price band) of :mod:`shared.evaluation.intervals`.

Everything here is on the log-price scale and depends only on what is known when a price is
predicted: the model's predicted log price and the listing's ``Room Type``. The true price never
decides a group (see :func:`predicted_band`).

Why own code and not ``crepes.ConformalRegressor`` (which does normalised Mondrian split
conformal regression): four things this project needs and it does not give.

* An unseen Mondrian category (a room type absent from the calibration rows) silently gets the
  interval ``[0, 0]`` from ``predict_int`` (no error, no fallback); here it falls back to the
  pooled quantile (:meth:`MondrianGroups.assign`).
* Its rank ``int((1 - c) (n + 1))`` loses one to floating-point error when ``(n + 1)(1 - c)`` is
  a whole number (``n = 9, c = 0.8`` takes the largest of 9 scores, not the 8th):
  :func:`conformal_rank` is exact.
* A category too small for the coverage gets an infinite interval; here it falls back to the
  pooled quantile for that coverage (:func:`group_quantiles`).
* A fitted ``ConformalRegressor`` is only picklable; a saved model folder is never unpickled
  (:mod:`shared.models.files`), and the calibration is plain JSON.

The tests check these quantiles against ``crepes`` where its rank is exact
(``tests/test_conformal.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from shared.evaluation.metrics import PRICE_BAND_EDGES, band_names, price_band
from shared.ridge import ridge_path

ROOM_TYPE_COLUMN = "Room Type"
SIGMA_CLIP = (1.0 / 3.0, 3.0)      # difficulty relative to its training median
RESIDUAL_FLOOR = 0.1               # residuals floored at this share of their median before log
MIN_LEVEL_ROWS = 20                # a room type needs this many training rows for its own σ term
RIDGE_PENALTY = 1.0                # on the summed squared error of the difficulty regression
#: A Mondrian cell (room type x predicted band) with fewer calibration rows is merged with a
#: neighbouring band of the same room type: with 100 rows the coverage its 80% quantile gives
#: varies by about 4 points (one standard deviation) from one calibration sample to another.
MIN_GROUP_ROWS = 100
#: A room type with fewer calibration rows has no group of its own: the pooled quantile.
MIN_ROOM_ROWS = 10
#: The label of the pooled group (every calibration row): the fallback.
POOLED = "all listings"
BANDS = tuple(band_names(PRICE_BAND_EDGES))


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


def room_types(frame: pd.DataFrame, n: int) -> np.ndarray:
    """Room type per row, shape (n,), str ('' when missing)."""
    if not isinstance(frame, pd.DataFrame) or ROOM_TYPE_COLUMN not in frame.columns:
        raise IntervalError(f"the listing frame needs a {ROOM_TYPE_COLUMN!r} column")
    if len(frame) != n:
        raise IntervalError(f"{n} predictions but {len(frame)} listing rows")
    return frame[ROOM_TYPE_COLUMN].fillna("").astype(str).to_numpy()


def as_vector(values, name: str) -> np.ndarray:
    """``values`` as a finite float64 vector, shape (n,), else :class:`IntervalError`."""
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(array)):
        raise IntervalError(f"{name} holds {int((~np.isfinite(array)).sum())} non-finite value(s)")
    return array


def predicted_band(pred_log) -> np.ndarray:
    """(n,) band label ("<30", "30-50", "50-80", "80-120", ">=120") of the PREDICTED price
    ``exp(pred_log)`` (EUR): the same edges as the true-price bands of
    :func:`shared.evaluation.metrics.price_band`, but known when the price is predicted."""
    return price_band(np.exp(np.asarray(pred_log, dtype=np.float64).reshape(-1)))


# --------------------------------------------------------------------------- difficulty model

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
        rooms = room_types(frame, len(pred_log))
        center, scale = float(pred_log.mean()), float(pred_log.std())
        scale = scale if scale > 1e-12 else 1.0
        z = (pred_log - center) / scale
        levels, counts = np.unique(rooms, return_counts=True)
        frequent = [str(lv) for lv, c in zip(levels, counts, strict=True) if c >= MIN_LEVEL_ROWS]
        reference = str(levels[np.argmax(counts)])
        kept = tuple(lv for lv in frequent if lv != reference)
        partial = cls(center, scale, (float(z.min()), float(z.max())), kept,
                      (0.0,) * (2 + len(kept)), 0.0, 1.0, len(pred_log))
        X = partial._design(pred_log, rooms)
        abs_res = np.abs(y_log - pred_log)
        floor = max(RESIDUAL_FLOOR * float(np.median(abs_res)), 1e-6)
        coefs, mean_y = ridge_path(X, np.log(np.maximum(abs_res, floor)), [RIDGE_PENALTY])
        coef = coefs[0]
        intercept = mean_y - float(X.mean(axis=0) @ coef)  # X is not centred: ridge_path centres it
        raw = np.exp(intercept + X @ coef)
        return cls(partial.center, partial.scale, partial.z_range, kept,
                   tuple(map(float, coef)), float(intercept), float(np.median(raw)), len(pred_log))

    def _design(self, pred_log: np.ndarray, rooms: np.ndarray) -> np.ndarray:
        z = np.clip((pred_log - self.center) / self.scale, *self.z_range)
        columns = [z, z ** 2] + [(rooms == r).astype(np.float64) for r in self.room_types]
        return np.column_stack(columns)

    def sigma(self, pred_log: np.ndarray, frame: pd.DataFrame) -> np.ndarray:
        """Difficulty per row, shape (n,), in (1/3, 3)."""
        rooms = room_types(frame, len(pred_log))
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


# --------------------------------------------------------------------------- Mondrian groups

def _merged_runs(counts: list[int], min_rows: int) -> list[list[int]]:
    """Consecutive band indices merged until every run holds ``min_rows`` rows (or one run is
    left): the smallest run joins its smaller neighbour (ties: the lower band), repeatedly."""
    runs, sizes = [[i] for i in range(len(counts))], list(counts)
    while len(runs) > 1 and min(sizes) < min_rows:
        i = int(np.argmin(sizes))
        if i == 0 or i == len(runs) - 1:
            j = 1 if i == 0 else i - 1
        else:
            j = i - 1 if sizes[i - 1] <= sizes[i + 1] else i + 1
        a, b = min(i, j), max(i, j)
        runs[a:b + 1], sizes[a:b + 1] = [runs[a] + runs[b]], [sizes[a] + sizes[b]]
    return runs


@dataclass(frozen=True)
class MondrianGroups:
    """Which calibration group answers for a listing: ``cells`` maps (room type, predicted band)
    to a group label; anything else (a rare or never-seen room type) is :data:`POOLED`.

    Rule (:meth:`fit`, from the calibration rows' room types and predicted prices only, never
    their prices): each room type with at least :data:`MIN_ROOM_ROWS` calibration rows gets its
    own groups, one per predicted-price band; a band with fewer than :data:`MIN_GROUP_ROWS` rows
    is merged with a neighbouring band of the same room type (so a room type with fewer rows
    than that is one group). Bands without any calibration row belong to a neighbour's group.
    """

    cells: tuple[tuple[str, str, str], ...]   # (room type, band, group label)

    @classmethod
    def fit(cls, rooms: np.ndarray, bands: np.ndarray, min_rows: int = MIN_GROUP_ROWS,
            min_room_rows: int = MIN_ROOM_ROWS) -> MondrianGroups:
        """Groups of the calibration rows: ``rooms``, ``bands`` (n,) str labels."""
        cells = []
        for room in sorted(set(map(str, rooms))):
            in_room = rooms == room
            if in_room.sum() < min_room_rows:
                continue
            counts = [int(np.sum(in_room & (bands == band))) for band in BANDS]
            for run in _merged_runs(counts, min_rows):
                label = f"{room}, predicted {BANDS[run[0]]}" + (
                    f" to {BANDS[run[-1]]}" if len(run) > 1 else "")
                cells.extend((room, BANDS[k], label) for k in run)
        return cls(tuple(cells))

    @property
    def labels(self) -> tuple[str, ...]:
        """The group labels, in order of first appearance (room type, then band)."""
        return tuple(dict.fromkeys(label for _, _, label in self.cells))

    def assign(self, rooms: np.ndarray, bands: np.ndarray) -> np.ndarray:
        """(n,) group label per row; :data:`POOLED` for a room type without groups."""
        table = {(room, band): label for room, band, label in self.cells}
        return np.array([table.get((str(r), str(b)), POOLED) for r, b in zip(rooms, bands, strict=True)],
                        dtype=object)

    def to_dict(self) -> list[list[str]]:
        return [list(cell) for cell in self.cells]

    @classmethod
    def from_dict(cls, data) -> MondrianGroups:
        cells = tuple((str(room), str(band), str(label)) for room, band, label in data)
        if any(band not in BANDS or label == POOLED for _, band, label in cells):
            raise IntervalError(f"Mondrian cells must use the bands {', '.join(BANDS)} and "
                                f"labels other than {POOLED!r}")
        return cls(cells)


def group_quantiles(pooled: tuple[float, ...], groups: dict[str, tuple[float, ...]],
                    coverage: float) -> dict[str, float]:
    """Conformal quantile of each group's sorted scores at ``coverage``, and of the pooled
    scores under :data:`POOLED`. A group with too few rows for that coverage (rank above its
    size) takes the pooled quantile. :class:`IntervalError` when even the pooled scores are too
    few. Units: those of the scores (log price over a unitless σ)."""
    quantile = {POOLED: pooled[conformal_rank(len(pooled), coverage) - 1]}
    for label, scores in groups.items():
        k = math.ceil((len(scores) + 1) * coverage - 1e-9)
        quantile[label] = scores[max(k, 1) - 1] if k <= len(scores) else quantile[POOLED]
    return quantile

"""The one validation search of the project: try candidates, keep the lowest validation MAE."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from shared.evaluation import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fitted:
    """What ``build_and_fit`` returns: the model and its Keras history (None without epochs).<<"""

    model: object
    history: dict | None = None


@dataclass
class SearchResult:
    """The outcome of :func:`tune_on_validation`: the winner's ``model`` / ``params`` / ``history``
    and ``trials``, one ``{**describe(params), "val_mae"}`` per candidate in order (plus
    ``epochs_run`` and ``seconds`` with ``details``)."""

    model: object
    params: dict
    trials: list[dict]
    history: dict | None = None
    val_mae: float = float("inf")


def tune_on_validation(build_and_fit, grid: list[dict], predict_val_eur, y_val_eur,
                       describe=dict, details: bool = False,
                       label: str | None = None) -> SearchResult:
    """Try every parameter set of ``grid``; keep the one with the lowest validation MAE (EUR).

    ``build_and_fit``: ``params -> Fitted`` (training rows only); ``predict_val_eur``:
    ``(model, params) -> (n_val,) EUR``; ``describe``: ``params -> trial record``; ``label``: log one
    INFO line per candidate. A candidate wins only when lower than the best by more than
    :data:`shared.evaluation.metrics.TIE_EUR` (ties keep the earlier); a diverged one never wins,
    and :class:`TrainingDiverged` is raised when all diverged.
    """
    best, trials = None, []
    y_val_eur = np.asarray(y_val_eur)
    for i, params in enumerate(grid):
        start = time.perf_counter()
        fitted = build_and_fit(params)
        if not isinstance(fitted, Fitted):
            raise TypeError(f"build_and_fit must return a Fitted, got {type(fitted).__name__}")
        model, history = fitted.model, fitted.history
        mae = metrics.mae(y_val_eur, np.asarray(predict_val_eur(model, params)).reshape(-1))
        record = {**describe(params), "val_mae": round(mae, 3)}
        if details:
            record["epochs_run"] = len(history["loss"]) if history else 0
            record["seconds"] = round(time.perf_counter() - start, 1)
        trials.append(record)
        if label is not None:
            log.info("  %s %d/%d: %s", label, i + 1, len(grid), record)
        if best is None and np.isfinite(mae) or best is not None and metrics.better(mae, best.val_mae):
            best = SearchResult(model, params, trials, history, mae)
    if best is None:
        raise TrainingDiverged(f"no candidate reached a finite validation MAE; trials: {trials}")
    return best


class TrainingDiverged(RuntimeError):
    """Every candidate of a validation search diverged (infinite or NaN validation error)."""

"""The one validation search of the project: try candidates, keep the lowest validation MAE.

Every model search (ridge, gradient boosting, the MLPs, the transfer head, early and late fusion)
goes through :func:`tune_on_validation`. Its contract is strict: ``build_and_fit(params)``
returns a :class:`Fitted` (the model and its Keras history, or None for models without one).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from shared.evaluation import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fitted:
    """What ``build_and_fit`` returns: the fitted model and its Keras history dict (per-epoch
    lists), or None for a model trained without epochs (scikit-learn, closed form)."""

    model: object
    history: dict | None = None


@dataclass
class SearchResult:
    """The outcome of :func:`tune_on_validation`.

    ``model`` / ``params`` / ``history``: the winner (``history`` None for models without one);
    ``trials``: one record per candidate in the order tried, ``{**describe(params), "val_mae"}``
    plus ``epochs_run`` and ``seconds`` when the search was asked for ``details``.
    """

    model: object
    params: dict
    trials: list[dict]
    history: dict | None = None
    val_mae: float = float("inf")


def tune_on_validation(build_and_fit, grid: list[dict], predict_val_eur, y_val_eur,
                       describe=dict, details: bool = False,
                       label: str | None = None) -> SearchResult:
    """Try every parameter set of ``grid``; keep the one with the lowest validation MAE (EUR).

    Args:
        build_and_fit: ``params -> Fitted`` (fits on the training rows only).
        predict_val_eur: ``(model, params) -> validation predictions in euros, shape (n_val,)``.
        y_val_eur: validation prices, shape (n_val,).
        describe: ``params -> dict`` the trial record of a candidate (default: the params).
        details: also record ``epochs_run`` (from the history) and ``seconds`` per candidate.
        label: with a label, one progress line per candidate is logged (INFO), e.g.
            "mlp candidate 3/12: {...}".

    Returns:
        :class:`SearchResult`. A candidate wins only when it is lower than the best so far by
        more than :data:`shared.evaluation.metrics.TIE_EUR` (ties keep the earlier one); a
        diverged candidate (infinite or NaN validation MAE) never wins;
        :class:`TrainingDiverged` when every candidate diverged. The test rows are never seen.
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

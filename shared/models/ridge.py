"""Closed-form ridge regression in numpy, for the places that need its weights directly: the
transfer model's linear head (initialised, then fine-tuned in Keras) and the interval width
model (:mod:`shared.evaluation.intervals`)."""

from __future__ import annotations

import numpy as np


def ridge_path(X: np.ndarray, y: np.ndarray, alphas) -> tuple[np.ndarray, float]:
    """Closed-form ridge regression for several penalties at once (one SVD).

    Args:
        X: (n, d) float, columns standardised on these (training) rows, so mean zero.
        y: (n,) targets (log price).
        alphas: penalties on ``||w||^2`` added to the *summed* squared error.

    Returns:
        (coefs, intercept): coefs (len(alphas), d), intercept = mean(y) (unpenalised).
        With Keras's mean-squared-error loss the same model is ``l2 = alpha / n``.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    intercept = float(y.mean())
    u, s, vt = np.linalg.svd(X - X.mean(axis=0), full_matrices=False)
    uty = u.T @ (y - intercept)
    coefs = np.stack([vt.T @ (s / (s ** 2 + alpha) * uty) for alpha in alphas])
    return coefs, intercept

"""The project's one ridge solver: closed-form, in numpy, for places that need its weights directly
(the transfer model's linear head, the prediction intervals' difficulty model)."""

from __future__ import annotations

import numpy as np


def ridge_path(X: np.ndarray, y: np.ndarray, alphas) -> tuple[np.ndarray, float]:
    """Closed-form ridge regression for several penalties at once (one SVD).

    ``X``: (n, d), standardised on these rows; ``y``: (n,); ``alphas``: penalties on ``||w||^2``
    added to the *summed* squared error (Keras' MSE equivalent: ``l2 = alpha / n``). Returns
    (coefs (len(alphas), d), intercept = mean(y), unpenalised).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    intercept = float(y.mean())
    u, s, vt = np.linalg.svd(X - X.mean(axis=0), full_matrices=False)
    uty = u.T @ (y - intercept)
    coefs = np.stack([vt.T @ (s / (s ** 2 + alpha) * uty) for alpha in alphas])
    return coefs, intercept

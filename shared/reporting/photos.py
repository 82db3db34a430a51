"""Listing photos, saved locally only: the best and worst listings of a photo model as a
captioned grid (:func:`extremes_report`).

Listing photos are never published: no function here shows a figure inline, and
:func:`save_local_figure` refuses the published ``docs/`` tree. The reports print the grid's
file name only. (Every plot a report shows is drawn by :mod:`shared.reporting.figures`.)
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from shared import environment
from shared.evaluation.diagnostics import extremes, same_length
from shared.io import atomic_path


def _grid(n: int, ncols: int):
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3 * ncols, 3.3 * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, list(axes.flat)


def photo_grid(paths, captions, ncols: int = 4, image_size: int = 224):
    """Photos (decoded as the models see them, ``image_size`` square) captioned; returns the
    Figure. Listing photos are never committed: save it with :func:`save_local_figure` only."""
    import tensorflow as tf

    from shared.data.images import decode_photo

    paths, captions = [str(p) for p in paths], [str(c) for c in captions]
    same_length(paths=paths, captions=captions)
    fig, axes = _grid(len(paths), ncols)
    for ax, path, caption in zip(axes, paths, captions, strict=False):
        ax.imshow(decode_photo(tf.constant(path), image_size).numpy())
        ax.set_title(caption, fontsize=8)
    fig.tight_layout()
    return fig


def save_local_figure(fig, directory, name: str, dpi: int = 100) -> Path:
    """Write ``fig`` as ``<directory>/<name>.png`` atomically and return the path; the published
    ``docs/`` tree is refused (local figures only: listing photos)."""
    directory = Path(directory).resolve()
    if directory == environment.DOCS_DIR.resolve() or environment.DOCS_DIR.resolve() in directory.parents:
        raise ValueError(f"{directory} is inside the published docs/ tree: local figures only")
    target = directory / (name if name.endswith(".png") else f"{name}.png")
    with atomic_path(target, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return target


def extremes_report(ids, paths, y_eur, pred_eur, directory, name: str,
                    n: int = 4) -> tuple[pd.DataFrame, Path]:
    """A model's best and worst listings (``ids``, ``paths``, ``y_eur``, ``pred_eur``: (m,)):
    :func:`extremes` as one table (index: kind, rank; rounded to 0.1) and the path of their
    photo grid, captioned true -> predicted EUR and saved to ``directory`` only."""
    tables = extremes(ids, y_eur, pred_eur, n)
    by_id = dict(zip(np.asarray(ids).reshape(-1), paths, strict=True))
    rows = [(by_id[row[0]], f"{kind}: {row[1]:.0f} -> {row[2]:.0f} EUR")
            for kind, table in tables.items() for row in table.itertuples(index=False)]
    fig = photo_grid([r[0] for r in rows], [r[1] for r in rows], ncols=4)
    try:
        grid = save_local_figure(fig, directory, name)
    finally:
        plt.close(fig)
    return pd.concat(tables, names=["kind", ""]).round(1), grid

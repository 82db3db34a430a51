"""What the missing columns cost: ``hgb`` with every column vs with the 48 columns of the 10k set.

The 10,351-listing set has 12x the rows of the 814-listing one but only 48 of its 89 columns (no
free text, no amenities, no review dates). On a dataset that has all the columns, this fits
deliverable 1's gradient boosting (:func:`deliverable1.baselines.fit_hgb`, its validation grid)
twice on the *same* split: once on the features of every column, once on the features the 48
columns allow (:data:`shared.schema.MADRID_10K_COLUMNS`), each preprocessor fitted on the
training rows only. The difference is what the larger set gives up in columns.

    from deliverable1.column_cost import column_cost
    table = column_cost(exp)          # exp: the report's shared.experiment.Experiment

Nothing is saved and ``exp.results`` is not touched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from deliverable1 import baselines
from shared import features as feats
from shared import schema
from shared.evaluation import regression_metrics
from shared.split import PART_NAMES as PARTS


@dataclass
class ColumnsView:
    """What :func:`deliverable1.baselines.fit_hgb` reads from an experiment, with the tabular
    features rebuilt from a subset of the raw columns (same rows, same split, same targets)."""

    base: object
    columns: tuple[str, ...]
    preprocessor: object = None
    tabular: dict = field(default_factory=dict)

    def __post_init__(self):
        frames = {p: self.base.parts[p].frame for p in PARTS}
        keep = {p: [c for c in frame.columns if c in self.columns
                    or c not in schema.OPENDATASOFT_COLUMNS] for p, frame in frames.items()}
        self.preprocessor = feats.make_preprocessor().fit(frames["train"][keep["train"]])
        self.tabular = {p: np.asarray(self.preprocessor.transform(frames[p][keep[p]]),
                                      dtype=np.float32) for p in PARTS}

    def __getattr__(self, name):  # smoke, seed, y_log, y_eur, parts ... of the experiment
        if name in ("base", "columns"):
            raise AttributeError(name)
        return getattr(self.base, name)


def column_cost(exp, columns=schema.MADRID_10K_COLUMNS, grid=None) -> pd.DataFrame:
    """``hgb`` on every column of ``exp``'s dataset vs on ``columns`` only, same split.

    Args:
        exp: a prepared :class:`shared.experiment.Experiment` (its tabular matrices and split).
        columns: the raw OpenDataSoft columns of the reduced variant.
        grid: the hgb validation grid (default: deliverable 1's, :func:`baselines.fit_hgb`).

    Returns:
        one row per variant, index ``"all N columns"`` / ``"the K columns of the 10k set"``,
        columns ``raw_columns`` (OpenDataSoft columns present), ``n_features`` (width of the
        tabular matrix), ``val_mae`` and ``test_mae`` (EUR), ``val_r2_log`` and ``test_r2_log``.
    """
    present = [c for c in exp.dataset.frame.columns if c in schema.OPENDATASOFT_COLUMNS]
    reduced = [c for c in present if c in set(columns)]
    rows = {}
    for label, view, n_raw in (
            (f"all {len(present)} columns", exp, len(present)),
            (f"the {len(reduced)} columns of the 10k set", ColumnsView(exp, tuple(reduced)),
             len(reduced))):
        _, predictions, _ = baselines.fit_hgb(view, grid=grid)
        row = {"raw_columns": n_raw, "n_features": int(view.tabular["train"].shape[1])}
        for part in ("val", "test"):
            metrics = regression_metrics(exp.y_eur(part), predictions[part], bootstrap=False)
            row[f"{part}_mae"] = metrics["mae"]
            row[f"{part}_r2_log"] = metrics["r2_log"]
        rows[label] = row
    return pd.DataFrame.from_dict(rows, orient="index")

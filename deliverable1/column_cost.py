"""What the missing columns cost: ``hgb`` with every column vs with the 48 columns of the 10k set.

The 10,351-listing set has 12x the rows of the 814-listing one but only 48 of its 89 columns (no
free text, no amenities, no review dates). On a dataset that has all the columns, this fits
deliverable 1's gradient boosting (:func:`shared.models.families.baselines.train_hgb`, its validation grid)
twice on the *same* split: once on the features of every column, once on the features the 48
columns allow (:data:`shared.data.schema.MADRID_10K_COLUMNS`), each preprocessor fitted on the
training rows only. The difference is what the larger set gives up in columns.

    from deliverable1.column_cost import column_cost
    table = column_cost(data, cfg)    # the run's shared.features.model_data.ModelData and RunConfig

Nothing is saved and no run's results are touched.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import numpy as np
import pandas as pd

from shared.models.families import baselines
from shared.features import tabular as feats
from shared.data import schema
from shared.evaluation.metrics import regression_metrics
from shared.data.split import PART_NAMES as PARTS


def with_columns(data, columns: tuple[str, ...]):
    """``data`` with its tabular features rebuilt from a subset of the raw columns (same rows,
    same split, same targets), the preprocessor fitted on the training rows only."""
    frames = {p: data.parts[p].frame for p in PARTS}
    keep = {p: [c for c in frame.columns if c in columns or c not in schema.OPENDATASOFT_COLUMNS]
            for p, frame in frames.items()}
    preprocessor = feats.make_preprocessor().fit(frames["train"][keep["train"]])
    tabular = {p: np.asarray(preprocessor.transform(frames[p][keep[p]]), dtype=np.float32)
               for p in PARTS}
    return dataclasses.replace(data, preprocessor=preprocessor, tabular=MappingProxyType(tabular))


def column_cost(data, cfg, columns=schema.MADRID_10K_COLUMNS, grid=None) -> pd.DataFrame:
    """``hgb`` on every column of ``data``'s dataset vs on ``columns`` only, same split.

    Args:
        data, cfg: a prepared :class:`shared.features.model_data.ModelData` and the run's configuration.
        columns: the raw OpenDataSoft columns of the reduced variant.
        grid: the hgb validation grid (default: deliverable 1's, :func:`baselines.train_hgb`).

    Returns:
        one row per variant, index ``"all N columns"`` / ``"the K columns of the 10k set"``,
        columns ``raw_columns`` (OpenDataSoft columns present), ``n_features`` (width of the
        tabular matrix), ``val_mae`` and ``test_mae`` (EUR), ``val_r2_log`` and ``test_r2_log``.
    """
    present = [c for c in data.dataset.frame.columns if c in schema.OPENDATASOFT_COLUMNS]
    reduced = [c for c in present if c in set(columns)]
    rows = {}
    for label, view, n_raw in (
            (f"all {len(present)} columns", data, len(present)),
            (f"the {len(reduced)} columns of the 10k set", with_columns(data, tuple(reduced)),
             len(reduced))):
        trained = baselines.train_hgb(view, cfg, grid=grid)
        row = {"raw_columns": n_raw, "n_features": int(view.tabular["train"].shape[1])}
        for part in ("val", "test"):
            metrics = regression_metrics(data.y_eur(part), trained.predict(part), seed=None)
            row[f"{part}_mae"] = metrics["mae"]
            row[f"{part}_r2_log"] = metrics["r2_log"]
        rows[label] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def cost_sentence(cost: dict) -> str:
    """What the column-cost table (``{"listings", "split", "rows"}``) says, in one sentence whose
    wording follows the numbers: which variant is better on validation and on test, and whether
    they agree."""
    (full_name, full), (few_name, few) = list(cost["rows"].items())[:2]
    better = {part: (full_name if full[f"{part}_mae"] < few[f"{part}_mae"] else few_name)
              for part in ("val", "test")}
    gap = {part: few[f"{part}_mae"] - full[f"{part}_mae"] for part in ("val", "test")}
    agree = better["val"] == better["test"]
    return (f"On {cost['listings']} listings, validation prefers {better['val']} "
            f"({gap['val']:+.2f} EUR for dropping the columns) and test prefers {better['test']} "
            f"({gap['test']:+.2f} EUR). "
            + ("They agree." if agree else
               f"They disagree: with {cost['split']['val']} validation and {cost['split']['test']} "
               "test listings the difference is within the noise, so the missing columns cost "
               "little that this sample can measure."))

"""deliverable1.column_cost: hgb on every column vs on the 48 columns of the 10k set."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from shared.models.families import baselines
from deliverable1.column_cost import column_cost
from shared.data import schema
from shared.evaluation.metrics import regression_metrics
from shared.run.start import prepare


@pytest.fixture
def experiments(small_dir, tmp_path, isolated_cache):
    """(experiment on the 89-column fixture, experiment on its 48-column copy)."""
    copy = tmp_path / "copy-48"
    shutil.copytree(small_dir / "images", copy / "images")
    table = pd.read_csv(small_dir / "listings.csv", sep=";", dtype=str)
    table[list(schema.MADRID_10K_COLUMNS)].to_csv(copy / "listings.csv", sep=";", index=False)
    return (prepare(small_dir, tmp_path / "models-all", smoke=True),
            prepare(copy, tmp_path / "models-48", smoke=True))


def _metrics(exp, predictions):
    return {f"{part}_{name}": regression_metrics(exp.data.y_eur(part), predictions[part],
                                                 seed=None)[name]
            for part in ("val", "test") for name in ("mae", "r2_log")}


def test_column_cost_compares_hgb_on_all_columns_with_hgb_on_the_48(experiments):
    full, reduced = experiments
    assert full.data.split.fingerprint == reduced.data.split.fingerprint  # the same split

    table = column_cost(full.data, full.cfg)

    assert list(table.index) == ["all 89 columns", "the 48 columns of the 10k set"]
    assert list(table.columns) == ["raw_columns", "n_features", "val_mae", "val_r2_log",
                                   "test_mae", "test_r2_log"]
    assert table["raw_columns"].tolist() == [89, 48]
    assert table["n_features"].tolist() == [full.data.tabular["train"].shape[1],
                                            reduced.data.tabular["train"].shape[1]]
    assert table.loc["all 89 columns", "n_features"] > table.iloc[1]["n_features"]
    # each row is the hgb a run on that dataset would train: all columns = deliverable 1's hgb,
    # 48 columns = hgb trained on a real 48-column directory
    for row, exp in ((table.iloc[0], full), (table.iloc[1], reduced)):
        trained = baselines.train_hgb(exp.data, exp.cfg)
        predictions = {p: trained.predict(p) for p in ("val", "test")}
        for key, value in _metrics(exp, predictions).items():
            assert row[key] == pytest.approx(value, rel=1e-9), key
    assert np.isfinite(table.to_numpy(dtype=float)).all()
    assert full.results == {}  # nothing recorded


def test_column_cost_on_a_dataset_that_already_lacks_columns(experiments):
    _, reduced = experiments
    table = column_cost(reduced.data, reduced.cfg)
    assert table["raw_columns"].tolist() == [48, 48]
    assert table.iloc[0]["test_mae"] == pytest.approx(table.iloc[1]["test_mae"], rel=1e-12)

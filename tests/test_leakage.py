"""Leakage tests: fitted statistics come from training rows only; prices never reach the inputs.

Each test here fails if the corresponding rule is broken (statistics fitted on all rows, a
price-derived column used as a feature, the experiment fitting its preprocessor on every row).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fixtures import listing_row, synthetic_rows
from shared.features import tabular as feats
from shared.run.start import prepare
from shared.features.tabular import (CATEGORICAL, FORBIDDEN_INPUTS, NUMERIC, engineer_features,
                             make_preprocessor)
from shared.data.schema import PRICE_DERIVED_COLUMNS
from shared.data.split import make_split


@pytest.fixture(scope="module")
def parts(small_dataset):
    """(train frame, test frame) of the 40-listing fixture under the shared split."""
    split = make_split(small_dataset, 42)
    return small_dataset.subset(split.train).frame, small_dataset.subset(split.test).frame


def _numeric_step(pipeline, step: str):
    return pipeline.named_steps["columns"].named_transformers_["numeric"].named_steps[step]


def _onehot(pipeline):
    return pipeline.named_steps["columns"].named_transformers_["categorical"].named_steps["onehot"]


def test_scaler_statistics_are_those_of_the_training_rows(parts, small_dataset):
    train, _ = parts
    pipeline = make_preprocessor().fit(train)
    scaler = _numeric_step(pipeline, "scale")

    engineered = engineer_features(train)[NUMERIC].to_numpy(dtype=np.float64)
    mean, std = np.nanmean(engineered, axis=0), np.nanstd(engineered, axis=0)
    np.testing.assert_allclose(scaler.mean_, mean, rtol=1e-10, atol=1e-10)
    constant = std <= 1e-9 * np.maximum(1.0, np.abs(mean))  # sklearn leaves those unscaled
    np.testing.assert_allclose(scaler.scale_, np.where(constant, 1.0, std), rtol=1e-10)

    everything = engineer_features(small_dataset.frame)[NUMERIC].to_numpy(dtype=np.float64)
    assert not np.allclose(scaler.mean_, np.nanmean(everything, axis=0)), \
        "fixture too uniform: train and full-data means coincide, the test proves nothing"


def test_knn_imputer_neighbours_are_training_rows_only(parts):
    train, test = parts
    pipeline = make_preprocessor().fit(train)
    imputer = _numeric_step(pipeline, "impute")
    assert imputer._fit_X.shape[0] == len(train)

    # a test row is imputed from training rows only: alone or in a batch, the same output
    batch = pipeline.transform(test)
    one_by_one = np.vstack([pipeline.transform(test.iloc[[i]]) for i in range(len(test))])
    np.testing.assert_array_equal(batch, one_by_one)


def test_onehot_levels_come_only_from_training_rows(parts):
    train, test = parts
    test = test.copy()
    test.loc[test.index[0], "Room Type"] = "Hotel room"        # only in test
    test.loc[test.index[1], "Neighbourhood Cleansed"] = "Atocha"  # only in test
    for min_frequency in (1, 5):
        pipeline = make_preprocessor(min_frequency=min_frequency).fit(train)
        encoder = _onehot(pipeline)
        engineered = engineer_features(train)
        for column, levels in zip(CATEGORICAL, encoder.categories_, strict=True):
            seen = set(engineered[column].fillna("missing"))
            assert set(levels) == seen, column
        names = list(pipeline.get_feature_names_out())
        assert not any("Hotel room" in n or "Atocha" in n for n in names)

        matrix = pipeline.transform(test)
        room = [i for i, n in enumerate(names) if n.startswith("categorical__Room Type_")]
        if min_frequency == 1:  # no infrequent bucket: an unseen level is all zeros
            assert matrix[0, room].sum() == 0
        assert np.isfinite(matrix).all()


def _base_name(name: str) -> str:
    base = name.split("__", 1)[-1]
    return base.removeprefix("missingindicator_").removeprefix("log1p_")


def test_no_price_derived_or_identifier_column_reaches_the_model(parts):
    train, _ = parts
    pipeline = make_preprocessor().fit(train)
    names = [str(n) for n in pipeline.get_feature_names_out()]

    assert not set(FORBIDDEN_INPUTS) & set(feats.ENGINEERED_COLUMNS)
    assert set(PRICE_DERIVED_COLUMNS) <= set(FORBIDDEN_INPUTS)
    for name in names:
        base = _base_name(name)
        for forbidden in FORBIDDEN_INPUTS:
            assert base != forbidden and not base.startswith(f"{forbidden}_"), name


def _perturb(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Same listings, other prices (and other identifiers): everything the model must ignore."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    n = len(out)
    out["Price"] = [f"${v:,.2f}" for v in rng.uniform(10, 5000, n)]
    out["Weekly Price"] = [f"{v:.1f}" for v in rng.uniform(100, 9000, n)]
    out["Monthly Price"] = np.where(rng.random(n) < 0.5, None, "99999.0")
    out["price"] = rng.uniform(1, 10000, n)
    out["ID"] = rng.permutation(np.arange(10**6, 10**6 + n))
    out["Listing Url"] = "https://example.invalid/other"
    out["Host ID"] = "424242"
    out["Scrape ID"] = "1"
    return out


def test_changing_prices_changes_neither_the_fit_nor_the_transform(parts):
    train, test = parts
    pipeline = make_preprocessor().fit(train)
    reference = pipeline.transform(test)

    np.testing.assert_array_equal(pipeline.transform(_perturb(test, 1)), reference)
    refitted = make_preprocessor().fit(_perturb(train, 2))
    np.testing.assert_array_equal(refitted.transform(test), reference)
    np.testing.assert_array_equal(refitted.transform(_perturb(test, 3)), reference)


def test_a_feature_derived_from_price_would_be_caught(parts, monkeypatch):
    """Guard for the guard: the behavioural test above fails if Price leaks in."""
    train, test = parts
    leaky_numeric = [*NUMERIC[:-1], "Price"]

    class LeakyEngineer(feats.FeatureEngineer):
        def transform(self, frame):
            out = super().transform(frame)
            out["Price"] = feats._numbers(frame["Price"])
            return out

        def get_feature_names_out(self, input_features=None):
            return np.asarray([*self.features_, "Price"], dtype=object)

    monkeypatch.setattr(feats, "NUMERIC", leaky_numeric)
    monkeypatch.setattr(feats, "FeatureEngineer", LeakyEngineer)
    pipeline = feats.make_preprocessor().fit(train)
    assert "Price" in {_base_name(str(n)) for n in pipeline.get_feature_names_out()}
    assert not np.array_equal(pipeline.transform(_perturb(test, 1)), pipeline.transform(test))


def test_prepare_fits_the_preprocessor_on_training_rows_only(small_dir, tmp_path, monkeypatch):
    fitted_on = []
    original = feats.make_preprocessor

    def spying_preprocessor(*args, **kwargs):
        pipeline = original(*args, **kwargs)
        fit = pipeline.fit

        def recording_fit(frame, *fit_args, **fit_kwargs):
            fitted_on.append(frame["ID"].tolist())
            return fit(frame, *fit_args, **fit_kwargs)

        pipeline.fit = recording_fit
        return pipeline

    monkeypatch.setenv("AIRBNB_DL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(feats, "make_preprocessor", spying_preprocessor)
    exp = prepare(small_dir, tmp_path / "models", smoke=True)

    assert len(fitted_on) == 1 and sorted(fitted_on[0]) == exp.data.split.train.tolist()
    assert (tmp_path / "models" / "split.json").is_file()

    # the experiment's matrices are those of a pipeline fitted on the training rows alone
    on_train = original().fit(exp.data.parts["train"].frame)
    on_all = original().fit(exp.data.dataset.frame)
    for part in ("train", "val", "test"):
        expected = on_train.transform(exp.data.parts[part].frame)
        np.testing.assert_allclose(exp.data.tabular[part], expected, rtol=1e-6, atol=1e-6)
    assert exp.data.tabular["test"].shape[1] != on_all.transform(exp.data.parts["test"].frame).shape[1] or \
        not np.allclose(exp.data.tabular["test"], on_all.transform(exp.data.parts["test"].frame), atol=1e-6)

    # the parts follow the split and the targets are the log prices of each part
    for part in ("train", "val", "test"):
        assert exp.data.parts[part].ids.tolist() == getattr(exp.data.split, part).tolist()
        np.testing.assert_allclose(exp.data.y_log(part), np.log(exp.data.parts[part].prices), rtol=1e-6)


def test_engineering_a_row_does_not_depend_on_other_rows():
    rows = synthetic_rows(10, seed=8)
    alone = engineer_features(pd.DataFrame([rows[0]]))
    with_others = engineer_features(pd.DataFrame(rows + [listing_row(5, Price="$9,999.00")]))
    pd.testing.assert_frame_equal(alone, with_others.iloc[[0]])

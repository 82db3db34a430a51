"""Report diagnostics (:mod:`shared.evaluation.diagnostics`) on small synthetic data."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from shared.evaluation import diagnostics as diag  # noqa: E402
from shared.reporting import figures, photos, tables  # noqa: E402
from shared.features import tabular as feats  # noqa: E402


def accommodates_model(dataset) -> np.ndarray:
    """A 'model' that prices by Accommodates only (EUR), ignoring every other column."""
    return 15.0 + 12.0 * feats._numbers(dataset.frame["Accommodates"]).to_numpy()


@pytest.fixture(scope="module")
def ridge_bundle(small_dataset):
    from sklearn.linear_model import Ridge

    from shared.models.bundle import ModelBundle

    preprocessor = feats.make_preprocessor().fit(small_dataset.frame)
    estimator = Ridge().fit(preprocessor.transform(small_dataset.frame),
                            feats.log_target(small_dataset.prices))
    return ModelBundle("ridge", ("tabular",), estimator, preprocessor=preprocessor)


@pytest.fixture
def close_figures():
    yield
    plt.close("all")


# --------------------------------------------------------------------------- permutation importance

def test_importance_ranks_used_column_above_ignored(small_dataset):
    table = diag.permutation_importance(accommodates_model, small_dataset, small_dataset.prices,
                                        columns=["Beds", "Accommodates", "Room Type"], n_repeats=3)
    assert table.index[0] == "Accommodates"
    assert table.loc["Accommodates", "mae_increase_eur"] > 5.0
    assert table.loc["Beds", "mae_increase_eur"] == pytest.approx(0.0, abs=1e-9)
    assert table.loc["Room Type", "sd_eur"] == pytest.approx(0.0, abs=1e-9)
    assert table.attrs["baseline_mae_eur"] == pytest.approx(
        np.mean(np.abs(accommodates_model(small_dataset) - small_dataset.prices)))
    assert list(table.columns) == ["mae_increase_eur", "sd_eur"]


def test_importance_is_seeded(small_dataset):
    def run(seed, columns=("Accommodates", "Bedrooms")):
        return diag.permutation_importance(accommodates_model, small_dataset, None,
                                           columns=list(columns), n_repeats=2, seed=seed)

    first = run(0)
    pd.testing.assert_frame_equal(first, run(0))
    assert not first.equals(run(1))
    # a column's shuffles depend on the seed and its name only, not on the other columns asked
    assert run(0, ["Accommodates"]).loc["Accommodates"].equals(first.loc["Accommodates"])


def test_permuted_dataset_leaves_original_unchanged(small_dataset):
    before = small_dataset.frame.copy()
    permutation = np.roll(np.arange(len(before)), 1)
    permuted = diag.permuted_dataset(small_dataset, "Accommodates", permutation)
    pd.testing.assert_frame_equal(small_dataset.frame, before)
    assert permuted.frame["Accommodates"].tolist() == before["Accommodates"].to_numpy()[
        permutation].tolist()
    assert permuted.ids.tolist() == small_dataset.ids.tolist()
    assert permuted.image_paths.tolist() == small_dataset.image_paths.tolist()
    pd.testing.assert_frame_equal(permuted.frame.drop(columns="Accommodates"),
                                  before.drop(columns="Accommodates"))
    with pytest.raises(ValueError):
        diag.permuted_dataset(small_dataset, "ID", permutation)
    with pytest.raises(ValueError):
        diag.permuted_dataset(small_dataset, "Accommodates", np.zeros(len(before), dtype=int))


def test_importance_of_a_bundle_defaults_to_its_input_columns(small_dataset, ridge_bundle,
                                                              close_figures):
    table = diag.permutation_importance(ridge_bundle.predict_eur, small_dataset, n_repeats=1)
    assert sorted(table.index) == sorted(feats.input_columns(ridge_bundle.preprocessor))
    assert table["mae_increase_eur"].is_monotonic_decreasing
    assert table["sd_eur"].eq(0).all()
    fig = figures.plot_importance(table, top=5, title="ridge")
    assert fig.axes[0].get_xlabel() == "MAE increase (EUR)"
    assert len(fig.axes[0].patches) == 5


# --------------------------------------------------------------------------- maps and groups

def test_price_maps(small_dataset, close_figures):
    frame = small_dataset.frame.copy()
    frame.loc[0, "Latitude"] = frame.loc[0, "Latitude"].replace(".", ",")  # decimal comma
    lon, lat = diag.coordinates(frame)
    assert lat[0] == pytest.approx(float(small_dataset.frame.loc[0, "Latitude"]))
    assert np.all((lon > -3.8) & (lon < -3.6))
    y = small_dataset.prices
    fig = figures.price_map(frame, y, "prices", "viridis", "price (EUR)")
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("longitude (°)", "latitude (°)")
    assert fig.axes[1].get_ylabel() == "price (EUR)"  # the colour bar
    residual = np.linspace(-100, 50, len(y))
    fig = figures.price_and_residual_maps(frame, y, y + residual)
    points = fig.axes[1].collections[0]
    low, high = points.get_clim()
    assert low == -high == -figures.RESIDUAL_LIMIT_EUR   # one scale for every residual map
    assert fig.axes[3].get_ylabel() == "predicted - true (EUR)"
    assert fig.axes[1].get_title().endswith(f"±{figures.RESIDUAL_LIMIT_EUR:.0f} EUR")


def test_errors_by_group_pools_small_groups_and_falls_back():
    frame = pd.DataFrame({"Neighbourhood Cleansed": ["A"] * 3 + ["B"] * 2 + ["C", None]})
    y = np.array([10, 20, 30, 100, 100, 50, 60], dtype=float)
    pred = np.array([12, 18, 36, 80, 90, 50, 66], dtype=float)
    table = diag.errors_by_group(frame, y, pred, min_count=3)
    assert table.attrs["column"] == "Neighbourhood Cleansed"
    assert table.attrs["requested"] == "Neighbourhood Group Cleansed"
    assert list(table.index) == ["other", "A"]  # B (2 rows), C, missing pooled
    assert table.loc["A", "n"] == 3 and table.loc["other", "n"] == 4
    assert table.loc["A", "mae_eur"] == pytest.approx((2 + 2 + 6) / 3)
    assert table.loc["A", "mean_error_eur"] == pytest.approx((2 - 2 + 6) / 3)
    assert table.loc["other", "mae_eur"] == pytest.approx((20 + 10 + 0 + 6) / 4)
    assert table.loc["other", "median_price_eur"] == pytest.approx(80.0)  # 50, 60, 100, 100
    kept = diag.errors_by_group(frame, y, pred, column="Neighbourhood Cleansed", min_count=1)
    assert set(kept.index) == {"A", "B", "C", "missing"}
    with pytest.raises(KeyError):
        diag.errors_by_group(pd.DataFrame({"x": range(7)}), y, pred)


def test_group_differences_against_a_reference_keep_groups_with_enough_listings(close_figures):
    frame = pd.DataFrame({"Neighbourhood Cleansed": ["A"] * 40 + ["B"] * 30 + ["C"] * 5})
    y = np.full(75, 100.0)
    ref = y + 10.0                                     # the reference misses by 10 everywhere
    pred = np.where(frame["Neighbourhood Cleansed"] == "A", y + 4.0, y + 10.0)
    table = tables.group_differences(frame, y, pred, ref, "mlp", "hgb", min_count=30, seed=0)
    assert list(table.index) == ["A", "B"]            # C: 5 listings, fewer than 30
    assert table.loc["A", "mae_diff"] == pytest.approx(-6.0)
    assert table.loc["A", "ci_low"] == pytest.approx(-6.0) == table.loc["A", "ci_high"]
    assert table.loc["B", "n"] == 30 and table.loc["B", "mae_diff"] == pytest.approx(0.0)
    assert table.attrs == {"model": "mlp", "reference": "hgb", "column": "Neighbourhood Cleansed",
                           "min_count": 30}
    fig = figures.plot_group_differences(table)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["A (n=40)", "B (n=30)"]
    assert "at least 30 test listings" in ax.get_title()
    empty = tables.group_differences(frame, y, pred, ref, "mlp", "hgb", min_count=100, seed=0)
    assert empty.empty and figures.plot_group_differences(empty).axes[0].texts


# --------------------------------------------------------------------------- extremes, photos

def test_extremes_picks_the_right_rows():
    ids = [1, 2, 3, 4, 5, 6]
    y = np.array([100, 100, 50, 40, 200, 80], dtype=float)
    pred = np.array([300, 110, 25, 41, 100, 80], dtype=float)
    out = diag.extremes(ids, y, pred, n=2)
    assert out["over-priced"]["ID"].tolist() == [1, 2]
    assert out["under-priced"]["ID"].tolist() == [3, 5]  # log 0.5 vs 0.5: stable order
    assert out["most right"]["ID"].tolist() == [6, 4]
    row = out["over-priced"].iloc[0]
    assert (row["true EUR"], row["predicted EUR"], row["error EUR"]) == (100, 300, 200)
    assert list(out["most right"].columns[:4]) == ["ID", "true EUR", "predicted EUR", "error EUR"]


def test_photo_grid_saved_locally(small_dataset, tmp_path, close_figures):
    paths = small_dataset.image_paths[:3]
    fig = photos.photo_grid(paths, ["a", "b", "c"], ncols=2, image_size=16)
    assert [ax.get_title() for ax in fig.axes[:3]] == ["a", "b", "c"]
    target = photos.save_local_figure(fig, tmp_path / "local", "extremes")
    assert target == (tmp_path / "local" / "extremes.png").resolve()
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in target.parent.iterdir()] == ["extremes.png"]  # no temp file left
    from shared import environment

    with pytest.raises(ValueError):
        photos.save_local_figure(fig, environment.DOCS_DIR / "deliverable1", "photos")


def test_extremes_report_is_one_table_and_a_local_grid(small_dataset, tmp_path, close_figures):
    ids = np.asarray(small_dataset.ids[:6])
    paths = list(small_dataset.image_paths[:6])
    y = np.array([100, 100, 50, 40, 200, 80], dtype=float)
    pred = np.array([300, 110, 25, 41, 100, 80], dtype=float)
    table, grid = photos.extremes_report(ids, paths, y, pred, tmp_path / "local", "m-extremes", n=2)
    assert table.index.names == ["kind", None] or table.index.names == ["kind", ""]
    assert table.loc["over-priced"]["ID"].tolist() == ids[[0, 1]].tolist()
    assert grid == (tmp_path / "local" / "m-extremes.png").resolve() and grid.is_file()
    with pytest.raises(ValueError):
        photos.extremes_report(ids, paths[:5], y, pred, tmp_path / "local", "bad")


# --------------------------------------------------------------------------- occlusion

def test_occlusion_finds_the_top_left_corner(close_figures):
    keras = pytest.importorskip("keras")

    size = 16
    inputs = keras.Input(shape=(size, size, 3))
    x = keras.layers.Cropping2D(((0, size - 4), (0, size - 4)))(inputs)  # top-left 4x4 only
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros")(x)
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (3, size, size, 3)).astype(np.float32)
    maps = diag.occlusion_sensitivity(model, images, patch=4, stride=4, batch_size=7)
    assert maps.shape == (3, 4, 4)
    assert np.all(maps[:, 0, 0] > 1.0)
    rest = maps.reshape(3, -1)[:, 1:]
    assert np.allclose(rest, 0.0, atol=1e-3)
    # a fill equal to the corner's own colour changes nothing
    flat = np.full((1, size, size, 3), 100.0, dtype=np.float32)
    assert np.allclose(diag.occlusion_sensitivity(model, flat, 4, 4, fill=100.0), 0.0, atol=1e-4)
    mean_map = diag.mean_sensitivity_map(maps)
    assert mean_map.shape == (4, 4) and mean_map.mean() == pytest.approx(1.0)
    assert np.unravel_index(np.argmax(mean_map), mean_map.shape) == (0, 0)
    assert diag.mean_sensitivity_map(maps, per_photo=True)[0, 0] == pytest.approx(16.0, rel=1e-3)
    fig = figures.plot_sensitivity_map(mean_map, "corner model")
    ax = fig.axes[0]
    assert "left → right" in ax.get_xlabel() and "top → bottom" in ax.get_ylabel()
    assert ax.get_title() == "corner model"


# --------------------------------------------------------------------------- intervals

def test_coverage_by_band_counts():
    y = np.array([30, 50, 70, 100, 150, 300, 35], dtype=float)
    low = np.array([20, 55, 60, 90, 100, 200, 10], dtype=float)
    high = np.array([40, 70, 90, 110, 140, 400, 30], dtype=float)
    pred = np.array([30, 60, 75, 100, 120, 280, 20], dtype=float)
    table = diag.coverage_by_band(y, low, high, pred, n_boot=50, seed=42)
    assert list(table.index) == ["<40", "40-80", "80-120", "120-200", ">=200"]
    assert table["n"].tolist() == [2, 2, 1, 1, 1]
    assert table["coverage"].tolist() == [0.5, 0.5, 1.0, 0.0, 1.0]
    assert table.loc["<40", "mean_width_eur"] == pytest.approx(20.0)
    assert table.loc["40-80", "mean_width_eur"] == pytest.approx(22.5)
    by_true = diag.coverage_by_band(y, low, high, pred, bands=(0, 100, np.inf), by="true",
                                    n_boot=50, seed=42)
    assert list(by_true.index) == ["<100", ">=100"]
    assert by_true["n"].tolist() == [4, 3]
    assert by_true["coverage"].tolist() == pytest.approx([2 / 4, 2 / 3])
    assert by_true.attrs["by"] == "true"
    empty = diag.coverage_by_band(y[:1], low[:1], high[:1], pred[:1], n_boot=10, seed=42)
    assert empty["n"].tolist() == [1, 0, 0, 0, 0] and np.isnan(empty.loc[">=200", "coverage"])

"""shared.models.fit: ModelBundle save/load round trips, load errors, Keras building blocks."""

from __future__ import annotations

import json

from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from shared.features import tabular as feats
from shared.models.bundle import ModelBundle
from shared.models.files import ModelLoadError
from shared.models.files import write_metadata
from shared.models.search import Fitted, TrainingDiverged, tune_on_validation
from shared.models.layers import build_mlp, linear_head
from shared.models.fit import compile_regressor, fit_regressor
from shared.ridge import ridge_path
from shared.data.split import make_split
from shared.models.saved import load_bundle, save_bundle

keras = pytest.importorskip("keras")


@pytest.fixture(scope="module")
def fitted(small_dataset):
    """(train Dataset, test Dataset, preprocessor fitted on train, X_train, y_train)."""
    split = make_split(small_dataset, 42)
    train, test = small_dataset.subset(split.train), small_dataset.subset(split.test)
    preprocessor = feats.make_preprocessor().fit(train.frame)
    x_train = preprocessor.transform(train.frame)
    return train, test, preprocessor, x_train, feats.log_target(train.prices)


def sklearn_bundle(fitted, name="ridge") -> ModelBundle:
    train, _, preprocessor, x_train, y_train = fitted
    estimator = Ridge(alpha=1.0).fit(x_train, y_train)
    return ModelBundle(name, ("tabular",), estimator, preprocessor=preprocessor,
                       params={"alpha": 1.0}, deliverable="deliverable1")


def test_sklearn_bundle_round_trip_gives_identical_predictions(fitted, tmp_path):
    _, test, *_ = fitted
    bundle = sklearn_bundle(fitted)
    before = bundle.predict_log(test)

    directory = save_bundle(bundle, tmp_path / "models" / "ridge")
    loaded = load_bundle(directory)

    assert sorted(p.name for p in directory.iterdir()) == \
        ["estimator.skops", "metadata.json", "preprocessor.skops"]
    np.testing.assert_array_equal(loaded.predict_log(test), before)
    np.testing.assert_array_equal(loaded.predict_eur(test), np.exp(before))
    assert before.shape == (len(test.frame),) and before.dtype == np.float64
    assert (loaded.name, loaded.inputs, loaded.params, loaded.deliverable) == \
        ("ridge", ("tabular",), {"alpha": 1.0}, "deliverable1")
    meta = json.loads((directory / "metadata.json").read_text())
    assert meta["feature_set_version"] == feats.FEATURE_SET_VERSION
    assert meta["estimator"] == "sklearn" and meta["target"] == "log(price EUR)"
    assert meta["feature_names"] == list(map(str, bundle.preprocessor.get_feature_names_out()))


def test_keras_mlp_bundle_round_trip_gives_identical_predictions(fitted, tmp_path):
    train, test, preprocessor, x_train, y_train = fitted
    keras.utils.set_random_seed(0)
    model = compile_regressor(build_mlp(x_train.shape[1], (8, 4), dropout=0.1, l2=1e-4,
                                        target_mean=float(y_train.mean())), 1e-3)
    history = fit_regressor(model, (x_train, y_train), (x_train[:5], y_train[:5]), epochs=2,
                            batch_size=8)
    assert set(history) >= {"loss", "val_loss", "mae_log", "val_mae_log"}
    assert all(isinstance(v, float) for v in history["loss"]) and len(history["loss"]) == 2

    bundle = ModelBundle("mlp", ("tabular",), model, preprocessor=preprocessor)
    before = bundle.predict_log(test)
    loaded = load_bundle(save_bundle(bundle, tmp_path / "mlp"))

    assert loaded.is_keras and (tmp_path / "mlp" / "model.keras").is_file()
    np.testing.assert_array_equal(loaded.predict_log(test), before)


def test_keras_image_and_tabular_bundle_round_trip(fitted, tmp_path):
    train, test, preprocessor, x_train, y_train = fitted
    keras.utils.set_random_seed(0)
    image = keras.Input((16, 16, 3), name="image")
    tabular = keras.Input((x_train.shape[1],), name="tabular")
    x = keras.layers.Rescaling(1.0 / 255.0)(image)
    x = keras.layers.Conv2D(2, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Concatenate()([x, tabular])
    model = keras.Model({"image": image, "tabular": tabular}, keras.layers.Dense(1)(x))

    bundle = ModelBundle("fusion", ("tabular", "image"), model, preprocessor=preprocessor,
                         image_size=16)
    before = bundle.predict_log(test, batch_size=4)
    loaded = load_bundle(save_bundle(bundle, tmp_path / "fusion"))

    assert loaded.image_size == 16 and loaded.inputs == ("tabular", "image")
    assert before.shape == (len(test.frame),) and np.isfinite(before).all()
    np.testing.assert_array_equal(loaded.predict_log(test, batch_size=4), before)


def test_loading_a_bundle_of_another_feature_set_fails_clearly(fitted, tmp_path):
    directory = save_bundle(sklearn_bundle(fitted), tmp_path / "old")
    meta = json.loads((directory / "metadata.json").read_text())
    meta["feature_set_version"] = "features-v0"
    (directory / "metadata.json").write_text(json.dumps(meta))

    with pytest.raises(ModelLoadError) as info:
        load_bundle(directory)
    message = str(info.value)
    assert str(directory) in message and "features-v0" in message
    assert feats.FEATURE_SET_VERSION in message and "Retrain" in message


def test_loading_a_directory_without_metadata_fails_clearly(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no metadata.json"):
        load_bundle(tmp_path / "empty")
    with pytest.raises(ModelLoadError, match="no metadata.json"):
        load_bundle(tmp_path / "does-not-exist")


def test_loading_another_format_or_inconsistent_feature_names_fails(fitted, tmp_path):
    directory = save_bundle(sklearn_bundle(fitted), tmp_path / "m")
    meta_path = directory / "metadata.json"
    meta = json.loads(meta_path.read_text())

    meta_path.write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(ModelLoadError, match="format 99"):
        load_bundle(directory)

    meta_path.write_text(json.dumps({**meta, "feature_names": meta["feature_names"][:-1]}))
    with pytest.raises(ModelLoadError, match="metadata.json: edited after the model was saved"):
        load_bundle(directory)
    write_metadata(directory, {**meta, "feature_names": meta["feature_names"][:-1]})  # re-sealed
    with pytest.raises(ModelLoadError, match="feature names"):
        load_bundle(directory)


def test_save_replaces_the_directory_as_a_whole(fitted, tmp_path):
    target = tmp_path / "models" / "ridge"
    target.mkdir(parents=True)
    (target / "image_reducer.skops").write_text("stale file of an older model")

    save_bundle(sklearn_bundle(fitted), target)

    assert not (target / "image_reducer.skops").exists()
    assert load_bundle(target).image_reducer is None
    assert sorted(p.name for p in target.parent.iterdir()) == ["ridge"]  # no staging/backup left


def test_build_mlp_shapes_and_output_bias():
    model = build_mlp(6, (5, 3), dropout=0.2, l2=0.0, target_mean=4.2)
    assert model.input_shape == (None, 6) and model.output_shape == (None, 1)
    np.testing.assert_allclose(model.get_layer("log_price").bias.numpy(), [4.2], rtol=1e-6)
    assert model.get_layer("log_price").dtype == "float32"
    assert [layer.name for layer in model.layers if layer.name.endswith("_dense")] == \
        ["hidden1_dense", "hidden2_dense"]


def test_tune_on_validation_keeps_the_lowest_validation_mae():
    y_val = np.array([50.0, 60.0, 70.0])
    grid = [{"offset": 10.0}, {"offset": 1.0}, {"offset": -5.0}]
    built = []

    def build_and_fit(params):
        built.append(params)
        return Fitted(params["offset"])

    result = tune_on_validation(build_and_fit, grid, lambda off, _: y_val + off, y_val)
    best, params, trials = result.model, result.params, result.trials

    assert built == grid and best == 1.0 and params == {"offset": 1.0}
    assert [t["val_mae"] for t in trials] == [10.0, 1.0, 5.0]


def test_tune_on_validation_refuses_a_build_that_returns_a_bare_model():
    with pytest.raises(TypeError, match="build_and_fit must return a Fitted"):
        tune_on_validation(lambda p: 1.0, [{}], lambda m, _: np.zeros(1), np.zeros(1))


def test_tune_on_validation_never_picks_a_diverged_candidate():
    y_val = np.array([50.0, 60.0])
    grid = [{"pred": np.inf}, {"pred": 55.0}, {"pred": np.nan}]
    result = tune_on_validation(lambda p: Fitted(p["pred"]), grid, lambda pred, _: np.full(2, pred),
                                y_val)
    params, trials = result.params, result.trials
    assert params == {"pred": 55.0} and trials[1]["val_mae"] == 5.0
    with pytest.raises(TrainingDiverged, match="no candidate reached a finite validation MAE"):
        tune_on_validation(lambda p: Fitted(p["pred"]), [grid[0], grid[2]],
                           lambda pred, _: np.full(2, pred), y_val)


def test_ridge_path_matches_scikit_learn_and_linear_head_holds_it():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 60))  # more features than rows, as for backbone features
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    y = X[:, :3] @ np.array([0.3, -0.2, 0.1]) + 4.0 + rng.normal(scale=0.05, size=40)
    alphas = (0.5, 10.0, 300.0)
    coefs, intercept = ridge_path(X, y, alphas)
    for alpha, coef in zip(alphas, coefs, strict=True):
        reference = Ridge(alpha=alpha).fit(X, y)
        np.testing.assert_allclose(coef, reference.coef_, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(intercept, reference.intercept_, rtol=1e-9)
    head = linear_head(coefs[1], intercept, l2=10.0 / 40)
    np.testing.assert_allclose(head(X.astype(np.float32)).numpy().reshape(-1),
                               Ridge(alpha=10.0).fit(X, y).predict(X), rtol=1e-5)
    assert head.get_layer("log_price").kernel_regularizer is not None


def test_fit_regressor_on_arrays_is_seeded_and_reproducible(fitted):
    _, _, _, x_train, y_train = fitted

    def run(seed):
        keras.utils.set_random_seed(0)
        model = compile_regressor(build_mlp(x_train.shape[1], (8,), dropout=0.0, l2=0.0,
                                            target_mean=float(y_train.mean())), 1e-2)
        fit_regressor(model, (x_train, y_train), (x_train[:5], y_train[:5]), epochs=3,
                      batch_size=4, seed=seed)
        return model.predict(x_train, verbose=0)

    first = run(1)
    np.testing.assert_array_equal(first, run(1))
    assert not np.array_equal(first, run(2))  # the seed sets the order of the rows


class _ConstantModel:
    """Stands in for a fitted Keras MLP: predicts one log price for every row."""

    def __init__(self, log_price):
        self.log_price = log_price

    def predict(self, x, verbose=0):
        return np.full((len(x), 1), self.log_price)


def test_mlp_search_goes_through_the_guarded_search(monkeypatch, caplog):
    from shared.models.families import mlp
    from shared.run.budgets import budget_for
    from shared.run.config import RunConfig

    cfg = RunConfig(data_dir=Path("."), models_dir=Path("."), budget=budget_for(True), seed=0)

    x_val, y_val = np.zeros((4, 3), np.float32), np.array([40.0, 50.0, 60.0, 50.0])
    outputs = iter([np.nan, np.log(50.0), np.inf])   # candidate 1 diverged, 3 overflowed

    def fake_fit(*args, **kwargs):
        return Fitted(_ConstantModel(next(outputs)), {"loss": [1.0, 0.5], "val_loss": [1.0, 0.6]})

    monkeypatch.setattr(mlp, "fit_mlp", fake_fit)
    with caplog.at_level("INFO", logger="shared.models.search"):
        result = mlp.search_mlp(x_val, np.zeros(4), x_val, y_val, n_configs=3, cfg=cfg, epochs=1,
                                batch_size=8)
    lines = [r.getMessage() for r in caplog.records if "mlp candidate" in r.getMessage()]
    assert result.params["index"] == 1 and result.val_mae == pytest.approx(5.0)
    assert result.history == {"loss": [1.0, 0.5], "val_loss": [1.0, 0.6]}
    assert [t["epochs_run"] for t in result.trials] == [2, 2, 2] and len(lines) == 3
    assert set(result.trials[0]) == {"hidden", "dropout", "l2", "learning_rate", "val_mae",
                                     "epochs_run", "seconds"}

    outputs = iter([np.nan, np.inf])
    with pytest.raises(TrainingDiverged, match="no candidate reached a finite validation MAE"):
        mlp.search_mlp(x_val, np.zeros(4), x_val, y_val, n_configs=2, cfg=cfg, epochs=1,
                       batch_size=8)

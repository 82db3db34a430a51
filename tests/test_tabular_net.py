"""shared.models.families.tabular_net: PLR embeddings and the TabM ensemble on small synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from shared.models.families import tabular_net as tn  # noqa: E402


def synthetic(n=256, seed=0):
    """(X (n, 6) float32: 3 standardised numeric columns, 1 missing flag, a 2-level one-hot;
    the preprocessor's column names; log-price-like target)."""
    rng = np.random.default_rng(seed)
    numeric = rng.normal(size=(n, 3))
    flag = (rng.random(n) < 0.2).astype(float)
    level = rng.integers(0, 2, n)
    X = np.column_stack([numeric, flag, level == 0, level == 1]).astype(np.float32)
    names = ["numeric__a", "numeric__b", "numeric__c", "numeric__missingindicator_b",
             "categorical__room_x", "categorical__room_y"]
    y = (4 + 0.5 * np.sin(2 * numeric[:, 0]) + 0.2 * numeric[:, 1] + 0.3 * level).astype(np.float32)
    return X, names, y


def test_numeric_columns_skip_missing_indicators_and_one_hots():
    _, names, _ = synthetic(8)
    assert tn.numeric_columns(names) == [0, 1, 2]


@pytest.mark.parametrize("arch", tn.ARCHS)
def test_shapes_training_members_inference_mean(arch, tmp_path):
    X, names, y = synthetic(32)
    keras.utils.set_random_seed(0)
    training, inference = tn.build_tabular_net(X.shape[1], tn.numeric_columns(names),
                                               float(y.mean()), arch=arch, k=4, d_embedding=4,
                                               n_frequencies=8, hidden=(16,))
    k = 1 if arch == "plain" else 4
    members = training.predict(X, verbose=0)
    mean = inference.predict(X, verbose=0)
    assert members.shape == (32, k) and mean.shape == (32, 1)
    # the ensemble's prediction is the mean of its members
    np.testing.assert_allclose(mean[:, 0], members.mean(axis=1), rtol=1e-6, atol=1e-6)
    # the heads start at the mean log price; members differ through their adapters
    if k > 1:
        assert np.ptp(members, axis=1).max() > 0
    # every layer of the architecture saves and loads under the default safe_mode
    inference.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", compile=False)
    np.testing.assert_array_equal(loaded.predict(X, verbose=0), mean)


def test_members_loss_broadcasts_target_and_averages_members():
    y_true = np.array([1.0, 2.0], dtype=np.float32)
    y_pred = np.array([[1.0, 3.0], [2.0, 2.0]], dtype=np.float32)
    mse = keras.ops.convert_to_numpy(tn.members_loss("mse")(y_true, y_pred))
    huber = keras.ops.convert_to_numpy(tn.members_loss("huber")(y_true, y_pred))
    np.testing.assert_allclose(mse, [2.0, 0.0])
    d = tn.HUBER_DELTA
    np.testing.assert_allclose(huber, [d * (2 - d / 2) / 2, 0.0], rtol=1e-6)


def test_save_load_round_trip_predicts_identically(tmp_path):
    X, names, y = synthetic(128)
    config = {**tn.DEFAULT, "k": 4, "hidden": (16, 16), "d_embedding": 4, "n_frequencies": 8}
    fitted = tn.fit_tabular_net(X[:96], y[:96], X[96:], y[96:], tn.numeric_columns(names),
                                config, seed=0, epochs=2, batch_size=32)
    before = fitted.model.predict(X, verbose=0)
    fitted.model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras", compile=False)  # safe_mode
    assert loaded.output.shape[1:] == (1,) and before.shape == (len(X), 1)
    np.testing.assert_array_equal(loaded.predict(X, verbose=0), before)


def test_plr_learns_a_periodic_target_better_than_a_plain_mlp():
    """y = sin(8x): hard for an MLP on raw x, easy with a learned Fourier basis."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.5, 1.5, size=(1024, 1)).astype(np.float32)
    y = np.sin(8 * x[:, 0]).astype(np.float32)
    x_test = np.linspace(-1.5, 1.5, 512, dtype=np.float32)[:, None]
    errors = {}
    for embedding in ("plr", None):
        keras.utils.set_random_seed(0)
        training, inference = tn.build_tabular_net(1, [0], 0.0, arch="plain",
                                                   embedding=embedding, d_embedding=8,
                                                   n_frequencies=16, sigma=1.0, hidden=(32, 32),
                                                   dropout=0.0)
        tn.compile_ensemble(training, 3e-3)
        training.fit(x, y, epochs=10, batch_size=64, verbose=0, shuffle=True)
        pred = inference.predict(x_test, verbose=0)[:, 0]
        errors[embedding] = float(np.mean((pred - np.sin(8 * x_test[:, 0])) ** 2))
    # the periodic embedding nearly solves it (seed 0: MSE ~0.001); the plain MLP of similar
    # size does not (~0.4, the variance of the target being 0.5)
    assert errors["plr"] < 0.02, errors
    assert errors[None] > 0.2 and errors["plr"] < 0.1 * errors[None], errors


def test_sample_configs_default_first_distinct_and_seeded():
    configs = tn.sample_configs(5, seed=3)
    assert configs[0] == tn.DEFAULT and len({repr(c) for c in configs}) == 5
    assert configs == tn.sample_configs(5, seed=3)


def test_stopped_by():
    assert tn.stopped_by({"loss": [1.0] * 3}, 5) == "early_stopping"
    assert tn.stopped_by({"loss": [1.0] * 5}, 5) == "epoch_limit"


def test_trainer_contract_on_a_smoke_budget(small_dir, tmp_path):
    """train_tabular_net on the project's preprocessed data: a Trained whose bundle predicts,
    with the chosen configuration and how training stopped in its params."""
    from shared.run.start import prepare

    exp = prepare(small_dir, tmp_path / "models", smoke=True)
    trained = tn.train_tabular_net(exp.data, exp.cfg)
    params = trained.bundle.params
    assert params["stopped_by"] in ("early_stopping", "epoch_limit")
    assert 1 <= params["epochs_run"] <= exp.cfg.budget.tabular_net.epochs
    assert len(params["trials"]) == exp.cfg.budget.tabular_net.configs
    assert params["arch"] in tn.ARCHS and params["embedded_columns"] > 0
    pred = trained.bundle.predict_eur(exp.data.parts["val"])
    assert pred.shape == (len(exp.data.parts["val"].frame),) and np.all(np.isfinite(pred))


def test_smoke_budget_of_tabular_net_stays_tiny():
    smoke, full = tn.FAMILY.sizes.smoke, tn.FAMILY.sizes.full
    assert smoke.configs <= 2 and smoke.epochs <= 5
    assert full.configs >= 1 and full.epochs >= 50

"""transfer_frozen's heads on cached features: the flip inputs, the non-linear head, and a model
folder's flip averaging."""

from __future__ import annotations

import numpy as np
import pytest


def test_flip_inputs_double_the_training_rows_and_average_every_part():
    from shared.models.families.transfer import head_inputs

    rng = np.random.default_rng(0)
    plain = {p: rng.normal(size=(n, 4)) for p, n in (("train", 5), ("val", 3))}
    mirrored = {p: rng.normal(size=v.shape) for p, v in plain.items()}
    y = np.arange(5.0)
    x, y2, parts = head_inputs(plain, None, y)
    assert x is plain["train"] and y2 is y and parts is plain
    x, y2, parts = head_inputs(plain, mirrored, y)
    assert x.shape == (10, 4)
    np.testing.assert_array_equal(x[5:], mirrored["train"])
    np.testing.assert_array_equal(y2, np.concatenate([y, y]))
    np.testing.assert_allclose(parts["val"], (plain["val"] + mirrored["val"]) / 2)


def test_the_mlp_head_learns_what_a_linear_head_cannot_and_splits_as_a_fusion_branch():
    import keras

    from shared.models.families.from_branches import split_at_output
    from shared.models.layers import photo_mlp_head
    from shared.models.fit import compile_regressor, fit_regressor

    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 8)).astype("float32")
    y = np.abs(x[:, 0]) + 0.05 * rng.normal(size=2000)  # |x|: no linear model fits it
    keras.utils.set_random_seed(0)
    model = photo_mlp_head(8, float(y.mean()), hidden=32, input_dropout=0.0, dropout=0.0)
    compile_regressor(model, 1e-2)
    fit_regressor(model, (x[:1500], y[:1500]), (x[1500:], y[1500:]), epochs=60, patience=10,
                  batch_size=64)
    mlp_mse = np.mean((model.predict(x[1500:], verbose=0).ravel() - y[1500:]) ** 2)
    coef, *_ = np.linalg.lstsq(np.c_[x[:1500], np.ones(1500)], y[:1500], rcond=None)
    linear_mse = np.mean((np.c_[x[1500:], np.ones(500)] @ coef - y[1500:]) ** 2)
    assert mlp_mse < 0.3 * linear_mse
    trunk, (kernel, bias) = split_at_output(model, "image_branch")
    assert trunk.output.shape[-1] == 32 and kernel.shape == (32, 1) and bias.shape == (1,)


def test_a_flip_averaging_bundle_averages_the_photo_and_its_mirror(monkeypatch):
    import shared.features.cache as cache
    from shared.models.bundle import ModelBundle

    plain, mirrored = np.full((2, 3), 1.0), np.full((2, 3), 3.0)

    def fake_extract(paths, backbone, image_size, flip=False, **options):
        return (mirrored if flip else plain), {}

    monkeypatch.setattr(cache, "extract_features", fake_extract)

    class Part:
        image_paths = ["a.jpg", "b.jpg"]

    bundle = ModelBundle("transfer_frozen", ("image_features",), None, backbone="b", image_size=8)
    np.testing.assert_array_equal(bundle.image_feature_matrix(Part()), plain)
    bundle.flip_tta = True
    np.testing.assert_array_equal(bundle.image_feature_matrix(Part()), np.full((2, 3), 2.0))


def test_an_unknown_head_is_refused_by_name():
    from shared.models.families import transfer

    class Data:
        def y_log(self, part):
            return np.zeros(4)

    features = {False: {p: np.ones((4, 3)) * i for i, p in enumerate(("train", "val"))}}
    with pytest.raises(ValueError, match="unknown photo head 'tree'"):
        transfer._fit_head(Data(), None, "b", 8, "tree", False, features)

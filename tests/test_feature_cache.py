"""shared.feature_cache: backbone vectors computed once per photo content, keyed by weights."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures import write_photo

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
from shared import backbones, feature_cache  # noqa: E402
from shared.feature_cache import extract_features, feature_cache_dir  # noqa: E402


def mean_colour_model(size: int) -> keras.Model:
    """A stand-in backbone: photo (size, size, 3) -> its mean colour (3,)."""
    inputs = keras.Input((size, size, 3))
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))


def test_cache_folder_names_the_whole_weights_fingerprint(tmp_path, monkeypatch):
    folder = feature_cache_dir("mobilenet_v2", 96, root=tmp_path)
    assert backbones.backbone_fingerprint("mobilenet_v2") in folder.name
    monkeypatch.setattr(feature_cache, "DECODE_VERSION", 999)
    other = feature_cache_dir("mobilenet_v2", 96, root=tmp_path)
    assert other != folder and other.name.endswith("decode999")  # a decoder change misses
    assert feature_cache_dir("mobilenet_v2", 128, root=tmp_path) != folder


def test_same_backbone_name_with_other_weights_misses_the_cache(tmp_path, monkeypatch):
    photos = [write_photo(tmp_path / f"{i}.jpg", "jpeg", colour=(40 * i, 10, 10)) for i in range(3)]
    model = mean_colour_model(8)
    first, stats = extract_features(photos, "mobilenet_v2", 8, cache_root=tmp_path / "f",
                                    progress=False, model=model)
    assert stats["computed"] == 3 and first.shape == (3, 3)
    again, stats = extract_features(photos, "mobilenet_v2", 8, cache_root=tmp_path / "f",
                                    progress=False, model=model)
    assert stats["cached"] == 3 and np.array_equal(again, first)

    monkeypatch.setattr(backbones, "backbone_fingerprint", lambda name: f"{name}-0123456789abcdef")
    _, stats = extract_features(photos, "mobilenet_v2", 8, cache_root=tmp_path / "f",
                                progress=False, model=model)
    assert stats["computed"] == 3  # new weights: nothing is served from the old folder

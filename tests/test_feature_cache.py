"""shared.features.cache: backbone vectors computed once per photo content, keyed by weights."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures import write_photo

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
from shared.features import backbones
from shared.features import cache as feature_cache  # noqa: E402
from shared.features.cache import extract_features, feature_cache_dir  # noqa: E402


def mean_colour_model(size: int) -> keras.Model:
    """A stand-in backbone: photo (size, size, 3) -> its mean colour (3,)."""
    inputs = keras.Input((size, size, 3))
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))


def test_cache_folder_names_the_whole_weights_fingerprint(tmp_path, monkeypatch):
    folder = feature_cache_dir("efficientnet_lite0", 96, root=tmp_path)
    assert backbones.backbone_fingerprint("efficientnet_lite0") in folder.name
    monkeypatch.setattr(feature_cache, "DECODE_VERSION", 999)
    other = feature_cache_dir("efficientnet_lite0", 96, root=tmp_path)
    assert other != folder and other.name.endswith("decode999")  # a decoder change misses
    assert feature_cache_dir("efficientnet_lite0", 128, root=tmp_path) != folder


def test_same_backbone_name_with_other_weights_misses_the_cache(tmp_path, monkeypatch):
    photos = [write_photo(tmp_path / f"{i}.jpg", "jpeg", colour=(40 * i, 10, 10)) for i in range(3)]
    model = mean_colour_model(8)
    first, stats = extract_features(photos, "efficientnet_lite0", 8, cache_root=tmp_path / "f",
                                    progress=False, model=model)
    assert stats["computed"] == 3 and first.shape == (3, 3)
    again, stats = extract_features(photos, "efficientnet_lite0", 8, cache_root=tmp_path / "f",
                                    progress=False, model=model)
    assert stats["cached"] == 3 and np.array_equal(again, first)

    monkeypatch.setattr(feature_cache, "backbone_fingerprint", lambda name: f"{name}-0123456789abcdef")
    _, stats = extract_features(photos, "efficientnet_lite0", 8, cache_root=tmp_path / "f",
                                progress=False, model=model)
    assert stats["computed"] == 3  # new weights: nothing is served from the old folder


def left_half_model(size: int) -> keras.Model:
    """A stand-in backbone that sees only the left half of the photo: its mean colour (3,)."""
    inputs = keras.Input((size, size, 3))
    left = keras.layers.Cropping2D(((0, 0), (0, size // 2)))(inputs)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(left))


def test_flipped_features_are_cached_apart_and_mirror_the_photo(tmp_path):
    from PIL import Image

    image = Image.new("RGB", (16, 16), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 8, 16))  # left half red, right half blue
    photo = tmp_path / "halves.png"
    image.save(photo)
    model = left_half_model(8)
    plain_dir = feature_cache_dir("efficientnet_lite0", 8, root=tmp_path / "f")
    assert feature_cache_dir("efficientnet_lite0", 8, root=tmp_path / "f", flip=False) == plain_dir
    assert plain_dir.name.endswith("-8px-decode" + str(feature_cache.DECODE_VERSION))  # name unchanged
    flip_dir = feature_cache_dir("efficientnet_lite0", 8, root=tmp_path / "f", flip=True)
    assert flip_dir == plain_dir.with_name(plain_dir.name + "-hflip")

    plain, _ = extract_features([photo], "efficientnet_lite0", 8, cache_root=tmp_path / "f",
                                progress=False, model=model)
    flipped, stats = extract_features([photo], "efficientnet_lite0", 8, cache_root=tmp_path / "f",
                                      progress=False, model=model, flip=True)
    assert stats["computed"] == 1 and stats["cache_dir"] == str(flip_dir)  # not served from plain
    assert plain[0].argmax() == 0 and flipped[0].argmax() == 2  # red left half; mirrored: blue
    again, stats = extract_features([photo], "efficientnet_lite0", 8, cache_root=tmp_path / "f",
                                    progress=False, model=model, flip=True)
    assert stats["cached"] == 1 and np.array_equal(again, flipped)

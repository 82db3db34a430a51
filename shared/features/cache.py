"""Backbone feature vectors, computed once per photo and cached on disk.

Keyed by the photo's content (sha256), the backbone's fingerprint (name + weights hash), the
input size and :data:`shared.data.images.DECODE_VERSION`: renamed photos hit, changed ones miss.
Layout: ``<cache>/features/<fingerprint>-<size>px-decode<version>[-hflip]/<sha[:2]>/<sha>.npy``,
each a float32 vector (D,), written atomically; ``-hflip`` holds the mirrored photos' features.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from shared import environment
from shared.data.images import DECODE_VERSION, make_image_dataset
from shared.data.split import PART_NAMES
from shared.features.backbones import backbone_fingerprint, build_backbone
from shared.io import atomic_path, sha256_file


def feature_cache_dir(backbone: str, image_size: int, root: Path | None = None,
                      flip: bool = False) -> Path:
    """Folder of the cached vectors of one backbone at one input size (``flip``: mirrored photos).<<"""
    root = Path(root) if root is not None else environment.cache_dir() / "features"
    suffix = "-hflip" if flip else ""
    return root / f"{backbone_fingerprint(backbone)}-{image_size}px-decode{DECODE_VERSION}{suffix}"


def extract_features(paths, backbone: str, image_size: int = 224, batch_size: int = 32,
                     cache_root: Path | None = None, progress: bool = True,
                     model=None, flip: bool = False) -> tuple[np.ndarray, dict]:
    """Backbone features for ``paths``, shape (n, D) float32, computing only cache misses.

    ``flip``: features of the mirrored photos. Returns (features, stats) with stats
    ``{"cached", "computed", "seconds", "cache_dir"}``.
    """
    start = time.perf_counter()
    folder = feature_cache_dir(backbone, image_size, cache_root, flip=flip)
    keys = [sha256_file(p) for p in paths]
    files = [folder / key[:2] / f"{key}.npy" for key in keys]
    missing = sorted({i for i, f in enumerate(files) if not f.is_file()})
    if missing:
        if model is None:
            model = build_backbone(backbone, image_size=image_size)
        todo = [paths[i] for i in missing]
        data = make_image_dataset(todo, image_size=image_size, batch_size=batch_size)
        desc = f"{backbone} features{' (flipped)' if flip else ''}"
        bar = tqdm(total=len(todo), desc=desc, unit="photo", disable=not progress)
        done = 0
        for batch in data:
            if flip:  # (batch, height, width, 3): mirror the width axis
                batch = batch[:, :, ::-1, :]
            # predict_on_batch runs the compiled graph: ~1.6x eager's speed on 2 cores (its last
            # float bits differ from eager's: every vector of a cache folder comes from this call)
            vectors = np.asarray(model.predict_on_batch(batch), dtype=np.float32)
            for vector in vectors:
                index = missing[done]
                files[index].parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(files[index], suffix=".npy") as tmp, open(tmp, "wb") as handle:
                    np.save(handle, vector)
                done += 1
            bar.update(len(vectors))
        bar.close()
    features = np.stack([np.load(f) for f in files]).astype(np.float32)
    stats = {"cached": len(files) - len(missing), "computed": len(missing),
             "seconds": time.perf_counter() - start, "cache_dir": os.fspath(folder)}
    return features, stats


def part_features(data, backbone: str, image_size: int, flip: bool = False) -> tuple[dict, dict]:
    """:func:`extract_features` of every part of ``data`` (``ModelData``) in one pass:
    ({part: (n, D) float32}, stats)."""
    all_paths = [p for part in PART_NAMES for p in data.paths(part)]
    vectors, stats = extract_features(all_paths, backbone, image_size, flip=flip)
    sizes = np.cumsum([0] + [len(data.paths(p)) for p in PART_NAMES])
    return {p: vectors[sizes[i]:sizes[i + 1]] for i, p in enumerate(PART_NAMES)}, stats


def flip_average(plain: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """Test-time flip averaging: the mean of a photo's and its mirror image's vectors, (n, D)."""
    return (plain + mirrored) / 2


def held_backbone(held: dict | None, name: str, image_size: int):
    """The backbone ``name`` at ``image_size`` px from ``held`` ({(name, px): model}), built on
    first use; None when nothing is held (:func:`extract_features` then builds its own)."""
    if held is None:
        return None
    key = (name, int(image_size))
    if key not in held:
        held[key] = build_backbone(name, image_size=int(image_size))
    return held[key]

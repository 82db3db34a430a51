"""Streaming photo pipeline (tf.data): files on disk -> batches of RGB float32 images.

Nothing holds the whole image set in memory: shuffling permutes *row indices* before any photo
is read, and with ``cache_dir`` each decoded photo is stored once as raw uint8 bytes on disk.
Resizing squashes the photo to a square without cropping (nothing at the edges of a room is
lost) with area averaging: antialiased at half the CPU cost of TensorFlow's antialiased
bilinear kernel. Pixel values stay in [0, 255]: each model normalises inside itself.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import tensorflow as tf

from shared.io import atomic_path

AUTOTUNE = tf.data.AUTOTUNE
DEFAULT_IMAGE_SIZE = 224
#: Bump when :func:`decode_photo` changes its output: caches of decoded photos and of backbone
#: features computed from them are keyed by it.
DECODE_VERSION = 2


def decode_photo(path: tf.Tensor, image_size: int) -> tf.Tensor:
    """Read one photo file -> (image_size, image_size, 3) uint8 RGB (grayscale/PNG handled)."""
    raw = tf.io.read_file(path)
    image = tf.io.decode_image(raw, channels=3, expand_animations=False)
    image = tf.image.resize(image, (image_size, image_size), method="area")
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def augment_photo(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Light, label-preserving augmentation: horizontal flip, brightness, contrast, small zoom.

    ``image``: (H, W, 3) float32 in [0, 255]; ``seed``: shape-(2,) int tensor (stateless ops: the
    same seed gives the same augmentation on every run).
    """
    size = tf.shape(image)[0]
    image = tf.image.stateless_random_flip_left_right(image, seed)
    image = tf.image.stateless_random_brightness(image, 20.0, seed + 1)
    image = tf.image.stateless_random_contrast(image, 0.85, 1.15, seed + 2)
    crop = tf.cast(tf.cast(size, tf.float32) * 0.9, tf.int32)
    image = tf.image.stateless_random_crop(image, (crop, crop, 3), seed + 3)
    image = tf.image.resize(image, (size, size))
    return tf.clip_by_value(image, 0.0, 255.0)


def photo_store(paths, image_size: int, cache_dir: str | Path) -> Path:
    """Decode every photo once into ``cache_dir``: file ``<i>.u8`` holds photo i as raw uint8
    (image_size * image_size * 3 bytes).

    Returns ``<cache_dir>/photos_<size>px_v<DECODE_VERSION>_<key>``, the key hashing the exact
    photo list. A ``complete`` marker is written last, so an interrupted build is redone.
    """
    paths = [str(p) for p in paths]
    key = hashlib.sha256("\n".join(paths).encode()).hexdigest()[:16]
    store = Path(cache_dir) / f"photos_{image_size}px_v{DECODE_VERSION}_{key}"
    if (store / "complete").is_file():
        return store
    store.mkdir(parents=True, exist_ok=True)
    decoded = tf.data.Dataset.from_tensor_slices(np.asarray(paths)).map(
        lambda p: decode_photo(p, image_size), num_parallel_calls=AUTOTUNE, deterministic=True)
    for i, image in enumerate(decoded.prefetch(AUTOTUNE)):
        with atomic_path(store / f"{i}.u8") as tmp:
            tmp.write_bytes(image.numpy().tobytes())
    with atomic_path(store / "complete") as tmp:
        tmp.write_text(f"{len(paths)}\n")
    return store


def make_image_dataset(paths, targets=None, extra_inputs=None, image_size: int = DEFAULT_IMAGE_SIZE,
                       batch_size: int = 32, shuffle: bool = False, augment: bool = False,
                       seed: int = 0, cache_dir: str | Path | None = None) -> tf.data.Dataset:
    """Build the input pipeline over ``paths`` (n,).

    ``targets`` (n,) (log price): yields (x, y). ``extra_inputs`` (n, d) float32: x is
    ``{"image": ..., "tabular": ...}``. ``shuffle`` / ``augment``: seeded, a fresh permutation
    every epoch. ``cache_dir``: decode once into a :func:`photo_store` (same batches as without).
    Images are (batch, image_size, image_size, 3) float32 in [0, 255].
    """
    paths = np.asarray([str(p) for p in paths])
    n = len(paths)
    if cache_dir is not None:
        files = tf.constant([str(photo_store(paths, image_size, cache_dir) / f"{i}.u8")
                             for i in range(n)])

        def load(i):
            raw = tf.io.decode_raw(tf.io.read_file(files[i]), tf.uint8)
            return tf.reshape(raw, (image_size, image_size, 3))
    else:
        files = tf.constant(paths)

        def load(i):
            return decode_photo(files[i], image_size)

    columns = []
    if extra_inputs is not None:
        columns.append(tf.constant(np.asarray(extra_inputs, dtype=np.float32)))
    if targets is not None:
        columns.append(tf.constant(np.asarray(targets, dtype=np.float32)))

    rows = tf.data.Dataset.range(n)
    if shuffle:
        rows = rows.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)
    data = rows.map(lambda i: (load(i), *[column[i] for column in columns]),
                    num_parallel_calls=AUTOTUNE, deterministic=True)
    if augment:
        counter = tf.data.Dataset.counter().map(lambda i: tf.stack([tf.cast(seed, tf.int64), i]))
        data = tf.data.Dataset.zip((data, counter)).map(
            lambda item, s: (augment_photo(tf.cast(item[0], tf.float32), s), *item[1:]),
            num_parallel_calls=AUTOTUNE, deterministic=True)
    data = data.map(lambda *item: _arrange(item, extra_inputs is not None, targets is not None),
                    num_parallel_calls=AUTOTUNE, deterministic=True)
    return data.batch(batch_size).prefetch(AUTOTUNE)


def _arrange(item, has_tabular: bool, has_targets: bool):
    image = tf.cast(item[0], tf.float32)
    x = {"image": image, "tabular": item[1]} if has_tabular else image
    return (x, item[-1]) if has_targets else x

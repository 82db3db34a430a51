"""Streaming photo pipeline (tf.data): files on disk -> batches of RGB float32 images.

Photos are decoded, converted to 3 channels and resized in parallel, batched and prefetched;
nothing holds the whole image set in memory (the original stored every photo as one float64
array and needed 30 GB of GPU memory). For models trained for many epochs on the same photos
(:func:`make_image_dataset` with ``cache_dir``), the decoded, resized *uint8* images are cached
on disk by tf.data, so later epochs skip JPEG decoding without memory growing with the dataset.

Resizing squashes the (mostly 3:2) photo to a square without cropping, so nothing at the edges
of a room is lost. Pixel values stay in [0, 255]: each model normalises inside itself.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE
DEFAULT_IMAGE_SIZE = 224


def decode_photo(path: tf.Tensor, image_size: int) -> tf.Tensor:
    """Read one photo file -> (image_size, image_size, 3) uint8 RGB (grayscale/PNG handled)."""
    raw = tf.io.read_file(path)
    image = tf.io.decode_image(raw, channels=3, expand_animations=False)
    image = tf.image.resize(image, (image_size, image_size), method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)


def augment_photo(image: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Light, label-preserving augmentation: horizontal flip, brightness, contrast, small zoom.

    ``image`` is (H, W, 3) float32 in [0, 255]; ``seed`` a shape-(2,) int tensor (stateless ops,
    so the same seed gives the same augmentation on every run).
    """
    size = tf.shape(image)[0]
    image = tf.image.stateless_random_flip_left_right(image, seed)
    image = tf.image.stateless_random_brightness(image, 20.0, seed + 1)
    image = tf.image.stateless_random_contrast(image, 0.85, 1.15, seed + 2)
    crop = tf.cast(tf.cast(size, tf.float32) * 0.9, tf.int32)
    image = tf.image.stateless_random_crop(image, (crop, crop, 3), seed + 3)
    image = tf.image.resize(image, (size, size))
    return tf.clip_by_value(image, 0.0, 255.0)


def make_image_dataset(paths, targets=None, extra_inputs=None, image_size: int = DEFAULT_IMAGE_SIZE,
                       batch_size: int = 32, shuffle: bool = False, augment: bool = False,
                       seed: int = 0, cache_dir: str | Path | None = None) -> tf.data.Dataset:
    """Build the input pipeline.

    Args:
        paths: photo files, shape (n,).
        targets: optional regression targets, shape (n,) (log price); yields (x, y) when given.
        extra_inputs: optional tabular matrix, shape (n, d) float32; then x is a dict
            ``{"image": ..., "tabular": ...}`` (for two-branch fusion models).
        image_size: output side in pixels.
        shuffle / augment: training-time options (seeded).
        cache_dir: if set, decoded uint8 images are cached in a file there (disk, not memory).

    Yields:
        batches of images (batch, image_size, image_size, 3) float32 in [0, 255]
        (+ tabular (batch, d) float32) (+ targets (batch,) float32).
    """
    paths = np.asarray([str(p) for p in paths])
    images = tf.data.Dataset.from_tensor_slices(paths).map(
        lambda p: decode_photo(p, image_size), num_parallel_calls=AUTOTUNE, deterministic=True)
    if cache_dir is not None:
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        # the cache file is named after the exact photo list: another list never reads it
        key = hashlib.sha256("\n".join(paths.tolist()).encode()).hexdigest()[:16]
        images = images.cache(str(Path(cache_dir) / f"photos_{image_size}px_{key}"))
    parts = [images]
    if extra_inputs is not None:
        parts.append(tf.data.Dataset.from_tensor_slices(np.asarray(extra_inputs, dtype=np.float32)))
    if targets is not None:
        parts.append(tf.data.Dataset.from_tensor_slices(np.asarray(targets, dtype=np.float32)))
    data = tf.data.Dataset.zip(tuple(parts)) if len(parts) > 1 else images.map(lambda x: (x,))
    if shuffle:
        data = data.shuffle(min(len(paths), 2048), seed=seed, reshuffle_each_iteration=True)
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

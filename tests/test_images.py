"""shared.data.images: the tf.data photo pipeline (shapes, value range, inputs, seeds, disk cache)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fixtures import write_photo
from shared.data.dataset import check_photo

tf = pytest.importorskip("tensorflow")
from shared.data.images import decode_photo, make_image_dataset  # noqa: E402

SIZE = 8
RED, GREEN, BLUE, GREY = (220, 20, 20), (20, 200, 40), (30, 40, 210), (128, 128, 128)


@pytest.fixture
def photos(tmp_path):
    """Five decodable photos of different formats; the CMYK one goes through the loader's
    conversion as in real use. Returns (paths, expected RGB colour per photo)."""
    paths = [
        write_photo(tmp_path / "rgb.jpg", "jpeg", size=(30, 20), colour=RED),
        write_photo(tmp_path / "gray.jpg", "gray", size=(20, 30), colour=GREY),
        write_photo(tmp_path / "png.jpg", "png_as_jpg", colour=GREEN),
        write_photo(tmp_path / "rgba.jpg", "rgba_png", colour=BLUE),
        check_photo(write_photo(tmp_path / "cmyk.jpg", "cmyk", colour=RED),
                    converted_dir=tmp_path / "converted").path,
    ]
    return [str(p) for p in paths], [RED, GREY, GREEN, BLUE, RED]


def gradient_photo(path, seed: int = 0):
    """A 32x24 photo with structure (so flips and crops change pixels)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, 32)[None, :, None] * np.ones((24, 1, 3))
    x[:, :, 1] = np.linspace(0, 255, 24)[:, None]
    x[:, :, 2] = rng.uniform(0, 255, (24, 32))
    Image.fromarray(x.astype(np.uint8)).save(path, format="JPEG", quality=95)
    return str(path)


def collect(dataset) -> list:
    return [tf.nest.map_structure(lambda t: t.numpy(), batch) for batch in dataset]


def test_batches_are_float32_in_range_with_the_right_shape(photos):
    paths, colours = photos
    batches = collect(make_image_dataset(paths, image_size=SIZE, batch_size=2))

    assert [b.shape for b in batches] == [(2, SIZE, SIZE, 3), (2, SIZE, SIZE, 3), (1, SIZE, SIZE, 3)]
    images = np.concatenate(batches)
    assert images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 255.0
    for image, colour in zip(images, colours, strict=True):  # solid colours survive decoding + resizing
        np.testing.assert_allclose(image.mean(axis=(0, 1)), colour, atol=12)
    gray = images[1]
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 0], gray[..., 2])


def test_decode_photo_squashes_to_a_square_uint8(photos):
    paths, _ = photos
    image = decode_photo(tf.constant(paths[0]), 16)
    assert image.dtype == tf.uint8 and tuple(image.shape) == (16, 16, 3)


def test_targets_are_yielded_in_order_as_float32(photos):
    paths, _ = photos
    targets = np.array([3.0, 4.5, 5.0, 2.5, 4.0])
    batches = collect(make_image_dataset(paths, targets=targets, image_size=SIZE, batch_size=3))

    assert all(isinstance(b, tuple) and len(b) == 2 for b in batches)
    y = np.concatenate([b[1] for b in batches])
    assert y.dtype == np.float32 and np.array_equal(y, targets.astype(np.float32))
    assert [b[0].shape[0] for b in batches] == [3, 2]


def test_extra_inputs_make_a_dict_of_image_and_tabular(photos):
    paths, colours = photos
    tabular = np.arange(15, dtype=np.float64).reshape(5, 3)
    targets = np.linspace(3, 5, 5)

    with_y = collect(make_image_dataset(paths, targets=targets, extra_inputs=tabular,
                                        image_size=SIZE, batch_size=2))
    x0, y0 = with_y[0]
    assert set(x0) == {"image", "tabular"}
    assert x0["image"].shape == (2, SIZE, SIZE, 3) and x0["image"].dtype == np.float32
    assert x0["tabular"].dtype == np.float32
    np.testing.assert_array_equal(np.concatenate([b[0]["tabular"] for b in with_y]), tabular)
    np.testing.assert_allclose(np.concatenate([b[1] for b in with_y]), targets, rtol=1e-6)

    without_y = collect(make_image_dataset(paths, extra_inputs=tabular, image_size=SIZE,
                                           batch_size=5))
    assert len(without_y) == 1 and isinstance(without_y[0], dict)
    images = without_y[0]["image"]
    np.testing.assert_allclose(images[2].mean(axis=(0, 1)), colours[2], atol=12)


def test_augmentation_is_deterministic_for_a_seed(tmp_path):
    paths = [gradient_photo(tmp_path / f"{i}.jpg", seed=i) for i in range(4)]
    targets = np.arange(4, dtype=np.float32)

    def run(seed):
        return collect(make_image_dataset(paths, targets=targets, image_size=16, batch_size=4,
                                          shuffle=True, augment=True, seed=seed))[0]

    (a_x, a_y), (b_x, b_y), (c_x, _) = run(7), run(7), run(8)
    np.testing.assert_array_equal(a_x, b_x)
    np.testing.assert_array_equal(a_y, b_y)
    assert sorted(a_y.tolist()) == targets.tolist()  # a permutation of the rows
    assert not np.array_equal(a_x, c_x)
    assert a_x.shape == (4, 16, 16, 3) and a_x.dtype == np.float32
    assert a_x.min() >= 0.0 and a_x.max() <= 255.0

    plain = collect(make_image_dataset(paths, targets=targets, image_size=16, batch_size=4))[0][0]
    order = a_y.astype(int)
    assert not np.array_equal(a_x, plain[order])  # augmentation did change the pixels


def test_shuffle_is_seeded(tmp_path):
    paths = [write_photo(tmp_path / f"{i}.jpg", "jpeg", colour=(i * 20, 0, 0)) for i in range(10)]
    targets = np.arange(10, dtype=np.float32)

    def order(seed):
        batches = collect(make_image_dataset(paths, targets=targets, image_size=4,
                                             batch_size=10, shuffle=True, seed=seed))
        return batches[0][1].tolist()

    assert order(1) == order(1)
    assert sorted(order(1)) == targets.tolist()
    assert order(1) != order(2)


def test_cache_dir_mode_caches_decoded_photos_on_disk(tmp_path, photos):
    paths, _ = photos
    cache = tmp_path / "cache"
    dataset = make_image_dataset(paths, targets=np.ones(5), image_size=SIZE, batch_size=2,
                                 cache_dir=cache)
    first = collect(dataset)
    assert any(cache.iterdir())  # the cache lives on disk, in the given folder

    for path in paths:  # second epoch: photos come from the cache, not from the files
        Image.new("RGB", (10, 10), (0, 0, 0)).save(path, format="JPEG")
    second = collect(dataset)
    for (x1, y1), (x2, y2) in zip(first, second, strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)

    uncached = collect(make_image_dataset(paths, image_size=SIZE, batch_size=5))[0]
    assert uncached.max() < 30  # sanity: the files really changed


def test_cache_dir_reused_for_other_photos_does_not_serve_stale_images(tmp_path):
    cache = tmp_path / "cache"
    red = write_photo(tmp_path / "red.jpg", "jpeg", colour=RED)
    green = write_photo(tmp_path / "green.jpg", "jpeg", colour=GREEN)
    blue = write_photo(tmp_path / "blue.jpg", "jpeg", colour=BLUE)
    collect(make_image_dataset([red], image_size=SIZE, batch_size=4, cache_dir=cache))

    batches = collect(make_image_dataset([green, blue], targets=[1.0, 2.0], image_size=SIZE,
                                         batch_size=4, cache_dir=cache))
    x, y = batches[0]
    assert y.tolist() == [1.0, 2.0]
    np.testing.assert_allclose(x[0].mean(axis=(0, 1)), GREEN, atol=12)


def test_cached_and_uncached_pipelines_give_identical_shuffled_batches(tmp_path):
    paths = [gradient_photo(tmp_path / f"{i}.jpg", seed=i) for i in range(6)]
    targets = np.arange(6, dtype=np.float32)
    tabular = np.arange(12, dtype=np.float32).reshape(6, 2)

    def epochs(cache_dir):
        data = make_image_dataset(paths, targets=targets, extra_inputs=tabular, image_size=12,
                                  batch_size=4, shuffle=True, augment=True, seed=3,
                                  cache_dir=cache_dir)
        return [collect(data) for _ in range(2)]

    plain, cached = epochs(None), epochs(tmp_path / "cache")
    for epoch_plain, epoch_cached in zip(plain, cached, strict=True):
        for (x1, y1), (x2, y2) in zip(epoch_plain, epoch_cached, strict=True):
            np.testing.assert_array_equal(x1["image"], x2["image"])
            np.testing.assert_array_equal(x1["tabular"], x2["tabular"])
            np.testing.assert_array_equal(y1, y2)
    first, second = (np.concatenate([b[1] for b in epoch]) for epoch in plain)
    assert sorted(first.tolist()) == sorted(second.tolist()) == targets.tolist()
    assert first.tolist() != second.tolist()  # a fresh permutation each epoch
    rows = first.astype(int)  # tabular rows travel with their targets through the shuffle
    np.testing.assert_array_equal(np.concatenate([b[0]["tabular"] for b in plain[0]]), tabular[rows])


def test_interrupted_photo_store_is_rebuilt_not_reused(tmp_path, photos):
    from shared.data.images import photo_store

    paths, colours = photos
    store = photo_store(paths, SIZE, tmp_path / "cache")
    assert sorted(p.name for p in store.iterdir()) == ["0.u8", "1.u8", "2.u8", "3.u8", "4.u8",
                                                       "complete"]
    assert (store / "0.u8").stat().st_size == SIZE * SIZE * 3
    (store / "complete").unlink()  # as if the build had been killed before its last step
    (store / "2.u8").write_bytes(b"\0" * 5)
    assert photo_store(paths, SIZE, tmp_path / "cache") == store
    images = collect(make_image_dataset(paths, image_size=SIZE, batch_size=5,
                                        cache_dir=tmp_path / "cache"))[0]
    np.testing.assert_allclose(images[2].mean(axis=(0, 1)), colours[2], atol=12)

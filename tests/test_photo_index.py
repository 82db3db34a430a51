"""The photo-check index (issue 11, part 2): photos are decoded once per content, a changed or
corrupted photo is still caught, renamed bytes hit the index, and it is one small file."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from fixtures import TRICKY_EXPECTED_DROPS, TRICKY_USABLE_IDS, tricky_dataset_dir
from shared.data import dataset as dataset_module
from shared.data import photo_index
from shared.data.dataset import load_dataset


@pytest.fixture
def decodes(monkeypatch):
    """Records the photos :func:`shared.data.dataset.check_photo` fully decodes (their file names)."""
    seen = []
    original = dataset_module.check_photo

    def spy(path, *args, **kwargs):
        seen.append(path.name)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(dataset_module, "check_photo", spy)
    return seen


def _summary(dataset):
    return (dataset.ids.tolist(), dataset.drops, dataset.frame["image_width"].tolist(),
            dataset.frame["image_height"].tolist(), [p.rsplit("/", 1)[-1]
                                                     for p in dataset.frame["image_path"]])


def test_a_warm_load_decodes_nothing_and_gives_the_same_dataset(tmp_path, isolated_cache,
                                                                decodes, monkeypatch):
    data_dir = tricky_dataset_dir(tmp_path / "tricky")
    cold = load_dataset(data_dir)
    checked = sorted(decodes)
    assert len(checked) == 8  # every row reaching the photo check with a photo file (not 108)
    decodes.clear()

    hashed = []
    monkeypatch.setattr(photo_index, "sha256_file", lambda path: hashed.append(path) or "")
    warm = load_dataset(data_dir)

    assert decodes == [] and hashed == []  # unchanged files are not even read
    assert _summary(warm) == _summary(cold)
    assert warm.ids.tolist() == TRICKY_USABLE_IDS
    assert {k: v for k, v in warm.drops.items() if k.startswith("photo")} == {
        k: v for k, v in TRICKY_EXPECTED_DROPS.items() if k.startswith("photo")}
    # one small file holds every result, good or bad, keyed by content
    files = [p for p in (isolated_cache / "photo_checks").iterdir()]
    assert [p.name for p in files] == [photo_index.INDEX_FILE]
    stored = json.loads(files[0].read_text())
    assert len(stored["checks"]) == len(checked) and len(stored["files"]) == len(checked)


def test_entries_of_deleted_photos_are_forgotten(tmp_path, isolated_cache):
    first, second = tricky_dataset_dir(tmp_path / "a"), tricky_dataset_dir(tmp_path / "b")
    load_dataset(first)
    load_dataset(second)
    shutil.rmtree(first)
    (second / "images" / "101.jpg").write_bytes((second / "images" / "102.jpg").read_bytes())
    load_dataset(second)  # something changed: the index is rewritten

    stored = json.loads((isolated_cache / "photo_checks" / photo_index.INDEX_FILE).read_text())
    checked = [101, 102, 103, 104, 105, 106, 107, 113]  # the rows reaching the photo check
    assert sorted(stored["files"]) == [str(second / "images" / f"{i}.jpg") for i in checked]


def test_a_modified_photo_is_checked_again_and_dropped(tmp_path, isolated_cache, decodes):
    data_dir = tricky_dataset_dir(tmp_path / "tricky")
    assert 101 in load_dataset(data_dir).ids.tolist()
    decodes.clear()
    photo = data_dir / "images" / "101.jpg"
    stat = photo.stat()
    data = photo.read_bytes()
    photo.write_bytes(data[: len(data) // 2] + bytes(len(data) - len(data) // 2))  # same size
    os.utime(photo, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same date too

    dataset = load_dataset(data_dir)

    assert decodes == ["101.jpg"]
    assert 101 not in dataset.ids.tolist()
    assert 101 in dataset.drops["photo truncated or corrupt"]


def test_the_same_bytes_under_another_name_hit_the_index(tmp_path, isolated_cache, decodes):
    first = tricky_dataset_dir(tmp_path / "first")
    load_dataset(first)
    decodes.clear()
    second = tmp_path / "second"
    shutil.copytree(first, second)
    (second / "images" / "101.jpg").rename(second / "images" / "108.jpg")  # 108 had no photo
    (second / "images" / "102.jpg").unlink()

    dataset = load_dataset(second)

    assert decodes == []
    assert 108 in dataset.ids.tolist() and 101 not in dataset.ids.tolist()
    assert dataset.drops["photo missing"] == [101, 102]


def test_a_converted_photo_whose_copy_is_gone_is_converted_again(tmp_path, isolated_cache,
                                                                 decodes):
    data_dir = tricky_dataset_dir(tmp_path / "tricky")
    converted = tmp_path / "converted"
    path_104 = load_dataset(data_dir, converted_dir=converted).frame.set_index("ID").loc[
        104, "image_path"]
    assert path_104.startswith(str(converted))  # the CMYK photo is read from an RGB copy
    decodes.clear()
    shutil.rmtree(converted)

    again = load_dataset(data_dir, converted_dir=converted).frame.set_index("ID")

    assert decodes == ["104.jpg"]
    assert again.loc[104, "image_path"] == path_104
    assert (converted / path_104.rsplit("/", 1)[-1]).is_file()


@pytest.mark.parametrize("content", ["not json", '{"stamp": "check-v0 pillow-0", "checks": {}}',
                                     '{"stamp": 3}', "[]"])
def test_an_unreadable_or_foreign_index_is_ignored_and_rewritten(tmp_path, isolated_cache,
                                                                  decodes, content):
    data_dir = tricky_dataset_dir(tmp_path / "tricky")
    index = isolated_cache / "photo_checks" / photo_index.INDEX_FILE
    index.parent.mkdir(parents=True)
    index.write_text(content)

    assert load_dataset(data_dir).ids.tolist() == TRICKY_USABLE_IDS
    assert len(decodes) == 8
    assert json.loads(index.read_text())["stamp"] == photo_index._stamp()

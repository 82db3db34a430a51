"""Integration tests on the real dataset (``AIRBNB_DATA_DIR``); skipped when it is not set.

Besides the real directory itself, a *second* real-layout directory the code has never seen is
built in a temporary folder from the real data: every 3rd listing (IDs preserved), prices written
as "$1,234.00"-style strings, one listing moved to Barcelona, one in "Madrid, Comunidad de
Madrid", one photo re-saved as PNG-in-.jpg, one as CMYK, one truncated. It must load, split and
check the same way, with exactly the expected drops.
"""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from fixtures import tree_state
from shared.features import tabular as feats
from shared.data import schema
from shared.cli import main
from shared.data.dataset import load_dataset
from shared.data.split import SPLIT_FILE, load_or_make_split, make_split

pytestmark = pytest.mark.realdata

REAL_USABLE = 814
REAL_SPLIT_SIZES = (487, 82, 81, 164)  # train, val, cal, test (grouped by host and photo)


@pytest.fixture(scope="module")
def real(real_data_dir, tmp_path_factory):
    """(Dataset of the real directory, its file tree before loading, converted-photo folder)."""
    before = tree_state(real_data_dir)
    converted = tmp_path_factory.mktemp("real-converted")
    return load_dataset(real_data_dir, converted_dir=converted), before, converted


def _check_no_nan_after_preprocessing(dataset, split):
    parts = {name: dataset.subset(ids) for name, ids in split.parts().items()}
    preprocessor = feats.make_preprocessor().fit(parts["train"].frame)
    widths = set()
    for name, part in parts.items():
        matrix = preprocessor.transform(part.frame)
        assert matrix.dtype == np.float32 and matrix.shape[0] == len(part.frame)
        assert not np.isnan(matrix).any() and np.isfinite(matrix).all(), name
        widths.add(matrix.shape[1])
    assert len(widths) == 1
    return preprocessor


# --------------------------------------------------------------------------- the real directory

def test_real_data_check_reports_814_usable(real_data_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AIRBNB_DL_CACHE", str(tmp_path / "cache"))
    assert main(["data", "check", "--data-dir", str(real_data_dir), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows_read"] == REAL_USABLE
    assert summary["rows_usable"] == REAL_USABLE
    assert summary["drops"] == {}


def test_real_dataset_loads_read_only(real, real_data_dir):
    dataset, before, converted = real
    assert len(dataset.frame) == REAL_USABLE and dataset.drops == {}
    assert np.all(dataset.prices > 0) and len(np.unique(dataset.ids)) == REAL_USABLE
    roots = (str(real_data_dir.resolve()), str(converted.resolve()))  # data dir may be a symlink
    for path in dataset.image_paths:
        assert path.startswith(roots)
    assert tree_state(real_data_dir) == before


def test_real_split_sizes_and_persistence(real, tmp_path):
    dataset, _, _ = real
    split = load_or_make_split(dataset, tmp_path, 42)

    assert tuple(len(ids) for ids in split.parts().values()) == REAL_SPLIT_SIZES
    union = np.concatenate(list(split.parts().values()))
    assert len(np.unique(union)) == REAL_USABLE and set(union) == set(dataset.ids.tolist())
    for a, b in zip(split.parts().values(), make_split(dataset, 42).parts().values(), strict=True):
        assert np.array_equal(a, b)
    assert json.loads((tmp_path / SPLIT_FILE).read_text())["train"] == split.train.tolist()


def test_real_features_have_no_nan_after_preprocessing(real):
    dataset, _, _ = real
    preprocessor = _check_no_nan_after_preprocessing(dataset, make_split(dataset, 42))
    names = [str(n) for n in preprocessor.get_feature_names_out()]
    for forbidden in feats.FORBIDDEN_INPUTS:
        assert not any(n.split("__", 1)[-1] == forbidden for n in names)


# --------------------------------------------------------------------------- an unseen directory

@pytest.fixture(scope="module")
def unseen(real_data_dir, tmp_path_factory):
    """Build the unseen directory; return (path, expectations)."""
    with open(real_data_dir / schema.LISTINGS_FILE, encoding="utf-8", newline="") as handle:
        header, *rows = list(csv.reader(handle, delimiter=schema.CSV_SEPARATOR))
    column = {name: i for i, name in enumerate(header)}
    rows = rows[1::3]  # a different subset, IDs preserved
    ids = [int(row[column["ID"]]) for row in rows]
    prices = {}
    for row in rows:
        value = float(row[column["Price"]])
        prices[int(row[column["ID"]])] = value
        row[column["Price"]] = f"${value:,.2f}"
    barcelona, comunidad, png, cmyk, truncated, expensive = ids[3], ids[5], ids[7], ids[9], \
        ids[11], ids[13]
    rows[3][column["City"]] = "Barcelona"
    rows[5][column["City"]] = "Madrid, Comunidad de Madrid"
    rows[13][column["Price"]] = "$1,234.00"
    prices[expensive] = 1234.0

    root = tmp_path_factory.mktemp("unseen") / "airbnb-other"
    (root / schema.IMAGES_DIR).mkdir(parents=True)
    with open(root / schema.LISTINGS_FILE, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=schema.CSV_SEPARATOR)
        writer.writerow(header)
        writer.writerows(rows)
    for listing in ids:
        source = real_data_dir / schema.IMAGES_DIR / f"{listing}.jpg"
        target = root / schema.IMAGES_DIR / f"{listing}.jpg"
        if listing == png:
            with Image.open(source) as image:
                image.convert("RGB").save(target, format="PNG")
        elif listing == cmyk:
            with Image.open(source) as image:
                image.convert("CMYK").save(target, format="JPEG", quality=90)
        elif listing == truncated:
            data = source.read_bytes()
            target.write_bytes(data[: len(data) // 2])
        else:
            shutil.copyfile(source, target)
    expected = {
        "ids": ids, "prices": prices, "png": png, "cmyk": cmyk, "comunidad": comunidad,
        "drops": {"outside Madrid, Spain": [barcelona], "photo truncated or corrupt": [truncated]},
    }
    return root, expected


def test_unseen_directory_loads_with_the_expected_drops(unseen, tmp_path):
    root, expected = unseen
    before = tree_state(root)
    dataset = load_dataset(root, converted_dir=tmp_path / "converted")

    assert dataset.rows_read == len(expected["ids"])
    assert dataset.drops == expected["drops"]
    dropped = {i for ids in expected["drops"].values() for i in ids}
    usable = sorted(set(expected["ids"]) - dropped)
    assert dataset.ids.tolist() == usable
    assert dict(zip(dataset.ids.tolist(), dataset.prices.tolist(), strict=True)) == \
        {i: expected["prices"][i] for i in usable}
    paths = dict(zip(dataset.ids.tolist(), dataset.image_paths, strict=True))
    assert paths[expected["png"]] == str(root / "images" / f"{expected['png']}.jpg")
    assert paths[expected["cmyk"]].startswith(str(tmp_path / "converted"))
    assert expected["comunidad"] in paths
    assert tree_state(root) == before


def test_unseen_directory_splits_and_preprocesses(unseen, real, tmp_path):
    root, expected = unseen
    dataset = load_dataset(root, converted_dir=tmp_path / "converted")
    n = len(dataset.frame)

    # a models dir holding the real data's split: the unseen data replaces it, never mixes
    load_or_make_split(real[0], tmp_path, 42)
    split = load_or_make_split(dataset, tmp_path, 42)
    test_size = int(np.ceil(0.2 * n))
    held = int(np.ceil(0.25 * (n - test_size)))
    cal_size = int(np.ceil(0.5 * held))
    assert tuple(len(ids) for ids in split.parts().values()) == \
        (n - test_size - held, held - cal_size, cal_size, test_size)
    union = np.concatenate(list(split.parts().values()))
    assert len(np.unique(union)) == n and set(union.tolist()) == set(dataset.ids.tolist())
    stored = json.loads((tmp_path / SPLIT_FILE).read_text())
    assert stored["test"] == split.test.tolist()

    _check_no_nan_after_preprocessing(dataset, split)


def test_unseen_directory_data_check(unseen, tmp_path, monkeypatch, capsys):
    root, expected = unseen
    monkeypatch.setenv("AIRBNB_DL_CACHE", str(tmp_path / "cache"))
    assert main(["data", "check", "--data-dir", str(root)]) == 0
    out = capsys.readouterr().out
    n_dropped = sum(map(len, expected["drops"].values()))
    assert f"rows read         : {len(expected['ids'])}" in out
    assert f"rows usable       : {len(expected['ids']) - n_dropped}" in out
    for reason, ids in expected["drops"].items():
        assert f"{len(ids):5d}  {reason}  (IDs: {ids[0]})" in out
    assert "max 1234.00" in out

"""shared.data.dataset: validation rules, drop reasons, photo checks, read-only data directory."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from fixtures import (TRICKY_EXPECTED_DROPS, TRICKY_PRICES, TRICKY_USABLE_IDS, listing_row,
                      make_dataset_dir, tree_state, write_listings_csv)
from shared.data import schema
from shared.environment import DataDirError
from shared.data.dataset import (REQUIRED_COLUMNS, DatasetError, dataset_fingerprint, load_dataset,
                            normalise_city, parse_listing_id, parse_price)


# --------------------------------------------------------------------------- parsing helpers

@pytest.mark.parametrize("text, expected", [
    ("$1,200.00", 1200.0), ("€45", 45.0), ("50", 50.0), ("50.0", 50.0), ("1.200,50", 1200.5),
    ("1,234", 1234.0), ("12,5", 12.5), (" 45 EUR", 45.0), ("$ 65", 65.0), (70, 70.0), (70.5, 70.5),
])
def test_parse_price_accepts_common_forms(text, expected):
    assert parse_price(text) == expected


@pytest.mark.parametrize("text", ["free", "", "$", "n/a", None, float("nan"), "inf", "12-15"])
def test_parse_price_unparseable_is_nan(text):
    assert math.isnan(parse_price(text))


@pytest.mark.parametrize("text, expected", [
    ("12", 12), (" 12 ", 12), ("12.0", 12), ("15141125", 15141125),
    ("12a", None), ("../etc/passwd", None), ("0", None), ("-5", None), ("12.5", None),
    ("1e5", None), ("", None), ("nan", None), ("12/../../x", None),
])
def test_parse_listing_id_only_positive_integers(text, expected):
    assert parse_listing_id(text) == expected


@pytest.mark.parametrize("text", ["Madrid", " MADRID ", "Madrid, Comunidad de Madrid", "Mádrid",
                                  "madrid "])
def test_normalise_city_variants_are_madrid(text):
    assert normalise_city(text) == "madrid"


def test_normalise_city_missing_is_empty():
    assert normalise_city(None) == "" and normalise_city(float("nan")) == ""


# --------------------------------------------------------------------------- drops

def test_tricky_directory_keeps_the_usable_rows_and_names_every_drop(tricky_dir, isolated_cache):
    dataset = load_dataset(tricky_dir)

    assert dataset.rows_read == 16
    assert dataset.ids.tolist() == TRICKY_USABLE_IDS
    assert dataset.drops == TRICKY_EXPECTED_DROPS
    # every row read is either usable or dropped exactly once
    assert len(dataset.frame) + sum(map(len, dataset.drops.values())) == dataset.rows_read


def test_prices_with_currency_symbols_and_thousands_separators(tricky_dir, isolated_cache):
    dataset = load_dataset(tricky_dir)

    assert dict(zip(dataset.ids.tolist(), dataset.prices.tolist(), strict=True)) == TRICKY_PRICES
    assert dataset.prices.dtype == np.float64 and dataset.ids.dtype == np.int64


def test_duplicate_id_keeps_the_first_row(tricky_dir, isolated_cache):
    dataset = load_dataset(tricky_dir)

    first = dataset.frame.loc[dataset.frame[schema.ID_COLUMN] == 101]
    assert len(first) == 1 and first["price"].item() == 50.0


def test_city_variant_is_kept_and_other_city_or_country_dropped(tmp_path, isolated_cache):
    rows = [listing_row(1, City="Madrid, Comunidad de Madrid"), listing_row(2, City="MADRID"),
            listing_row(3, City="Barcelona"), listing_row(4, Country="France"),
            listing_row(5, Country="España"), listing_row(6, City=None)]
    dataset = load_dataset(make_dataset_dir(tmp_path / "d", rows=rows))

    assert dataset.ids.tolist() == [1, 2, 5]
    assert dataset.drops == {"outside Madrid, Spain": [3, 4, 6]}


def test_photos_that_tensorflow_decodes_are_used_in_place(tricky_dir, isolated_cache):
    dataset = load_dataset(tricky_dir)
    paths = dict(zip(dataset.ids.tolist(), dataset.image_paths, strict=True))

    for listing in (101, 102, 103, 105, 113):  # RGB / grayscale JPEG, PNG-in-.jpg, RGBA PNG
        assert paths[listing] == str(tricky_dir / "images" / f"{listing}.jpg")
    sizes = dataset.frame[["image_width", "image_height"]].drop_duplicates().to_numpy().tolist()
    assert sizes == [[24, 16]]


def test_cmyk_photo_is_converted_into_the_cache_never_the_data_dir(tricky_dir, isolated_cache):
    before = tree_state(tricky_dir)

    dataset = load_dataset(tricky_dir)

    converted = dict(zip(dataset.ids.tolist(), dataset.image_paths, strict=True))[104]
    assert converted.startswith(str(isolated_cache / "converted_photos"))
    assert not converted.startswith(str(tricky_dir))
    with Image.open(converted) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (24, 16))
    assert tree_state(tricky_dir) == before

    # a second load reuses the converted copy (same path, nothing new written)
    cache_before = tree_state(isolated_cache)
    again = load_dataset(tricky_dir)
    assert dict(zip(again.ids.tolist(), again.image_paths, strict=True))[104] == converted
    assert tree_state(isolated_cache) == cache_before


def test_explicit_converted_dir_is_used(tricky_dir, tmp_path, isolated_cache):
    target = tmp_path / "elsewhere"
    dataset = load_dataset(tricky_dir, converted_dir=target)

    converted = dict(zip(dataset.ids.tolist(), dataset.image_paths, strict=True))[104]
    assert converted.startswith(str(target))
    assert not (isolated_cache / "converted_photos").exists()  # only the photo-check index there


def test_data_dir_is_never_written_to(tricky_dir, isolated_cache):
    before = tree_state(tricky_dir)
    load_dataset(tricky_dir)
    load_dataset(tricky_dir, require_price=False)
    load_dataset(tricky_dir, check_photos=False)
    assert tree_state(tricky_dir) == before


# --------------------------------------------------------------------------- whole-file errors

def test_missing_columns_raise_a_dataset_error_listing_all_of_them(tmp_path):
    removed = ["City", "Zipcode", "ID", "Review Scores Value", "Price"]
    columns = [c for c in schema.OPENDATASOFT_COLUMNS if c not in removed]
    data_dir = make_dataset_dir(tmp_path / "d", rows=[listing_row(1)], columns=columns)

    with pytest.raises(DatasetError) as info:
        load_dataset(data_dir)

    message = str(info.value)
    assert "listings.csv" in message
    assert message.endswith("missing required column(s): ID, City, Price")
    # without a price requirement, only the layout columns are missing
    with pytest.raises(DatasetError, match="missing required column\\(s\\): ID, City$"):
        load_dataset(data_dir, require_price=False)


def test_only_id_city_and_price_are_required(tmp_path, isolated_cache):
    kept = ["ID", "City", "Price", "Room Type"]
    data_dir = make_dataset_dir(tmp_path / "d", rows=[listing_row(1), listing_row(2)],
                                columns=kept)
    dataset = load_dataset(data_dir)

    assert dataset.ids.tolist() == [1, 2]
    assert dataset.absent_columns == tuple(c for c in schema.OPENDATASOFT_COLUMNS if c not in kept)
    summary = dataset.summary()
    assert summary["absent_columns"] == list(dataset.absent_columns)
    assert "amenities_count" in summary["features_not_built"]
    assert "Room Type" not in summary["features_not_built"]
    full = make_dataset_dir(tmp_path / "full", rows=[listing_row(1)])
    assert load_dataset(full).absent_columns == () and "absent_columns" not in \
        load_dataset(full).summary()


@pytest.mark.parametrize("content, expected", [
    (b"id;City;Price\n1;Madrid;50\n", "missing required column(s): ID"),
    (b"ID,City,Price\n1,Madrid,50\n", "missing required column(s): ID, City, Price"),
    (bytes(range(256)) * 4, "is not a ';'-separated UTF-8 CSV"),
])
def test_other_schema_files_give_one_clear_error(tmp_path, content, expected):
    data_dir = tmp_path / "other"
    data_dir.mkdir()
    (data_dir / "listings.csv").write_bytes(content)

    with pytest.raises(DatasetError) as info:
        load_dataset(data_dir)
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_every_required_column_is_an_opendatasoft_column():
    assert set(REQUIRED_COLUMNS) <= set(schema.OPENDATASOFT_COLUMNS)


def test_missing_listings_csv_and_missing_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="listings.csv not found"):
        load_dataset(tmp_path / "empty")
    with pytest.raises(DataDirError, match="does not exist"):
        load_dataset(tmp_path / "nowhere")


def test_non_utf8_csv_is_a_dataset_error(tmp_path):
    data_dir = tmp_path / "latin1"
    data_dir.mkdir()
    header = ";".join(schema.OPENDATASOFT_COLUMNS)
    row = ";".join("Chamberí" if c == "Neighbourhood Cleansed" else "1"
                   for c in schema.OPENDATASOFT_COLUMNS)
    (data_dir / "listings.csv").write_bytes(f"{header}\n{row}\n".encode("latin-1"))

    with pytest.raises(DatasetError, match="UTF-8"):
        load_dataset(data_dir)


def test_header_only_csv_gives_an_empty_dataset(tmp_path):
    data_dir = tmp_path / "d"
    write_listings_csv(data_dir / "listings.csv", [])
    dataset = load_dataset(data_dir)
    assert dataset.rows_read == 0 and len(dataset.frame) == 0 and dataset.drops == {}


# --------------------------------------------------------------------------- prediction mode

def test_require_price_false_keeps_rows_without_a_valid_price(tricky_dir, isolated_cache):
    dataset = load_dataset(tricky_dir, require_price=False)

    prices = dict(zip(dataset.ids.tolist(), dataset.prices.tolist(), strict=True))
    assert {109, 110, 111} <= set(prices)
    assert all(math.isnan(prices[i]) for i in (109, 110, 111))
    assert prices[102] == 1200.0
    assert "price missing or unparseable" not in dataset.drops
    assert dataset.drops["outside Madrid, Spain"] == [112]


def test_a_dataset_without_price_column_can_be_scored(tmp_path, isolated_cache):
    columns = [c for c in schema.OPENDATASOFT_COLUMNS if c not in schema.PRICE_DERIVED_COLUMNS]
    data_dir = make_dataset_dir(tmp_path / "d", rows=[listing_row(1), listing_row(2)],
                                columns=columns)
    dataset = load_dataset(data_dir, require_price=False)

    assert dataset.ids.tolist() == [1, 2] and not dataset.has_prices
    assert np.isnan(dataset.prices).all()
    assert "price_eur" not in dataset.summary()


# --------------------------------------------------------------------------- Dataset object

def test_subset_summary_and_fingerprint(tricky_dir, isolated_cache):
    dataset = load_dataset(tricky_dir)

    part = dataset.subset([105, 101])
    assert part.ids.tolist() == [105, 101] and part.prices.tolist() == [65.0, 50.0]
    assert part.image_paths.tolist() == [str(tricky_dir / "images" / "105.jpg"),
                                         str(tricky_dir / "images" / "101.jpg")]

    summary = dataset.summary()
    assert summary["rows_read"] == 16 and summary["rows_usable"] == 6
    assert summary["drops"] == {k: len(v) for k, v in TRICKY_EXPECTED_DROPS.items()}
    assert summary["price_eur"] == {"min": 45.0, "median": 60.0, "max": 1200.0}
    assert len(summary["listings_sha256"]) == 64

    assert dataset_fingerprint(dataset.subset([113, 101])) == \
        dataset_fingerprint(dataset.subset([101, 113]))
    assert dataset_fingerprint(dataset.subset([101])) != dataset_fingerprint(dataset)


def test_frame_is_sorted_by_id_and_indexed_from_zero(tmp_path, isolated_cache):
    rows = [listing_row(i) for i in (30, 10, 20)]
    dataset = load_dataset(make_dataset_dir(tmp_path / "d", rows=rows))
    assert dataset.ids.tolist() == [10, 20, 30]
    assert dataset.frame.index.tolist() == [0, 1, 2]


def test_one_listing_id_rule_for_loader_and_fetch():
    from shared.data import acquisition
    from shared.data import dataset
    from shared.data.acquisition import layout

    assert dataset.parse_listing_id is schema.parse_listing_id
    assert acquisition.parse_listing_id is schema.parse_listing_id
    assert layout.parse_listing_id is schema.parse_listing_id
    # "12.0" is how a numeric export writes ID 12; non-ASCII digits never name a photo file
    assert schema.parse_listing_id("12.0") == schema.parse_listing_id(12.0) == 12
    assert schema.parse_listing_id("\uff11\uff12") is None  # full-width "12"
    assert schema.parse_listing_id("12.00") == 12 and schema.parse_listing_id("12.") is None

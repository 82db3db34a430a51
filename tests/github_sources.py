"""Stand-ins for the pinned GitHub sources: tables split back out of output rows, pins, a server.

Given the rows ``listings.csv`` should hold (``{column: text}`` with the 48 columns), this writes
what the real repositories hold: the listings table (24 columns, ',', quoted where needed) and the
more-columns tables (39 columns, ';', no ID, rows shuffled over train and test, ``State`` spelled
differently in some rows), plus rows the source must leave out (another city, price 0 or
missing, ...). The pins (:class:`GithubSources`) carry the sha256 of the tables as written, and
:func:`serve` routes everything on a :class:`LocalServer` under ``/OWNER/REPO/COMMIT/PATH``.
:func:`write_set_manifest` and :func:`listings_bytes` give what a set (:class:`DatasetSet`) pins:
the sha256 of each scaled photo and the bytes ``listings.csv`` must have.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from shared.data.acquisition.github import GithubSources, PinnedPhotos, PinnedTable
from shared.data.acquisition.github_photos import git_blob_id
from shared.data.acquisition.layout import format_csv_row

try:
    from acq_server import LocalServer, Reply
except ImportError:  # tests/ imported as a package
    from tests.acq_server import LocalServer, Reply

LISTINGS_TABLE_COLUMNS = ["ID", "Host ID", "Host Since", "Host Name", "Street", "Neighbourhood Cleansed", "City", "State", "Zipcode", "Smart Location", "Country Code", "Country", "Latitude", "Longitude", "Property Type", "Room Type", "Bathrooms", "Bedrooms", "Beds", "Bed Type", "Price", "Number of Reviews", "Cancellation Policy", "Geolocation"]
MORE_COLUMNS = ["Host Listings Count", "Neighbourhood Cleansed", "City", "State", "Zipcode", "Latitude", "Longitude", "Property Type", "Room Type", "Accommodates", "Bathrooms", "Bedrooms", "Beds", "Bed Type", "Square Feet", "Price", "Weekly Price", "Monthly Price", "Security Deposit", "Cleaning Fee", "Guests Included", "Extra People", "Minimum Nights", "Maximum Nights", "Availability 30", "Availability 60", "Availability 90", "Availability 365", "Number of Reviews", "Review Scores Rating", "Review Scores Accuracy", "Review Scores Cleanliness", "Review Scores Checkin", "Review Scores Communication", "Review Scores Location", "Review Scores Value", "Cancellation Policy", "Calculated host listings count", "Reviews per Month"]

LISTINGS_REPO, MORE_REPO, PHOTOS_REPO = "ana/warehouse", "arix/keepml", "mc/practica"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def csv_bytes(columns: list[str], rows: Iterable[Mapping[str, str]], delimiter: str) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(name, "") for name in columns])
    return buffer.getvalue().encode("utf-8")


def excluded_rows(template: Mapping[str, str]) -> list[dict[str, str]]:
    """Rows the source must leave out: another city, price 0, no price (with their matches)."""
    rows = []
    for index, change in enumerate([{"City": "Barcelona", "State": "Catalunya"},
                                    {"Price": "0.0"}, {"Price": ""}]):
        row = {**template, **change, "ID": str(900_000_001 + index),
               "Latitude": f"41.1{index}23456789", "Longitude": f"2.1{index}23456789"}
        rows.append(row)
    return rows


def source_tables(rows: list[Mapping[str, str]],
                  extra: list[Mapping[str, str]] = ()) -> dict[str, bytes]:
    """``{path in its repository: bytes}`` of the three tables holding ``rows`` + ``extra``."""
    everything = [*rows, *extra]
    more = []
    for index, row in enumerate(reversed(everything)):  # another order than the listings table
        more_row = dict(row)
        if index % 3 == 0 and more_row.get("State"):
            more_row["State"] = "Madrid"  # the more-columns tables spell it differently
        more.append(more_row)
    return {"airbnb_data_warehouse.csv": csv_bytes(LISTINGS_TABLE_COLUMNS, everything, ","),
            "data/airbnb_train.csv": csv_bytes(MORE_COLUMNS, more[::2], ";"),
            "data/airbnb_test.csv": csv_bytes(MORE_COLUMNS, more[1::2], ";")}


def write_manifest(path: Path, photos: Mapping[int, bytes]) -> Path:
    lines = ["ID,git_blob_sha1,bytes"] + [f"{listing_id},{git_blob_id(data)},{len(data)}"
                                          for listing_id, data in sorted(photos.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_set_manifest(path: Path, scaled: Mapping[int, bytes]) -> Path:
    """A set manifest (``ID,sha256,bytes``) pinning these scaled photos."""
    lines = ["ID,sha256,bytes"] + [f"{listing_id},{hashlib.sha256(data).hexdigest()},{len(data)}"
                                   for listing_id, data in sorted(scaled.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def listings_bytes(rows: Iterable[Iterable[str]]) -> bytes:
    """``listings.csv`` as the fetch must write these rows (header first), the way pandas'
    ``to_csv(sep=";", index=False)`` writes them."""
    return "".join(format_csv_row(list(row)) for row in rows).encode("utf-8")


def pins_for(tables: Mapping[str, bytes], manifest: Path) -> GithubSources:
    """Pins naming the stand-in repositories, with the sha256 of ``tables``."""

    def table(repo: str, path: str, delimiter: str) -> PinnedTable:
        return PinnedTable(repo, COMMIT, path, hashlib.sha256(tables[path]).hexdigest(),
                           delimiter)

    return GithubSources(table(LISTINGS_REPO, "airbnb_data_warehouse.csv", ","),
                         (table(MORE_REPO, "data/airbnb_train.csv", ";"),
                          table(MORE_REPO, "data/airbnb_test.csv", ";")),
                         PinnedPhotos(PHOTOS_REPO, COMMIT, "imagenes", manifest))


def write_pins_json(pins: GithubSources, path: Path) -> Path:
    """The pins as the JSON file ``airbnb-dl data fetch --pins`` reads."""
    spec = {"listings": dataclasses.asdict(pins.listings),
            "more_columns": [dataclasses.asdict(table) for table in pins.more_columns],
            "photos": {**dataclasses.asdict(pins.photos),
                       "manifest": str(pins.photos.manifest)}}
    path.write_text(json.dumps(spec, indent=2), encoding="utf-8")
    return path


def serve(server: LocalServer, pins: GithubSources, tables: Mapping[str, bytes],
          photos: Mapping[int, Reply | list[Reply]]) -> str:
    """Route the tables and photos under their pinned paths; return the base URL."""
    for pinned in pins.tables:
        server.route(f"/{pinned.repo}/{pinned.commit}/{pinned.path}", Reply(tables[pinned.path]))
    for listing_id, replies in photos.items():
        route_photo(server, pins, listing_id, replies)
    return server.url("")


def photo_route(pins: GithubSources, listing_id: int) -> str:
    photos = pins.photos
    return f"/{photos.repo}/{photos.commit}/{photos.folder}/{listing_id}.jpg"


def route_photo(server: LocalServer, pins: GithubSources, listing_id: int,
                replies: Reply | list[Reply]) -> None:
    replies = replies if isinstance(replies, list) else [replies]
    server.route(photo_route(pins, listing_id), *replies)


def read_csv(path: Path, delimiter: str = ";") -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle, delimiter=delimiter))


class _Collect(logging.Handler):
    def __init__(self, lines: list[str]):
        super().__init__(logging.INFO)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def logged(lines: list[str] | None) -> Iterator[None]:
    """Append the fetch's progress lines (``logging``, INFO) to ``lines`` inside the block."""
    if lines is None:
        yield
        return
    logger = logging.getLogger("shared.data.acquisition")
    handler, level = _Collect(lines), logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)

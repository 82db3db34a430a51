"""The ``github`` source (the default): the 12,232-listing Madrid set from pinned public commits.

Read from the raw-file host (or ``--url``): the listings table, two tables with more columns
joined on the *same Latitude and Longitude text* (the listings table wins on shared columns),
and one photo per listing. A table that does not match its pinned sha256 makes the source
unusable (exit 2) before anything is written: tables are verified and joined in a temporary
folder first. Values stay text except the parsed price and ID. Each photo must have the git blob
id of the vendored manifest and decode; a listing whose photo fails is left out and counted.
The *set* (:mod:`.sets`) decides which listings are written and how photos are scaled.
"""

from __future__ import annotations

import logging
import csv
import functools
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath


from shared.data.dataset import parse_price
from shared.io import sha256_file
from shared.data.schema import ID_COLUMN, LISTINGS_FILE, OPENDATASOFT_COLUMNS

from .base import FetchOptions, UnusableSourceError, run_photo_jobs
from .github_photos import (LEDGER_FILE, RAW_FILE_HOST, PhotoLedger, PhotoTarget, PinnedPhoto,
                            fetch_photo, load_manifest, set_identity)
from .http import atomic_output, download
from .layout import select_listings, write_listings_csv
from .report import FetchReport
from .sets import REPORTS_SET, DatasetSet

logger = logging.getLogger(__name__)

MANIFEST_DIR = Path(__file__).resolve().parent / "data"
JOIN_KEY = ("Latitude", "Longitude")
CITY = "Madrid"
_FIELD_SIZE_LIMIT = 16 * 2**20


# --------------------------------------------------------------------------- the pins


@dataclass(frozen=True)
class PinnedTable:
    """A table read at a pinned commit and checked against its sha256 (hex)."""

    repo: str
    commit: str
    path: str
    sha256: str
    delimiter: str = ","

    def url(self, base: str = RAW_FILE_HOST) -> str:
        return f"{base.rstrip('/')}/{self.repo}/{self.commit}/{self.path}"

    @property
    def raw_name(self) -> str:
        """The file name under ``<dest>/raw/``."""
        return PurePosixPath(self.path).name


@dataclass(frozen=True)
class PinnedPhotos:
    """The photo folder at a pinned commit and the manifest of its git blob ids."""

    repo: str
    commit: str
    folder: str
    manifest: Path

    def url(self, listing_id: int | str, base: str = RAW_FILE_HOST) -> str:
        return f"{base.rstrip('/')}/{self.repo}/{self.commit}/{self.folder}/{listing_id}.jpg"


@dataclass(frozen=True)
class GithubSources:
    """Everything the ``github`` source reads: the pins of the tables and of the photos.

    A JSON file with the same fields (``--pins FILE``, :meth:`from_json`) replaces
    :data:`DEFAULT_GITHUB_SOURCES`, e.g. for a mirror or a test server.
    """

    listings: PinnedTable
    more_columns: tuple[PinnedTable, ...]
    photos: PinnedPhotos
    tables: tuple[PinnedTable, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tables", (self.listings, *self.more_columns))
        names = [table.raw_name for table in self.tables]
        if len(set(names)) != len(names):
            raise ValueError(f"the pinned tables need distinct file names, got {names}")

    def locations(self, base: str | None = None) -> dict[str, str]:
        """``{item: URL}`` of what is fetched, for the log and the report."""
        base = base or RAW_FILE_HOST
        locations = {f"listings ({self.listings.raw_name})": self.listings.url(base)}
        for table in self.more_columns:
            locations[f"more columns ({table.raw_name})"] = table.url(base)
        locations["photos"] = self.photos.url("<ID>", base)
        return locations

    @classmethod
    def from_json(cls, path: Path) -> GithubSources:
        """Read pins from JSON: ``{"listings": TABLE, "more_columns": [TABLE, ...], "photos":
        {"repo", "commit", "folder", "manifest"}}`` with TABLE = ``{"repo", "commit", "path",
        "sha256", "delimiter"}``; a relative manifest path is relative to the JSON file."""
        path = Path(path)
        try:
            spec = json.loads(path.read_text(encoding="utf-8"))
            photos = dict(spec["photos"])
            photos["manifest"] = path.parent / photos["manifest"]
            return cls(PinnedTable(**spec["listings"]),
                       tuple(PinnedTable(**table) for table in spec["more_columns"]),
                       PinnedPhotos(**photos))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: not a usable pins file ({type(error).__name__}: "
                             f"{error})") from error


DEFAULT_GITHUB_SOURCES = GithubSources(
    listings=PinnedTable(
        "AnaGallegos/Proyecto-Final-KC-Data-Grupo-3", "7927d43b02fb5ab49f719a1252de6907ae786631",
        "airbnb_data_warehouse.csv",
        "83d7d782326222c51256930f26e0415b9ac94275dc98cbcbc3f23021473c9d02", ","),
    more_columns=(
        PinnedTable("Arix1986/KeepML101", "5ac118ed90e9ca1747b9d4e2a7ada505eb2deeb6",
                    "data/airbnb_train.csv",
                    "06139b9129f9bdf844d3212ce0f44cb94d21ababf74e344be745fc490d412df4", ";"),
        PinnedTable("Arix1986/KeepML101", "5ac118ed90e9ca1747b9d4e2a7ada505eb2deeb6",
                    "data/airbnb_test.csv",
                    "4b243ae48049434cdf9c9cf4d68655eeda16cb201598c40051c761ce5dd9e685", ";"),
    ),
    photos=PinnedPhotos("mcpade/practica_DeepLearning", "e41318fbfc47ec756281cfdf2fb5cbda09cb8806",
                        "imagenes", MANIFEST_DIR / "mcpade-photos-e41318f.csv.gz"),
)


def sources_of(options: FetchOptions) -> GithubSources:
    return options.github_sources or DEFAULT_GITHUB_SOURCES


def dataset_of(options: FetchOptions) -> DatasetSet:
    return options.dataset or REPORTS_SET


# --------------------------------------------------------------------------- tables


def fetch_github_tables(options: FetchOptions, report: FetchReport,
                        staging: Path) -> dict[str, Path]:
    """Make sure every pinned table is at hand and matches its sha256: ``{raw name: path}``.

    A table in ``<dest>/raw/`` with the pinned hash is used as it is; others are downloaded into
    ``staging``. Raises :class:`UnusableSourceError` (hash mismatch) or :class:`DownloadError`,
    in both cases before anything is written into the destination.
    """
    tables: dict[str, Path] = {}
    for table in sources_of(options).tables:
        present = options.raw_dir / table.raw_name
        if present.is_file() and sha256_file(present) == table.sha256:
            logger.info(f"{table.raw_name}: already present in {options.raw_dir}, hash verified")
            report.file(table.raw_name, "already_present")
            tables[table.raw_name] = present
            continue
        target = staging / table.raw_name
        download(table.url(options.url or RAW_FILE_HOST), target, settings=options.settings,
                 max_bytes=options.max_file_bytes, progress=options.progress,
                 finalize=functools.partial(check_sha256, table))
        report.file(table.raw_name, "fetched")
        tables[table.raw_name] = target
    return tables


def check_sha256(table: PinnedTable, path: Path) -> None:
    """Raise :class:`UnusableSourceError` unless ``path`` has the table's pinned sha256."""
    actual = sha256_file(path)
    if actual != table.sha256:
        raise UnusableSourceError(
            f"{table.path} of {table.repo}@{table.commit[:7]}: sha256 mismatch (expected "
            f"{table.sha256}, got {actual}); this is not the pinned file, nothing was written")


def install_tables(tables: dict[str, Path], options: FetchOptions) -> None:
    """Copy staged tables into ``<dest>/raw/`` (atomically) so a rerun need not fetch them."""
    for name, path in tables.items():
        target = options.raw_dir / name
        if path != target:
            with atomic_output(target, fsync=True) as tmp:
                shutil.copyfile(path, tmp)


def read_table(path: Path, delimiter: str, required: Sequence[str],
               report: FetchReport) -> tuple[list[str], list[dict[str, str]]]:
    """The header and the rows (``{column: text}``) of a table; malformed rows are counted.
    Raises :class:`UnusableSourceError` when a ``required`` column is missing."""
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_SIZE_LIMIT))
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = [name.strip() for name in next(reader, [])]
        missing = [name for name in required if name not in header]
        if missing:
            raise UnusableSourceError(f"{path.name}: missing column(s) {', '.join(missing)}; "
                                      f"header starts {header[:6]}")
        rows = []
        for record in reader:
            if len(record) == len(header):
                rows.append(dict(zip(header, record, strict=True)))
            elif record:
                report.drop_listing(record[0], "malformed_row",
                                    f"{path.name} line {reader.line_num}: {len(record)} fields, "
                                    f"header has {len(header)}")
    return header, rows


def index_by_location(rows: list[dict[str, str]]) -> dict[tuple[str, str], dict[str, str] | None]:
    """``{(Latitude text, Longitude text): row}``; a key held by differing rows maps to None."""
    index: dict[tuple[str, str], dict[str, str] | None] = {}
    for row in rows:
        key = tuple(row[name] for name in JOIN_KEY)
        if key in index and index[key] != row:
            index[key] = None
        else:
            index.setdefault(key, row)
    return index


def join_tables(tables: dict[str, Path], sources: GithubSources,
                report: FetchReport) -> tuple[list[str], list[tuple[str, dict[str, str]]]]:
    """Join the listings table to the more-columns tables; keep Madrid listings with a price.
    Returns the output columns (export order) and ``(raw ID, {column: text})`` per kept listing."""
    header, listings = read_table(tables[sources.listings.raw_name], sources.listings.delimiter,
                                  (ID_COLUMN, "City", "Price", *JOIN_KEY), report)
    columns = set(header)
    extra_rows: list[dict[str, str]] = []
    for table in sources.more_columns:
        extra_header, rows = read_table(tables[table.raw_name], table.delimiter, JOIN_KEY, report)
        columns |= set(extra_header)
        extra_rows.extend(rows)
    index = index_by_location(extra_rows)
    kept = []
    for row in listings:
        report.source_rows += 1
        reason = _excluded(row, index)
        if reason:
            report.exclude(reason)
            continue
        kept.append((row[ID_COLUMN], {**index[tuple(row[name] for name in JOIN_KEY)], **row}))
    return [name for name in OPENDATASOFT_COLUMNS if name in columns], kept


def _excluded(row: dict[str, str], index: dict) -> str | None:
    """Why a listings-table row is left out, or None to keep it."""
    if row["City"].strip() != CITY:
        return "not_in_madrid"
    price = parse_price(row["Price"])
    if not price > 0:  # NaN too
        return "no_positive_price"
    key = tuple(row[name] for name in JOIN_KEY)
    if key not in index:
        return "no_match_in_more_columns"
    if index[key] is None:
        return "ambiguous_match_in_more_columns"
    return None


# --------------------------------------------------------------------------- photos


@dataclass(frozen=True)
class StagedSource:
    """The verified, joined tables and the photo manifest: checked before ``dest`` is touched."""

    tables: dict[str, Path]
    columns: list[str]
    rows: list[tuple[str, dict[str, str]]]
    manifest: dict[int, PinnedPhoto]


def stage_github(options: FetchOptions, report: FetchReport, staging: Path) -> StagedSource:
    """Fetch and verify the tables (into ``staging``), join them and read the manifest.
    Raises :class:`UnusableSourceError` or :class:`DownloadError`; writes nothing into ``dest``."""
    sources = sources_of(options)
    tables = fetch_github_tables(options, report, staging)
    columns, rows = join_tables(tables, sources, report)
    return StagedSource(tables, columns, rows, load_manifest(sources.photos.manifest))


def fetch_github(options: FetchOptions, report: FetchReport, staged: StagedSource) -> None:
    """Keep the verified tables in ``raw/``, fetch, check and scale the photos of the set's
    listings, write listings.csv, then compare the result with the set's pinned hashes."""
    install_tables(staged.tables, options)
    manifest, dataset = staged.manifest, dataset_of(options)
    wanted = dataset.ids()
    listings = []
    for listing_id, row in select_listings(staged.rows, report, count_rows=False):
        if listing_id not in manifest:
            report.exclude("no_photo_in_repository")
        elif wanted is not None and listing_id not in wanted:
            report.exclude(f"not_in_{dataset.name}")
        else:
            listings.append((listing_id, row))
    owners = {photo.blob: listing_id for listing_id, photo in manifest.items()}
    photos = sources_of(options).photos
    options.raw_dir.mkdir(parents=True, exist_ok=True)
    with PhotoLedger(options.raw_dir / LEDGER_FILE) as ledger:
        target = PhotoTarget(dataset.scaling, dataset.expected_photos(), ledger)
        jobs = [functools.partial(fetch_photo, listing_id, manifest[listing_id], photos, options,
                                  owners, target) for listing_id, _ in listings]
        outcomes = run_photo_jobs(jobs, options, report)
    with_photo = {outcome.listing_id for outcome in outcomes if outcome.status != "failed"}
    kept = sorted((item for item in listings if item[0] in with_photo), key=lambda item: item[0])
    listings_path = options.dest / LISTINGS_FILE
    report.written = write_listings_csv(listings_path, csv_rows(staged.columns, kept),
                                        staged.columns)
    report.identity = set_identity(dataset, outcomes, {item[0] for item in kept},
                                   listings_path)


def csv_rows(columns: Sequence[str],
             listings: Sequence[tuple[int, dict[str, str]]]) -> list[list[str]]:
    """The ``listings.csv`` rows (text, ``columns`` order, ID first) of ``(ID, row)`` listings."""
    return [[str(listing_id)] + [row.get(name, "") for name in columns[1:]]
            for listing_id, row in listings]

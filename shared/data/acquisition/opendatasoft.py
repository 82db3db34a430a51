"""The ``opendatasoft`` source: the Madrid CSV export of ``airbnb-listings`` plus listing photos.

The export is kept verbatim in ``raw/`` and re-written as ``listings.csv`` with exactly the 89
columns in canonical order, values unchanged (extra columns are logged, a missing one makes the
source unusable). Photos come from ``Picture Url``, else ``Thumbnail Url`` (http(s) only), must
decode (non-JPEG is re-encoded); a listing whose photo fails stays in ``listings.csv``.
"""

from __future__ import annotations

import logging
import csv
import functools
import urllib.parse
from pathlib import Path

from shared.data.schema import CSV_SEPARATOR, LISTINGS_FILE, OPENDATASOFT_COLUMNS

from .base import FetchOptions, UnusableSourceError, ensure_source_file, run_photo_jobs
from .http import ContentError, DownloadError, download
from .layout import (normalize_photo, photo_is_valid, photo_path, select_listings,
                     write_listings_csv)
from .report import FetchReport, PhotoOutcome

logger = logging.getLogger(__name__)

OPENDATASOFT_EXPORT_URL = (
    "https://public.opendatasoft.com/explore/dataset/airbnb-listings/download/?format=csv"
    "&disjunctive.host_verifications=true&disjunctive.amenities=true&disjunctive.features=true"
    "&refine.country=Spain&q=Madrid&timezone=Europe/London&use_labels_for_header=true"
    "&csv_separator=%3B"
)

EXPORT_FILE = "opendatasoft-export.csv"
PHOTO_COLUMNS = ("Picture Url", "Thumbnail Url")
_DELIMITERS = (CSV_SEPARATOR, ",", "\t")
_FIELD_SIZE_LIMIT = 64 * 2**20


def fetch_opendatasoft(options: FetchOptions, report: FetchReport) -> None:
    """Fetch the export into ``raw/``, every photo into ``images/``, then write ``listings.csv``."""
    export_path = options.raw_dir / EXPORT_FILE
    export_url = options.url or OPENDATASOFT_EXPORT_URL
    ensure_source_file(export_path, export_url, check_export, options, report)
    rows = read_export(export_path, report, options)
    listings = select_listings(((row[0], row) for row in rows), report)
    fetch_photos(listings, options, report)
    report.written = write_listings_csv(options.dest / LISTINGS_FILE,
                                        ([str(listing_id)] + row[1:] for listing_id, row in listings))


# --------------------------------------------------------------------------- the export


def _open_export(path: Path):
    return open(path, encoding="utf-8-sig", newline="", errors="replace")


def _sniff_delimiter(first_line: str) -> str:
    counts = {delimiter: first_line.count(delimiter) for delimiter in _DELIMITERS}
    return max(counts, key=counts.get)


def _read_header(path: Path) -> tuple[list[str], str]:
    with _open_export(path) as handle:
        first_line = handle.readline()
    if first_line.lstrip().lower().startswith(("<!doctype html", "<html", "<")):
        raise ContentError("invalid_content", f"{path.name}: got an HTML page instead of the CSV "
                           "export (an error or maintenance page?)")
    delimiter = _sniff_delimiter(first_line)
    header = next(csv.reader([first_line], delimiter=delimiter), [])
    return [name.strip() for name in header], delimiter


def check_export(path: Path) -> None:
    """Raise unless the export's header holds all 89 OpenDataSoft columns."""
    header, _ = _read_header(path)
    missing = [name for name in OPENDATASOFT_COLUMNS if name not in header]
    if missing:
        raise UnusableSourceError(
            f"{path.name}: the CSV export lacks {len(missing)} of the 89 OpenDataSoft columns "
            f"({', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}); header starts "
            f"{header[:5]}")


def read_export(path: Path, report: FetchReport, options: FetchOptions) -> list[list[str]]:
    """The export's rows with the 89 columns in canonical order (malformed rows are dropped)."""
    header, delimiter = _read_header(path)
    positions = [header.index(name) for name in OPENDATASOFT_COLUMNS]
    ignored = [name for name in header if name not in OPENDATASOFT_COLUMNS]
    if ignored:
        logger.info(f"{path.name}: ignoring {len(ignored)} extra column(s): {', '.join(ignored)}")
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_SIZE_LIMIT))
    rows = []
    with _open_export(path) as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        next(reader, None)
        for record in reader:
            if not record:
                continue
            if len(record) != len(header):
                report.source_rows += 1
                report.drop_listing(record[0] if record else "", "malformed_row",
                                    f"{path.name} line {reader.line_num}: {len(record)} fields, "
                                    f"header has {len(header)}")
                continue
            rows.append([record[position] for position in positions])
    if not rows:
        raise UnusableSourceError(f"{path.name}: the CSV export holds no listings")
    return rows


# --------------------------------------------------------------------------- photos


def photo_urls(row: list[str]) -> list[str]:
    """The row's distinct non-empty photo URLs, ``Picture Url`` first."""
    urls: list[str] = []
    for column in PHOTO_COLUMNS:
        url = row[OPENDATASOFT_COLUMNS.index(column)].strip()
        if url and url not in urls:
            urls.append(url)
    return urls


def fetch_photos(listings: list[tuple[int, list[str]]], options: FetchOptions,
                 report: FetchReport) -> None:
    """Fetch every listing's photo with ``options.workers`` threads, recording each outcome."""
    run_photo_jobs([functools.partial(fetch_photo, listing_id, photo_urls(row), options)
                    for listing_id, row in listings], options, report)


def fetch_photo(listing_id: int, urls: list[str], options: FetchOptions) -> PhotoOutcome:
    """Make sure ``images/<ID>.jpg`` holds a decodable JPEG; try each URL in turn."""
    path = photo_path(options.images_dir, listing_id)
    if photo_is_valid(path):
        return PhotoOutcome(listing_id, "already_present")
    if not urls:
        return PhotoOutcome(listing_id, "failed", "no_url",
                            detail=f"listing {listing_id} has no {' or '.join(PHOTO_COLUMNS)}")
    errors: list[DownloadError] = []
    for url in urls:
        try:
            _download_photo(url, path, options)
            return PhotoOutcome(listing_id, "fetched", url=url)
        except DownloadError as error:
            errors.append(error)
    return _failure(listing_id, errors)


def _download_photo(url: str, path: Path, options: FetchOptions) -> None:
    if urllib.parse.urlparse(url).scheme not in ("http", "https"):
        raise DownloadError(url, "bad_url", "photo URLs must be http(s)")
    download(url, path, settings=options.settings, max_bytes=options.max_photo_bytes,
             finalize=normalize_photo)


def _failure(listing_id: int, errors: list[DownloadError]) -> PhotoOutcome:
    """One failed outcome: the first transient error if any (a rerun may fix it), else the first."""
    chosen = next((error for error in errors if error.retryable), errors[0])
    detail = "; ".join(f"{error.url}: {error.detail}" for error in errors)
    return PhotoOutcome(listing_id, "failed", chosen.reason, url=chosen.url,
                        detail=f"listing {listing_id}: {detail}", transient=chosen.retryable)

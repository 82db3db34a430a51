"""Fetch the real Airbnb Madrid dataset from its public sources into the canonical layout.

Sources (``airbnb-dl data fetch --source ...``): ``github`` (default, :mod:`.github`: pinned
public commits, by default the reports' set byte for byte, :mod:`.sets`), ``drive``
(:mod:`.drive`: the original student's arrays, read by a restricted unpickler) and
``opendatasoft`` (:mod:`.opendatasoft`: the CSV export). Invalid or repeated IDs are dropped
and counted. ``<dest>`` gets ``listings.csv`` (written last), ``images/<ID>.jpg``,
``fetch_report.json`` and ``raw/`` (the downloaded source files, so a rerun skips them).

Reruns resume; every file is written through a temporary file renamed into place. The report's
``exit_code`` is 0 when complete, 1 when a rerun may fix a failure, 2 when a source is unusable.
"""

from __future__ import annotations

from shared.data.schema import parse_listing_id

from .base import (DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_PHOTO_BYTES, RAW_DIR, DestinationError,
                   FetchOptions, UnusableSourceError)
from .drive import (DRIVE_FOLDER_URL, DRIVE_IMAGES_FILE_ID, DRIVE_IMAGES_URL, FINAL_DATA_URL)
from .fetch import (DEFAULT_SOURCE, DEFAULT_SOURCE_URLS, SOURCES, check_destination,
                    fetch_dataset, source_locations)
from .github import DEFAULT_GITHUB_SOURCES, GithubSources, PinnedPhotos, PinnedTable
from .http import DownloadError
from .layout import format_csv_row, format_value, photo_is_valid, photo_path, write_listings_csv
from .opendatasoft import OPENDATASOFT_EXPORT_URL
from .report import REPORT_FILE, FetchReport, PhotoOutcome, format_summary
from .sets import (ALL_LISTINGS, REPORTS_LISTINGS_SHA256, REPORTS_SET, DatasetSet,
                   PhotoScaling)

__all__ = [
    "ALL_LISTINGS", "REPORTS_LISTINGS_SHA256", "REPORTS_SET", "DatasetSet", "PhotoScaling",
    "DEFAULT_GITHUB_SOURCES", "DEFAULT_MAX_FILE_BYTES", "DEFAULT_MAX_PHOTO_BYTES",
    "DEFAULT_SOURCE", "DEFAULT_SOURCE_URLS", "DRIVE_FOLDER_URL", "DRIVE_IMAGES_FILE_ID",
    "DRIVE_IMAGES_URL", "FINAL_DATA_URL", "OPENDATASOFT_EXPORT_URL", "RAW_DIR", "REPORT_FILE",
    "SOURCES", "DestinationError", "DownloadError", "FetchOptions", "FetchReport",
    "GithubSources", "PhotoOutcome", "PinnedPhotos", "PinnedTable", "UnusableSourceError",
    "check_destination", "fetch_dataset", "format_csv_row", "format_summary", "format_value",
    "parse_listing_id", "photo_is_valid", "photo_path", "source_locations",
    "write_listings_csv",
]

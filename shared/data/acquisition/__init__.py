"""Fetch the real Airbnb Madrid dataset from its public sources into the canonical layout.

Three sources (``airbnb-dl data fetch --source github|drive|opendatasoft``):

``github`` (default, :mod:`.github`)
    Madrid listings (48 OpenDataSoft columns) and their photos, rebuilt from three public GitHub
    repositories read at pinned commits: each table checked against its pinned sha256, each
    photo against its pinned git blob id, then scaled to a 224 px shorter side. Only listings
    with a good photo are written. By default the *set* built is the reports' dataset,
    ``airbnb-madrid-10k`` (10,351 listings), byte for byte: each scaled photo and
    ``listings.csv`` checked against shipped hashes; ``--all`` builds every listing (12,232)
    the same way (:mod:`.sets`).
``drive`` (:mod:`.drive`)
    What the original student published: ``final_data.npy`` (1000 listings x the 89 OpenDataSoft
    columns, a pickled object array, on GitHub) and ``images.npy`` (uint8 ``(1000, 224, 224, 3)``,
    row *i* is the photo of listing *i*, on Google Drive, fetched with gdown). Both are kept in
    ``<dest>/raw/`` and converted into ``listings.csv`` + ``images/<ID>.jpg`` (JPEG quality 95).
    The pickle is read with a restricted unpickler (:mod:`.safe_pickle`), never ``allow_pickle``.
``opendatasoft`` (:mod:`.opendatasoft`)
    The Madrid CSV export of the OpenDataSoft ``airbnb-listings`` dataset (kept verbatim in
    ``<dest>/raw/``), re-written with the 89 columns in canonical order, plus every listing's photo
    from ``Picture Url`` (falling back to ``Thumbnail Url``). Many 2017 photo URLs are dead: those
    listings *stay* in ``listings.csv`` without a photo (tabular models can still use them; the
    loader drops listings without a photo for image models and reports why). Each failure is
    counted by reason in the report.

In every case listings whose ID is not a positive integer are dropped (an ID is never used as a
path otherwise), as are repeated IDs after the first; both are counted in the report.

Result (the canonical layout of :mod:`shared.data.schema`, plus bookkeeping)::

    <dest>/listings.csv         written last, atomically
    <dest>/images/<ID>.jpg      one photo per listing that has one
    <dest>/fetch_report.json    summary: what was fetched, already present, failed and why
    <dest>/raw/                 the downloaded source files, so a rerun does not fetch them again
                                (github: also scaled-photos.csv, what each photo was made from)

Reruns resume: complete files are skipped, everything is written through a temporary file renamed
into place, so an interrupted run leaves no truncated file behind. ``fetch_report.json``
``exit_code`` is 0 when the dataset is complete, 1 when something failed that a rerun may fix
(for ``github``: also when a listing was dropped for its photo), 2 when a source is unusable.

The package is split by job: :mod:`.fetch` (entry point), :mod:`.base` (options, raw files,
photo worker pool), :mod:`.report`, :mod:`.layout` (IDs, photos, ``listings.csv``), :mod:`.http`
(downloads), :mod:`.sets` (the sets the ``github`` source builds), one module per source.
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

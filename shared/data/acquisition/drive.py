"""The ``drive`` source: the student's ``final_data.npy`` + ``images.npy``, converted to the layout.

``final_data.npy`` (``--url``): object array ``(N, 89)``, column 0 the ID, read with the
restricted unpickler only. ``images.npy`` (Google Drive via gdown, or ``--images-url``): uint8
``(N, H, W, 3)``, row *i* the photo of row *i*, size checked against its header, memory-mapped.
Both stay in ``<dest>/raw/``; each photo becomes ``images/<ID>.jpg`` (JPEG quality 95).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import gdown

import numpy as np
from PIL import Image

from shared.data.schema import LISTINGS_FILE, OPENDATASOFT_COLUMNS

from .base import (FetchOptions, UnusableSourceError, download_source, ensure_file,
                   ensure_source_file, iter_progress)
from .http import ContentError, DownloadError, atomic_output
from .layout import (format_value, photo_is_valid, photo_path, save_jpeg, select_listings,
                     write_listings_csv)
from .report import FetchReport, PhotoOutcome
from .safe_pickle import (NpyFormatError, NpyHeader, NpyTruncatedError, UnsafePickleError,
                          inspect_npy, load_npy)

FINAL_DATA_URL = "https://github.com/rogebautista/deep-learning-rogelio/raw/main/final_data.npy"
DRIVE_IMAGES_FILE_ID = "1Q4vXGfU2p2qsJCdsNpCGJJctgOlt-Egv"
DRIVE_FOLDER_ID = "1ynMp6ToLKZjNRISeFk8OaEzpXSSYU-sB"
DRIVE_IMAGES_URL = f"https://drive.google.com/uc?id={DRIVE_IMAGES_FILE_ID}"
DRIVE_FOLDER_URL = f"https://drive.google.com/drive/folders/{DRIVE_FOLDER_ID}"

FINAL_DATA_FILE = "final_data.npy"
IMAGES_FILE = "images.npy"

MANUAL_IMAGES_HINT = (f"download {IMAGES_FILE} by hand from {DRIVE_FOLDER_URL} and pass "
                      f"--images-url /path/to/{IMAGES_FILE}")


def fetch_drive(options: FetchOptions, report: FetchReport) -> None:
    """Fetch ``final_data.npy`` and ``images.npy`` into ``raw/`` and convert them to the layout."""
    final_path = options.raw_dir / FINAL_DATA_FILE
    final_url = options.url or FINAL_DATA_URL
    ensure_source_file(final_path, final_url, load_final_data, options, report)
    table = load_final_data(final_path)

    images_path = options.raw_dir / IMAGES_FILE
    ensure_file(images_path, lambda path: check_images_npy(path, len(table)),
                lambda path: _fetch_images(path, len(table), options), options, report)
    convert_to_layout(table, images_path, options, report)


# --------------------------------------------------------------------------- checks


def _npy_problem(error: NpyFormatError) -> Exception:
    """Map a .npy format problem to a retryable content error or an unusable source."""
    if isinstance(error, NpyTruncatedError):
        return ContentError("incomplete", str(error), retryable=True)
    if error.looks_like_html:
        return ContentError("invalid_content", str(error))
    return UnusableSourceError(str(error))


def load_final_data(path: Path) -> np.ndarray:
    """Load ``final_data.npy`` safely and check it is an ``(N, 89)`` table; raise otherwise."""
    try:
        table = load_npy(path)
    except UnsafePickleError as error:
        raise UnusableSourceError(f"{FINAL_DATA_FILE} ({path}): {error}") from error
    except NpyFormatError as error:
        raise _npy_problem(error) from error
    columns = len(OPENDATASOFT_COLUMNS)
    if table.ndim != 2 or table.shape[1] != columns or table.shape[0] == 0:
        raise UnusableSourceError(f"{FINAL_DATA_FILE}: expected a table of N listings x {columns} "
                                  f"OpenDataSoft columns, got shape {table.shape}")
    return table


def check_images_npy(path: Path, rows: int) -> NpyHeader:
    """Check ``images.npy`` is a complete uint8 ``(rows, H, W, 3)`` array; raise otherwise."""
    try:
        header = inspect_npy(path)
    except NpyFormatError as error:
        raise _npy_problem(error) from error
    shape = header.shape
    if header.dtype != np.uint8 or len(shape) != 4 or shape[3] != 3 or min(shape[1:3]) < 1:
        raise UnusableSourceError(f"{IMAGES_FILE}: expected a uint8 array (N, height, width, 3), "
                                  f"got dtype {header.dtype} and shape {shape}")
    if shape[0] != rows:
        raise UnusableSourceError(f"{IMAGES_FILE} holds {shape[0]} images but {FINAL_DATA_FILE} "
                                  f"holds {rows} listings: row i must be the photo of listing i")
    return header


# --------------------------------------------------------------------------- images.npy


def _fetch_images(path: Path, rows: int, options: FetchOptions) -> None:
    def check(candidate: Path) -> None:
        check_images_npy(candidate, rows)

    if options.images_url:
        download_source(options.images_url, path, check, options)
    else:
        gdown_download(DRIVE_IMAGES_FILE_ID, path, check, options)


def gdown_download(file_id: str, path: Path, check: Any, options: FetchOptions) -> None:
    """Download a Google Drive file with gdown into a temporary file, check it, rename it."""
    with atomic_output(path, fsync=True) as tmp:
        tmp.unlink()  # gdown creates the output itself
        try:
            result = gdown.download(id=file_id, output=str(tmp), quiet=not options.progress,
                                    **_gdown_options(gdown.download, options))
        except Exception as error:  # gdown raises its own, requests' and OS errors alike
            raise DownloadError(DRIVE_IMAGES_URL, "gdown",
                                f"gdown failed ({type(error).__name__}: {error}); "
                                f"{MANUAL_IMAGES_HINT}") from error
        if result is None or not tmp.is_file():
            raise DownloadError(DRIVE_IMAGES_URL, "gdown",
                                f"gdown produced no file; {MANUAL_IMAGES_HINT}")
        size = tmp.stat().st_size
        if size > options.max_file_bytes:
            raise DownloadError(DRIVE_IMAGES_URL, "too_large",
                                f"{size} bytes exceeds the limit of {options.max_file_bytes}")
        try:
            check(tmp)
        except ContentError as error:
            raise DownloadError(DRIVE_IMAGES_URL, error.reason,
                                f"{error.detail}; {MANUAL_IMAGES_HINT}") from error


def _gdown_options(function: Any, options: FetchOptions) -> dict[str, Any]:
    """Timeout/retry options for the installed gdown version (older ones lack them)."""
    wanted = {"timeout": options.settings.timeout, "retries": options.settings.retries}
    accepted = inspect.signature(function).parameters
    return {name: value for name, value in wanted.items() if name in accepted}


# --------------------------------------------------------------------------- conversion


def convert_to_layout(table: np.ndarray, images_path: Path, options: FetchOptions,
                      report: FetchReport) -> None:
    """Write ``images/<ID>.jpg`` for every valid listing, then ``listings.csv``."""
    images = np.load(images_path, mmap_mode="r", allow_pickle=False)
    listings = select_listings(((table[row, 0], row) for row in range(len(table))), report)
    options.images_dir.mkdir(parents=True, exist_ok=True)
    for listing_id, row in iter_progress(listings, options, "photos"):
        report.photo(_write_photo(listing_id, images[row], options.images_dir))
    report.written = write_listings_csv(
        options.dest / LISTINGS_FILE,
        ([str(listing_id)] + [format_value(value) for value in table[row, 1:]]
         for listing_id, row in listings))


def _write_photo(listing_id: int, pixels: np.ndarray, images_dir: Path) -> PhotoOutcome:
    path = photo_path(images_dir, listing_id)
    if photo_is_valid(path):
        return PhotoOutcome(listing_id, "already_present")
    with atomic_output(path) as tmp:
        save_jpeg(Image.fromarray(np.ascontiguousarray(pixels)), tmp)
    return PhotoOutcome(listing_id, "fetched")

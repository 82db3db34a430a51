"""Fetch the real Airbnb Madrid dataset from its public sources into the canonical layout.

Two sources (``airbnb-dl data fetch --source drive|opendatasoft``):

``drive`` (default)
    What the original student published: ``final_data.npy`` (1000 listings x the 89 OpenDataSoft
    columns, a pickled object array, on GitHub) and ``images.npy`` (uint8 ``(1000, 224, 224, 3)``,
    row *i* is the photo of listing *i*, on Google Drive, fetched with gdown). Both are kept in
    ``<dest>/raw/`` and converted into ``listings.csv`` + ``images/<ID>.jpg`` (JPEG quality 95).
    The pickle is read with a restricted unpickler (:mod:`.safe_pickle`), never ``allow_pickle``.
``opendatasoft``
    The Madrid CSV export of the OpenDataSoft ``airbnb-listings`` dataset (kept verbatim in
    ``<dest>/raw/``), re-written with the 89 columns in canonical order, plus every listing's photo
    from ``Picture Url`` (falling back to ``Thumbnail Url``). Many 2017 photo URLs are dead: those
    listings *stay* in ``listings.csv`` without a photo (tabular models can still use them; the
    loader drops listings without a photo for image models and reports why). Each failure is
    counted by reason in the report.

In both cases listings whose ID is not a positive integer are dropped (an ID is never used as a
path otherwise), as are repeated IDs after the first; both are counted in the report.

Result (the canonical layout of :mod:`shared.schema`, plus bookkeeping)::

    <dest>/listings.csv         written last, atomically
    <dest>/images/<ID>.jpg      one photo per listing that has one
    <dest>/fetch_report.json    summary: what was fetched, already present, failed and why
    <dest>/raw/                 the downloaded source files, so a rerun does not fetch them again

Reruns resume: complete files are skipped (a photo is skipped when it decodes), everything is
written through a temporary file renamed into place, so an interrupted run leaves no truncated
file behind. ``fetch_report.json`` ``exit_code`` is 0 when the dataset is complete (dead photo
URLs and invalid IDs are expected and allowed), 1 when something failed that a rerun may fix, 2
when a source is unusable (wrong columns or shape, refused pickle).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from shared.schema import CSV_SEPARATOR, IMAGES_DIR, LISTINGS_FILE, OPENDATASOFT_COLUMNS

from .http import (ContentError, DownloadError, HttpSettings, atomic_output, download,
                   remove_stale_parts, write_text_atomic)

__all__ = [
    "DEFAULT_SOURCE_URLS", "SOURCES", "DownloadError", "UnusableSourceError",
    "DestinationError", "fetch_dataset", "format_summary", "source_locations",
]

SOURCES = ("drive", "opendatasoft")

FINAL_DATA_URL = "https://github.com/rogebautista/deep-learning-rogelio/raw/main/final_data.npy"
DRIVE_IMAGES_FILE_ID = "1Q4vXGfU2p2qsJCdsNpCGJJctgOlt-Egv"
DRIVE_FOLDER_ID = "1ynMp6ToLKZjNRISeFk8OaEzpXSSYU-sB"
DRIVE_IMAGES_URL = f"https://drive.google.com/uc?id={DRIVE_IMAGES_FILE_ID}"
DRIVE_FOLDER_URL = f"https://drive.google.com/drive/folders/{DRIVE_FOLDER_ID}"
OPENDATASOFT_EXPORT_URL = (
    "https://public.opendatasoft.com/explore/dataset/airbnb-listings/download/?format=csv"
    "&disjunctive.host_verifications=true&disjunctive.amenities=true&disjunctive.features=true"
    "&refine.country=Spain&q=Madrid&timezone=Europe/London&use_labels_for_header=true"
    "&csv_separator=%3B"
)

#: What each source downloads by default: {source: {item: location}}.
DEFAULT_SOURCE_URLS: dict[str, dict[str, str]] = {
    "drive": {"final_data.npy": FINAL_DATA_URL, "images.npy": DRIVE_IMAGES_URL},
    "opendatasoft": {"listings export": OPENDATASOFT_EXPORT_URL,
                     "photos": "each listing's 'Picture Url' (else 'Thumbnail Url') in the export"},
}

RAW_DIR = "raw"
REPORT_FILE = "fetch_report.json"
DEFAULT_MAX_PHOTO_BYTES = 20 * 2**20
DEFAULT_MAX_FILE_BYTES = 2**30
JPEG_QUALITY = 95
MAX_FAILURES_LISTED = 5000  # per-listing failure entries kept in fetch_report.json


class UnusableSourceError(Exception):
    """A source file was fetched but cannot be used (wrong columns or shape, refused pickle...)."""


class DestinationError(ValueError):
    """The destination folder holds something ``data fetch`` must not overwrite."""


@dataclass(frozen=True)
class FetchOptions:
    """Everything a source module needs to fetch into ``dest``."""

    dest: Path
    settings: HttpSettings
    url: str | None = None
    images_url: str | None = None
    workers: int = 4
    progress: bool = True
    max_photo_bytes: int = DEFAULT_MAX_PHOTO_BYTES
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    log: Callable[[str], None] = print

    @property
    def raw_dir(self) -> Path:
        return self.dest / RAW_DIR

    @property
    def images_dir(self) -> Path:
        return self.dest / IMAGES_DIR


@dataclass(frozen=True)
class PhotoOutcome:
    """What happened to one listing's photo: ``fetched``, ``already_present`` or ``failed``."""

    listing_id: int
    status: str
    reason: str = ""
    url: str = ""
    detail: str = ""
    transient: bool = False


# --------------------------------------------------------------------------- report


@dataclass
class FetchReport:
    """Accumulates the outcome of a fetch; :meth:`finish` turns it into the summary dict."""

    source: str
    dest: Path
    locations: dict[str, str]
    started: float = field(default_factory=time.time)
    files: dict[str, str] = field(default_factory=dict)
    source_rows: int = 0
    written: int = 0
    dropped: Counter = field(default_factory=Counter)
    photos: Counter = field(default_factory=Counter)
    photo_failures: Counter = field(default_factory=Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)
    status: str = "in_progress"
    error: str | None = None

    def file(self, name: str, status: str) -> None:
        """Record a source file as ``fetched`` or ``already_present``."""
        self.files[name] = status

    def drop_listing(self, raw_id: Any, reason: str, detail: str) -> None:
        """Record a source row left out of listings.csv (invalid or repeated ID, malformed row)."""
        self.dropped[reason] += 1
        self._add_failure({"listing_id": str(raw_id), "reason": reason, "detail": detail})

    def photo(self, outcome: PhotoOutcome) -> None:
        """Record the outcome of one listing's photo."""
        if outcome.status != "failed":
            self.photos[outcome.status] += 1
            return
        self.photos["failed"] += 1
        self.photo_failures[outcome.reason] += 1
        self.photos["transient_failures"] += outcome.transient
        self._add_failure({"listing_id": str(outcome.listing_id), "reason": outcome.reason,
                           "url": outcome.url, "detail": outcome.detail,
                           "transient": outcome.transient})

    def fail(self, status: str, message: str) -> None:
        """Record a failure that stopped the fetch: status ``failed`` or ``unusable``."""
        self.status, self.error = status, message

    def _add_failure(self, entry: dict[str, Any]) -> None:
        if len(self.failures) < MAX_FAILURES_LISTED:
            self.failures.append(entry)

    def finish(self) -> dict[str, Any]:
        """Settle the final status and return the summary."""
        if self.status == "in_progress":
            self.status = "incomplete" if self.photos["transient_failures"] else "complete"
        return self.summary()

    def summary(self) -> dict[str, Any]:
        exit_codes = {"complete": 0, "unusable": 2}
        return {
            "source": self.source,
            "dest": str(self.dest),
            "locations": self.locations,
            "status": self.status,
            "exit_code": exit_codes.get(self.status, 1),
            "error": self.error,
            "started_at": _iso(self.started),
            "finished_at": _iso(time.time()),
            "seconds": round(time.time() - self.started, 2),
            "files": self.files,
            "listings": {"source_rows": self.source_rows, "written": self.written,
                         "dropped": dict(self.dropped)},
            "photos": {"total": self.written,
                       "fetched": self.photos["fetched"],
                       "already_present": self.photos["already_present"],
                       "failed": self.photos["failed"],
                       "transient_failures": self.photos["transient_failures"],
                       "failed_by_reason": dict(sorted(self.photo_failures.items()))},
            "failures": self.failures,
        }

    def write(self, summary: dict[str, Any] | None = None) -> Path:
        """Write the summary (or the in-progress state) to ``<dest>/fetch_report.json`` atomically."""
        path = self.dest / REPORT_FILE
        write_text_atomic(path, json.dumps(summary or self.summary(), indent=2) + "\n")
        return path


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable lines for a fetch summary."""
    listings, photos = summary["listings"], summary["photos"]
    lines = [f"fetch summary ({summary['source']} -> {summary['dest']}): {summary['status']}"]
    if summary["error"]:
        lines.append(f"  error: {summary['error']}")
    for name, status in summary["files"].items():
        lines.append(f"  {name}: {status.replace('_', ' ')}")
    dropped = _counts(listings["dropped"])
    lines.append(f"  listings.csv: {listings['written']} listings"
                 + (f" (dropped: {dropped})" if dropped else ""))
    failed = _counts(photos["failed_by_reason"])
    lines.append(f"  photos: {photos['fetched']} fetched, {photos['already_present']} already "
                 f"present, {photos['failed']} failed" + (f" ({failed})" if failed else ""))
    if photos["transient_failures"]:
        lines.append(f"  {photos['transient_failures']} photo failures may be transient: "
                     "rerun the same command to retry them")
    lines.append(f"  report: {Path(summary['dest']) / REPORT_FILE}")
    return "\n".join(lines)


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in counter.items())


# --------------------------------------------------------------------------- canonical layout


_ID_PATTERN = re.compile(r"[0-9]{1,18}")


def parse_listing_id(value: Any) -> int | None:
    """The listing ID as a positive int, or None when ``value`` is not a positive integer."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        value = int(value) if value.is_integer() else None
    elif isinstance(value, str):
        text = value.strip()
        value = int(text) if _ID_PATTERN.fullmatch(text) else None
    if isinstance(value, int) and value > 0:
        return value
    return None


def select_listings(rows: Iterable[tuple[Any, Any]], report: FetchReport) -> list[tuple[int, Any]]:
    """Keep ``(raw_id, payload)`` rows with a valid, first-seen ID as ``(id, payload)``."""
    kept: list[tuple[int, Any]] = []
    seen: set[int] = set()
    for raw_id, payload in rows:
        report.source_rows += 1
        listing_id = parse_listing_id(raw_id)
        if listing_id is None:
            report.drop_listing(raw_id, "invalid_id",
                                f"listing ID {raw_id!r} is not a positive integer; row dropped")
        elif listing_id in seen:
            report.drop_listing(raw_id, "duplicate_id",
                                f"listing ID {listing_id} appears again; later row dropped")
        else:
            seen.add(listing_id)
            kept.append((listing_id, payload))
    return kept


def photo_path(images_dir: Path, listing_id: int) -> Path:
    """``images/<ID>.jpg``; only ever called with an ID that passed :func:`parse_listing_id`."""
    if not isinstance(listing_id, int) or isinstance(listing_id, bool) or listing_id <= 0:
        raise ValueError(f"refusing to build a photo path from listing ID {listing_id!r}")
    return images_dir / f"{listing_id}.jpg"


def check_photo(path: Path) -> str:
    """Return the image format of ``path``; raise ContentError unless it fully decodes."""
    try:
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            image.load()
            if min(image.size) < 1:
                raise ValueError(f"empty image {image.size}")
            return str(image.format)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        head = path.read_bytes()[:15] if path.is_file() else b""
        raise ContentError("invalid_image",
                           f"not a decodable image ({error}; starts with {head!r})") from error


def photo_is_valid(path: Path) -> bool:
    """True when ``path`` exists and is a JPEG that fully decodes."""
    try:
        return path.is_file() and check_photo(path) == "JPEG"
    except ContentError:
        return False


def save_jpeg(image: Image.Image, path: Path) -> None:
    """Save ``image`` as a high-quality RGB JPEG (quality 95, no chroma subsampling)."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    image.save(path, format="JPEG", quality=JPEG_QUALITY, subsampling=0)


def normalize_photo(path: Path) -> None:
    """Check a downloaded photo; re-encode it as JPEG in place when it is another format."""
    if check_photo(path) == "JPEG":
        return
    with Image.open(path) as image:
        image.seek(0)
        rgb = image.convert("RGB")
    save_jpeg(rgb, path)


def _csv_field(value: str) -> str:
    if any(char in value for char in (CSV_SEPARATOR, '"', "\n", "\r")):
        return '"' + value.replace('"', '""') + '"'
    return value


def format_csv_row(values: Sequence[str]) -> str:
    """One ';'-separated line, quoting fields that contain ';', '"', CR or LF (like the export)."""
    return CSV_SEPARATOR.join(_csv_field(value) for value in values) + "\n"


def write_listings_csv(path: Path, rows: Iterable[Sequence[str]]) -> int:
    """Write ``listings.csv`` (header = the 89 OpenDataSoft columns) atomically; return the row count."""
    count = 0
    with atomic_output(path, fsync=True) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as out:
            out.write(format_csv_row(OPENDATASOFT_COLUMNS))
            for row in rows:
                if len(row) != len(OPENDATASOFT_COLUMNS):
                    raise ValueError(f"row with {len(row)} fields, expected "
                                     f"{len(OPENDATASOFT_COLUMNS)}")
                out.write(format_csv_row(row))
                count += 1
    return count


def format_value(value: Any) -> str:
    """A cell of an object array as export text: NaN/None -> '', 50.0 -> '50.0', 2 -> '2'."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


# --------------------------------------------------------------------------- source files


def ensure_file(path: Path, check: Callable[[Path], Any], fetch: Callable[[Path], Any],
                options: FetchOptions, report: FetchReport) -> None:
    """Skip ``path`` when present and valid per ``check``, else ``fetch`` it (atomically)."""
    if path.is_file():
        try:
            check(path)
        except (ContentError, UnusableSourceError) as error:
            options.log(f"{path} is present but invalid ({error}); fetching it again")
        else:
            options.log(f"{path.name}: already present in {path.parent}, not downloaded again")
            report.file(path.name, "already_present")
            return
    fetch(path)
    report.file(path.name, "fetched")


def download_source(url: str, path: Path, check: Callable[[Path], Any],
                    options: FetchOptions) -> None:
    """Download a raw source file to ``path`` (atomically, durably, within the size limit);
    ``check`` finalises the download (a failing check discards it)."""
    download(url, path, settings=options.settings, max_bytes=options.max_file_bytes,
             finalize=check, progress=options.progress, durable=True)


def ensure_source_file(path: Path, url: str, check: Callable[[Path], Any], options: FetchOptions,
                       report: FetchReport) -> None:
    """:func:`ensure_file` for a raw source file fetched with :func:`download_source`: ``check``
    both validates a present copy and finalises the download."""
    ensure_file(path, check, lambda target: download_source(url, target, check, options),
                options, report)


# --------------------------------------------------------------------------- entry point


def source_locations(source: str, url: str | None = None,
                     images_url: str | None = None) -> dict[str, str]:
    """What ``source`` will download, and from where, after the command-line overrides."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    locations = dict(DEFAULT_SOURCE_URLS[source])
    main_item = next(iter(locations))
    if url:
        locations[main_item] = url
    if images_url:
        if source != "drive":
            raise ValueError("--images-url only applies to --source drive "
                             "(opendatasoft photo URLs come from the export)")
        locations["images.npy"] = images_url
    return locations


def check_destination(dest: Path, source: str, force: bool = False) -> None:
    """Refuse to overwrite a dataset not fetched by us, or fetched from another source."""
    if dest.exists() and not dest.is_dir():
        raise DestinationError(f"destination {dest} exists and is not a folder")
    if force:
        return
    report = dest / REPORT_FILE
    if report.is_file():
        try:
            previous = json.loads(report.read_text(encoding="utf-8")).get("source")
        except (ValueError, OSError, AttributeError):
            previous = None
        if previous and previous != source:
            raise DestinationError(
                f"{dest} holds a dataset fetched from source {previous!r}; fetching {source!r} "
                "there would mix the two: use another --dest (or --force)")
    elif (dest / LISTINGS_FILE).exists():
        raise DestinationError(
            f"{dest} already holds a {LISTINGS_FILE} that `data fetch` did not create (no "
            f"{REPORT_FILE}); refusing to overwrite it: use another --dest (or --force)")


def fetch_dataset(dest: Path, source: str = "drive", url: str | None = None,
                  images_url: str | None = None, workers: int = 4, timeout: float = 30.0,
                  retries: int = 4, progress: bool = True, *, backoff: float = 1.0,
                  max_photo_bytes: int = DEFAULT_MAX_PHOTO_BYTES,
                  max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, force: bool = False,
                  log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """Fetch ``source`` into ``dest`` in the canonical layout; return the summary.

    The summary is also written to ``<dest>/fetch_report.json`` and logged. Fetch problems do not
    raise: they set ``summary["status"]`` (``complete`` / ``incomplete`` / ``failed`` /
    ``unusable``) and ``summary["exit_code"]`` (0 / 1 / 1 / 2). Invalid arguments raise
    ``ValueError``, a destination that must not be overwritten :class:`DestinationError`.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    dest = Path(dest).expanduser().resolve()
    locations = source_locations(source, url, images_url)
    check_destination(dest, source, force)
    options = FetchOptions(dest=dest, settings=HttpSettings(timeout, retries, backoff),
                           url=url, images_url=images_url, workers=workers, progress=progress,
                           max_photo_bytes=max_photo_bytes, max_file_bytes=max_file_bytes,
                           log=log or (lambda message: None))
    options.log(f"fetching the {source} dataset into {dest}")
    for item, location in locations.items():
        options.log(f"  {item}: {location}")
    report = FetchReport(source, dest, locations)
    _prepare(options, report)
    _run_source(source, options, report)
    summary = report.finish()
    report.write(summary)
    options.log(format_summary(summary))
    return summary


def _prepare(options: FetchOptions, report: FetchReport) -> None:
    options.dest.mkdir(parents=True, exist_ok=True)
    report.write()  # marks the folder as ours (and in progress) from the start
    for folder in (options.dest, options.raw_dir, options.images_dir):
        removed = remove_stale_parts(folder)
        if removed:
            options.log(f"removed {removed} partial file(s) left in {folder} by an interrupted run")


def _run_source(source: str, options: FetchOptions, report: FetchReport) -> None:
    if source == "drive":
        from .drive import fetch_drive as fetcher
    else:
        from .opendatasoft import fetch_opendatasoft as fetcher
    try:
        fetcher(options, report)
    except UnusableSourceError as error:
        report.fail("unusable", str(error))
    except DownloadError as error:
        report.fail("failed", f"could not download {error.url} ({error.reason}): {error.detail}")


def iter_progress(items: Sequence[Any], options: FetchOptions, desc: str) -> Iterator[Any]:
    """``items`` wrapped in a tqdm bar when progress is on."""
    yield from tqdm(items, desc=desc, unit="photo", disable=not options.progress)

"""The ``github`` source (the default): the 12,232-listing Madrid set from pinned public commits.

Three public repositories, each read at a pinned commit from the raw-file host
(``https://raw.githubusercontent.com/OWNER/REPO/COMMIT/PATH``, or a mirror given with ``--url``):

* the listings table (``airbnb_data_warehouse.csv``: ID, host, location, room, price ...),
* two tables with more columns (``airbnb_train.csv`` + ``airbnb_test.csv``: availability, fees,
  review scores ..., no ID), joined to the listings on the *same Latitude and Longitude text*,
  the listings table's value winning on the columns both hold,
* one photo per listing (``imagenes/<ID>.jpg``).

Each table must match its pinned sha256 and hold the columns the join needs, else nothing is
written into the destination and the source is unusable (exit 2): the tables are downloaded,
verified and joined in a temporary folder first. Tables are read as text and written back as
text: no value is parsed except the price (to keep listings with a price > 0) and the ID. Listings in Madrid with
a price and a photo in the photo repository are kept; each photo must have the git blob id the
photo manifest pins for it (``data/mcpade-photos-e41318f.csv.gz``, vendored: ``ID,
git_blob_sha1, bytes`` of every photo of the pinned commit) and decode as an image. A listing
whose photo fails (404, HTML page, truncated body, 5xx or timeout after the retries, another
listing's photo ...) is left out of ``listings.csv`` and counted by reason, with its ID, in
``fetch_report.json``. ``listings.csv`` holds the OpenDataSoft columns the tables provide, in
export order (48 with the pinned tables), rows sorted by ID.

Which listings are written and how their photos are prepared is the *set* (:mod:`.sets`): by
default the reports' dataset ``airbnb-madrid-10k`` (its 10,351 listings; each verified original
scaled to a 224 px shorter side, the scaled photo checked against the shipped sha256 manifest,
``listings.csv`` against the pinned sha256), with ``--all`` every listing, scaled the same way. A
scaled photo that differs from its pinned hash (another Pillow, say) is kept when it decodes,
named in one log line with both hashes, and the summary says the set is "not byte-identical to the
reports' dataset" (:func:`set_identity`). ``raw/scaled-photos.csv`` records what each photo was
made from (:class:`PhotoLedger`), so a rerun skips every photo already made.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import io
import json
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from PIL import Image

from shared.data.dataset import check_photo, parse_price
from shared.io import sha256_file
from shared.data.schema import ID_COLUMN, LISTINGS_FILE, OPENDATASOFT_COLUMNS

from .base import FetchOptions, UnusableSourceError, run_photo_jobs
from .http import ContentError, DownloadError, atomic_output, download
from .layout import photo_path, select_listings, write_listings_csv
from .report import MAX_FAILURES_LISTED, FetchReport, PhotoOutcome
from .sets import REPORTS_SET, DatasetSet, ExpectedPhoto, PhotoScaling

RAW_FILE_HOST = "https://raw.githubusercontent.com"
MANIFEST_DIR = Path(__file__).resolve().parent / "data"
MANIFEST_HEADER = ["ID", "git_blob_sha1", "bytes"]
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

    :data:`DEFAULT_GITHUB_SOURCES` holds the real pins; a JSON file with the same fields
    (``airbnb-dl data fetch --pins FILE``, see :meth:`from_json`) replaces them, e.g. to read a
    mirror of other commits or a test server.
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

    A table already in ``<dest>/raw/`` with the pinned hash is used as it is; any other is
    downloaded into ``staging`` (outside the destination). Raises :class:`UnusableSourceError`
    on a hash mismatch and :class:`DownloadError` when a table cannot be downloaded: in both
    cases nothing has been written into the destination.
    """
    tables: dict[str, Path] = {}
    for table in sources_of(options).tables:
        present = options.raw_dir / table.raw_name
        if present.is_file() and sha256_file(present) == table.sha256:
            options.log(f"{table.raw_name}: already present in {options.raw_dir}, hash verified")
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

    Raises :class:`UnusableSourceError` when a ``required`` column is missing.
    """
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

    Returns the output columns (OpenDataSoft export order) and ``(raw ID, {column: text})`` for
    every kept listing, in the listings table's order.
    """
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
class PinnedPhoto:
    """One photo of the manifest: its git blob id (hex sha1) and size in bytes."""

    blob: str
    size: int


def git_blob_id(data: bytes) -> str:
    """Git's id of a file with these bytes: ``sha1(b"blob <size>\\0" + data)`` (hex)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def load_manifest(path: Path) -> dict[int, PinnedPhoto]:
    """``{listing ID: PinnedPhoto}`` from ``ID,git_blob_sha1,bytes`` (plain or ``.gz`` CSV)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            if next(reader, None) != MANIFEST_HEADER:
                raise ValueError(f"header is not {','.join(MANIFEST_HEADER)}")
            return {int(listing_id): PinnedPhoto(blob.lower(), int(size))
                    for listing_id, blob, size in reader}
    except (OSError, ValueError, EOFError) as error:
        raise UnusableSourceError(f"photo manifest {path}: unreadable ({error})") from error


@dataclass(frozen=True)
class StagedSource:
    """The verified tables, joined, and the photo manifest: all checked before ``dest`` is touched.

    ``rows`` are ``(raw ID, {column: text})`` of the kept listings; ``columns`` the output header.
    """

    tables: dict[str, Path]
    columns: list[str]
    rows: list[tuple[str, dict[str, str]]]
    manifest: dict[int, PinnedPhoto]


def stage_github(options: FetchOptions, report: FetchReport, staging: Path) -> StagedSource:
    """Fetch and verify the tables (into ``staging``), join them and read the manifest.

    Raises :class:`UnusableSourceError` or :class:`DownloadError`; writes nothing into ``dest``.
    """
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
    report.identity = set_identity(dataset, outcomes, {item[0] for item in kept}, listings_path,
                                   options.log)


def csv_rows(columns: Sequence[str],
             listings: Sequence[tuple[int, dict[str, str]]]) -> list[list[str]]:
    """The ``listings.csv`` rows (text, ``columns`` order, ID first) of ``(ID, row)`` listings."""
    return [[str(listing_id)] + [row.get(name, "") for name in columns[1:]]
            for listing_id, row in listings]


# --------------------------------------------------------------------------- scaled photos

LEDGER_FILE = "scaled-photos.csv"
LEDGER_HEADER = ["ID", "git_blob_sha1", "recipe", "sha256"]
MAX_DIFFERENCES_LOGGED = 20


class PhotoLedger:
    """What each photo in ``images/`` was made from: ``raw/scaled-photos.csv``, one line per
    photo written (``ID, git blob id of the original, scaling recipe, sha256 of the file``; the
    last line of an ID wins).

    Lines are appended, and flushed, once the photo has been renamed into place; a torn line left
    by a killed run is ignored. A rerun then trusts a present photo whose sha256 is the set's
    pinned one, or that this ledger says was made from the pinned original with the current
    recipe (Pillow version included) and still has the recorded sha256: a set that is not
    byte-identical (another Pillow) or has no pinned photo hashes (``--all``) resumes too.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[int, tuple[str, str, str]] = self._read()
        self._lock = threading.Lock()
        self._handle = None

    def _read(self) -> dict[int, tuple[str, str, str]]:
        entries: dict[int, tuple[str, str, str]] = {}
        if self.path.is_file():
            with open(self.path, encoding="utf-8", newline="") as handle:
                for record in csv.reader(handle):
                    if len(record) == len(LEDGER_HEADER) and record[0].isdigit():
                        entries[int(record[0])] = (record[1], record[2], record[3])
        return entries

    def __enter__(self) -> PhotoLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def matches(self, listing_id: int, blob: str, recipe: str, sha256: str) -> bool:
        return self.entries.get(listing_id) == (blob, recipe, sha256)

    def record(self, listing_id: int, blob: str, recipe: str, sha256: str) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow([listing_id, blob, recipe, sha256])
        with self._lock:
            if self._handle is None:
                self._handle = self._open()
            self._handle.write(buffer.getvalue())
            self._handle.flush()
            self.entries[listing_id] = (blob, recipe, sha256)

    def _open(self):
        size = self.path.stat().st_size if self.path.is_file() else 0
        torn = size > 0 and self.path.read_bytes()[-1:] != b"\n"
        # kept open across records (one append per photo), closed by __exit__
        handle = open(self.path, "a", encoding="utf-8", newline="")  # noqa: SIM115
        if size == 0:
            handle.write(",".join(LEDGER_HEADER) + "\n")
        elif torn:
            handle.write("\n")
        return handle


@dataclass
class PhotoTarget:
    """What every photo of the set must become: the scaling, the pinned hashes of the scaled
    photos (``{ID: ExpectedPhoto}``, may be empty) and the ledger of photos already made."""

    scaling: PhotoScaling
    expected: dict[int, ExpectedPhoto]
    ledger: PhotoLedger

    def present(self, listing_id: int, pinned: PinnedPhoto, path: Path) -> str | None:
        """The sha256 of ``path`` when it is a finished photo of this set, else None."""
        if not path.is_file():
            return None
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        expected = self.expected.get(listing_id)
        if expected is not None and expected.sha256 == sha256:
            return sha256
        if self.ledger.matches(listing_id, pinned.blob, self.scaling.recipe, sha256):
            return sha256
        return None


def fetch_photo(listing_id: int, pinned: PinnedPhoto, photos: PinnedPhotos,
                options: FetchOptions, owners: dict[str, int], target: PhotoTarget) -> PhotoOutcome:
    """Make sure ``images/<ID>.jpg`` holds the set's photo: the pinned original (git blob id,
    full decode) scaled by ``target.scaling``; a finished one is kept."""
    path = photo_path(options.images_dir, listing_id)
    present = target.present(listing_id, pinned, path)
    if present:
        return PhotoOutcome(listing_id, "already_present", sha256=present)
    url = photos.url(listing_id, options.url or RAW_FILE_HOST)
    made: list[str] = []
    try:
        download(url, path, settings=options.settings, max_bytes=options.max_photo_bytes,
                 finalize=scaled_photo_check(listing_id, pinned, owners, target.scaling, made))
    except DownloadError as error:
        return PhotoOutcome(listing_id, "failed", error.reason, url=url,
                            detail=f"listing {listing_id}: {error.detail}",
                            transient=error.retryable)
    target.ledger.record(listing_id, pinned.blob, target.scaling.recipe, made[-1])
    return PhotoOutcome(listing_id, "fetched", url=url, sha256=made[-1])


def scaled_photo_check(listing_id: int, pinned: PinnedPhoto, owners: dict[str, int],
                       scaling: PhotoScaling, made: list[str]) -> Callable[[Path], None]:
    """The finalizer of a photo download: :func:`photo_check` on the original, then replace it
    by its scaled version, which must decode; the scaled file's sha256 is appended to ``made``."""
    check_original = photo_check(listing_id, pinned, owners)

    def finalize(path: Path) -> None:
        check_original(path)
        try:
            data = scaling.scale(path.read_bytes())
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            raise ContentError("unscalable", f"the pinned photo could not be scaled "
                               f"({type(error).__name__}: {error})") from error
        path.write_bytes(data)
        decoded = check_photo(path, convert=False)
        if decoded.reason is not None:
            raise ContentError("unscalable", f"the scaled photo does not decode ({decoded.reason})")
        made.append(hashlib.sha256(data).hexdigest())

    return finalize


def set_identity(dataset: DatasetSet, outcomes: Sequence[PhotoOutcome], written: set[int],
                 listings_path: Path, log: Callable[[str], None]) -> dict:
    """Compare what was written with the set's pinned hashes; log one line per difference.

    ``byte_identical`` is True when ``listings.csv`` has the pinned sha256 and every photo its
    pinned one, False when something differs, None when the set pins no ``listings.csv``.
    """
    expected = dataset.expected_photos()
    counts = {"identical": 0, "differing": 0, "unchecked": 0}
    differences = []
    for outcome in sorted(outcomes, key=lambda item: item.listing_id):
        if outcome.status == "failed":
            continue
        pinned = expected.get(outcome.listing_id)
        if pinned is None:
            counts["unchecked"] += 1
        elif pinned.sha256 == outcome.sha256:
            counts["identical"] += 1
        else:
            counts["differing"] += 1
            differences.append({"listing_id": str(outcome.listing_id),
                                "file": f"images/{outcome.listing_id}.jpg",
                                "expected_sha256": pinned.sha256, "sha256": outcome.sha256})
    for entry in differences[:MAX_DIFFERENCES_LOGGED]:
        log(f"{entry['file']}: sha256 {entry['sha256']} is not the reports' dataset's "
            f"{entry['expected_sha256']} (scaled: {dataset.scaling.recipe}); kept, it decodes")
    if len(differences) > MAX_DIFFERENCES_LOGGED:
        log(f"... and {len(differences) - MAX_DIFFERENCES_LOGGED} more photos differ (listed in "
            "fetch_report.json)")
    wanted = dataset.ids()
    missing = sorted(wanted - written) if wanted is not None else []
    csv_sha256 = sha256_file(listings_path)
    byte_identical = None
    if dataset.listings_sha256 is not None:
        byte_identical = (csv_sha256 == dataset.listings_sha256 and not differences
                          and not missing)
        if csv_sha256 != dataset.listings_sha256:
            log(f"{listings_path.name}: sha256 {csv_sha256} is not the reports' dataset's "
                f"{dataset.listings_sha256}")
    return {"dataset": dataset.name, "byte_identical": byte_identical,
            "recipe": dataset.scaling.recipe,
            "listings_csv": {"sha256": csv_sha256, "expected": dataset.listings_sha256},
            "missing_listings": len(missing), "missing_ids": [str(key) for key in
                                                              missing[:MAX_FAILURES_LISTED]],
            "photos": counts, "differing": differences[:MAX_FAILURES_LISTED]}


def photo_check(listing_id: int, pinned: PinnedPhoto,
                owners: dict[str, int]) -> Callable[[Path], None]:
    """The check a downloaded photo must pass: its pinned git blob id, then a full decode."""

    def check(path: Path) -> None:
        data = path.read_bytes()
        blob = git_blob_id(data)
        decoded = check_photo(path, convert=False)
        if blob == pinned.blob and decoded.reason is None:
            return
        raise _photo_problem(listing_id, pinned, data, blob, decoded.reason, owners)

    return check


def _photo_problem(listing_id: int, pinned: PinnedPhoto, data: bytes, blob: str,
                   decode_problem: str | None, owners: dict[str, int]) -> ContentError:
    """Name what was served instead of the pinned photo (the reason code of the report)."""
    other = owners.get(blob)
    if other is not None and other != listing_id:
        return ContentError("wrong_photo", f"got the photo of listing {other}, not of {listing_id}")
    if len(data) < pinned.size and data[:2] == b"\xff\xd8":
        return ContentError("incomplete", f"got {len(data)} of the {pinned.size} bytes of the "
                            "pinned photo", retryable=True)
    if decode_problem is not None:
        return ContentError("not_an_image", f"{decode_problem}; {len(data)} bytes starting with "
                            f"{data[:15]!r}")
    return ContentError("blob_mismatch", f"git blob id {blob} is not the pinned {pinned.blob} "
                        f"({len(data)} bytes, pinned {pinned.size})")

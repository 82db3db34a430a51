"""The photos of the ``github`` source: pinned by git blob id, fetched, checked, scaled."""

from __future__ import annotations

import logging
import csv
import gzip
import hashlib
import io
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from shared.data.dataset import check_photo
from shared.io import sha256_file

from .base import FetchOptions, UnusableSourceError
from .http import ContentError, DownloadError, download
from .layout import photo_path
from .report import MAX_FAILURES_LISTED, PhotoOutcome
from .sets import DatasetSet, ExpectedPhoto, PhotoScaling

logger = logging.getLogger(__name__)

RAW_FILE_HOST = "https://raw.githubusercontent.com"
MANIFEST_HEADER = ["ID", "git_blob_sha1", "bytes"]
LEDGER_FILE = "scaled-photos.csv"
LEDGER_HEADER = ["ID", "git_blob_sha1", "recipe", "sha256"]
MAX_DIFFERENCES_LOGGED = 20


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


class PhotoLedger:
    """``raw/scaled-photos.csv``: what each photo in ``images/`` was made from (``ID``, git blob id
    of the original, scaling recipe, sha256 of the file; the last line of an ID wins).

    Lines are appended and flushed once the photo is in place; a torn line is ignored. A rerun
    trusts a present photo whose sha256 is the set's pinned one or matches the ledger for the
    current recipe (Pillow included), so unpinned or non-identical sets resume too.
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
    """What every photo of the set must become: the scaling, the pinned hashes of the scaled photos
    (may be empty) and the ledger of photos already made."""

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


def fetch_photo(listing_id: int, pinned: PinnedPhoto, photos,
                options: FetchOptions, owners: dict[str, int], target: PhotoTarget) -> PhotoOutcome:
    """Make sure ``images/<ID>.jpg`` holds the pinned original (blob id, full decode) scaled by
    ``target.scaling``; a finished one is kept."""
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
    """Download finalizer: :func:`photo_check` the original, replace it by its scaled version
    (which must decode) and append the scaled file's sha256 to ``made``."""
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
                 listings_path: Path) -> dict:
    """Compare what was written with the set's pinned hashes; log one line per difference.

    ``byte_identical``: True when ``listings.csv`` and every photo have their pinned sha256, False
    when something differs, None when the set pins no ``listings.csv``.
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
        logger.info(f"{entry['file']}: sha256 {entry['sha256']} is not the reports' dataset's "
            f"{entry['expected_sha256']} (scaled: {dataset.scaling.recipe}); kept, it decodes")
    if len(differences) > MAX_DIFFERENCES_LOGGED:
        logger.info(f"... and {len(differences) - MAX_DIFFERENCES_LOGGED} more photos differ (listed in "
            "fetch_report.json)")
    wanted = dataset.ids()
    missing = sorted(wanted - written) if wanted is not None else []
    csv_sha256 = sha256_file(listings_path)
    byte_identical = None
    if dataset.listings_sha256 is not None:
        byte_identical = (csv_sha256 == dataset.listings_sha256 and not differences
                          and not missing)
        if csv_sha256 != dataset.listings_sha256:
            logger.info(f"{listings_path.name}: sha256 {csv_sha256} is not the reports' dataset's "
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

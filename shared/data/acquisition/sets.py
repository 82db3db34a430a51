"""The sets the ``github`` source builds: which listings, how their photos are scaled, and what
the result must hash to.

``airbnb-madrid-10k`` (:data:`REPORTS_SET`, the default) is the reports' dataset rebuilt byte
for byte: its 10,351 listings, each scaled photo checked against the shipped manifest and
``listings.csv`` against :data:`REPORTS_LISTINGS_SHA256`. ``airbnb-madrid-12k``
(:data:`ALL_LISTINGS`, ``--all``) is every listing of the source, built the same way; only the
photos of the 10k listings can be checked. With Pillow 13.0.0 :class:`PhotoScaling` gives the
10k set's files byte for byte; another Pillow may encode differently, which the fetch reports.

``data/airbnb-madrid-10k-photos.csv.gz`` (gzip CSV ``ID,sha256,bytes`` in ascending ID order)
holds the set's IDs and the hash and size of each scaled photo; regenerate it with::

    python -m shared.data.acquisition.sets ../shared/data/airbnb-madrid-10k \\
        shared/data/acquisition/data/airbnb-madrid-10k-photos.csv.gz
"""

from __future__ import annotations

import argparse
import csv
import functools
import gzip
import hashlib
import io
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import PIL
from PIL import Image

from shared.data.schema import ID_COLUMN, IMAGES_DIR, LISTINGS_FILE, parse_listing_id

DATA_DIR = Path(__file__).resolve().parent / "data"
SET_MANIFEST_HEADER = ["ID", "sha256", "bytes"]

REPORTS_SET_NAME = "airbnb-madrid-10k"
#: sha256 of the reports' ``listings.csv`` (recorded in every committed ``metrics.json``).
REPORTS_LISTINGS_SHA256 = "ff9f587b8b0aafff38c2933b65173065fcd382aafd899984c9e3dbcb59ce8045"
REPORTS_MANIFEST = DATA_DIR / f"{REPORTS_SET_NAME}-photos.csv.gz"
ALL_LISTINGS_NAME = "airbnb-madrid-12k"


# --------------------------------------------------------------------------- photo scaling


@dataclass(frozen=True)
class PhotoScaling:
    """How a pinned original becomes a dataset photo: RGB; if the shorter side exceeds
    ``shorter_side``, Lanczos resize by ``r = shorter_side / min(w, h)`` to ``(round(w * r),
    round(h * r))``; JPEG at ``quality`` (optimized)."""

    shorter_side: int = 224
    quality: int = 85
    optimize: bool = True

    def scale(self, data: bytes) -> bytes:
        """The scaled JPEG of the image ``data`` (raises what Pillow raises on a bad image)."""
        with Image.open(io.BytesIO(data)) as image:
            rgb = image.convert("RGB")
        width, height = rgb.size
        if min(width, height) > self.shorter_side:
            ratio = self.shorter_side / min(width, height)
            rgb = rgb.resize((round(width * ratio), round(height * ratio)),
                             Image.Resampling.LANCZOS)
        out = io.BytesIO()
        rgb.save(out, format="JPEG", quality=self.quality, optimize=self.optimize)
        return out.getvalue()

    @property
    def recipe(self) -> str:
        """What the scaled bytes depend on, Pillow's version included (the resume ledger key)."""
        return (f"shorter side {self.shorter_side} px (Lanczos), JPEG quality {self.quality}"
                f"{', optimized' if self.optimize else ''}, Pillow {PIL.__version__}")


# --------------------------------------------------------------------------- the sets


@dataclass(frozen=True)
class ExpectedPhoto:
    """A scaled photo of the set: its sha256 (hex) and size in bytes."""

    sha256: str
    size: int


@dataclass(frozen=True)
class DatasetSet:
    """A set the ``github`` source builds.

    ``manifest``: ``ID,sha256,bytes`` of its scaled photos (None: no photo checked);
    ``every_listing``: every listing of the source, else the manifest's IDs only;
    ``listings_sha256``: pinned hash of its ``listings.csv`` (None: not checked).
    """

    name: str
    manifest: Path | None
    listings_sha256: str | None = None
    every_listing: bool = False
    scaling: PhotoScaling = field(default_factory=PhotoScaling)

    def __post_init__(self) -> None:
        if not self.every_listing and self.manifest is None:
            raise ValueError(f"set {self.name!r}: a set of chosen listings needs a manifest")

    def expected_photos(self) -> dict[int, ExpectedPhoto]:
        """``{listing ID: ExpectedPhoto}`` from the manifest (empty without one)."""
        return {} if self.manifest is None else load_set_manifest(self.manifest)

    def ids(self) -> frozenset[int] | None:
        """The listings the set keeps, or None for every listing of the source."""
        return None if self.every_listing else frozenset(self.expected_photos())

    def describe(self) -> str:
        """One line for the fetch log."""
        if self.every_listing:
            what = "every listing of the source"
        else:
            what = f"its {len(self.expected_photos()):,} listings"
        if self.listings_sha256:
            what += ", checked byte for byte against shipped hashes"
        return f"{self.name}: {what}; photos scaled to {self.scaling.recipe}"


REPORTS_SET = DatasetSet(REPORTS_SET_NAME, REPORTS_MANIFEST, REPORTS_LISTINGS_SHA256)
ALL_LISTINGS = DatasetSet(ALL_LISTINGS_NAME, REPORTS_MANIFEST, every_listing=True)


@functools.lru_cache(maxsize=8)
def _load_set_manifest(path: Path, mtime_ns: int) -> dict[int, ExpectedPhoto]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        if next(reader, None) != SET_MANIFEST_HEADER:
            raise ValueError(f"header is not {','.join(SET_MANIFEST_HEADER)}")
        photos = {}
        for listing_id, sha256, size in reader:
            photos[int(listing_id)] = ExpectedPhoto(sha256.lower(), int(size))
    return photos


def load_set_manifest(path: Path) -> dict[int, ExpectedPhoto]:
    """``{listing ID: ExpectedPhoto}`` from ``ID,sha256,bytes`` (plain or ``.gz`` CSV).
    Raises ``ValueError`` naming the file when it is unreadable."""
    path = Path(path)
    try:
        return dict(_load_set_manifest(path.resolve(), path.stat().st_mtime_ns))
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(f"set manifest {path}: unreadable ({error})") from error


# --------------------------------------------------------------------------- regeneration


def set_manifest_rows(dataset_dir: Path) -> list[tuple[int, str, int]]:
    """``(ID, sha256, bytes)`` of every listing of ``dataset_dir``, in ascending ID order; raises
    ``ValueError`` on a listing without a photo or with an invalid ID."""
    dataset_dir = Path(dataset_dir)
    with open(dataset_dir / LISTINGS_FILE, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter=";")
        header = next(reader)
        column = header.index(ID_COLUMN)
        raw_ids = [record[column] for record in reader if record]
    rows = []
    for raw_id in raw_ids:
        listing_id = parse_listing_id(raw_id)
        if listing_id is None:
            raise ValueError(f"{dataset_dir / LISTINGS_FILE}: invalid listing ID {raw_id!r}")
        photo = dataset_dir / IMAGES_DIR / f"{listing_id}.jpg"
        if not photo.is_file():
            raise ValueError(f"listing {listing_id} has no photo {photo}")
        data = photo.read_bytes()
        rows.append((listing_id, hashlib.sha256(data).hexdigest(), len(data)))
    return sorted(rows)


def write_set_manifest(dataset_dir: Path, out: Path) -> int:
    """Write the manifest of ``dataset_dir`` to ``out`` (gzip when it ends in ``.gz``, with no
    timestamp so equal content gives equal bytes); return the number of listings."""
    rows = set_manifest_rows(dataset_dir)
    text = _manifest_text(rows).encode("utf-8")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".gz":
        with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw,
                                                   mtime=0, compresslevel=9) as packed:
            packed.write(text)
    else:
        out.write_bytes(text)
    return len(rows)


def _manifest_text(rows: Iterable[tuple[int, str, int]]) -> str:
    lines = [",".join(SET_MANIFEST_HEADER)]
    lines += [f"{listing_id},{sha256},{size}" for listing_id, sha256, size in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """``python -m shared.data.acquisition.sets DATASET_DIR OUT``: regenerate a set manifest."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("dataset_dir", type=Path, help="a dataset directory (listings.csv + images/)")
    parser.add_argument("out", type=Path, help="the manifest to write (.csv or .csv.gz)")
    args = parser.parse_args(argv)
    count = write_set_manifest(args.dataset_dir, args.out)
    print(f"{args.out}: {count} listings")
    return 0


if __name__ == "__main__":
    sys.exit(main())

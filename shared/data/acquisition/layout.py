"""The canonical layout as ``data fetch`` writes it: valid IDs, photo files, ``listings.csv``.

IDs go through :func:`shared.data.schema.parse_listing_id` before naming a file; photos through
:func:`shared.data.dataset.check_photo`, the loader's check.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from shared.data.dataset import check_photo
from shared.data.schema import CSV_SEPARATOR, OPENDATASOFT_COLUMNS, parse_listing_id

from .http import ContentError, atomic_output
from .report import FetchReport

JPEG_QUALITY = 95


def select_listings(rows: Iterable[tuple[Any, Any]], report: FetchReport,
                    count_rows: bool = True) -> list[tuple[int, Any]]:
    """Keep ``(raw_id, payload)`` rows with a valid, first-seen ID as ``(id, payload)``
    (``count_rows``: add them to the report's source rows)."""
    kept: list[tuple[int, Any]] = []
    seen: set[int] = set()
    for raw_id, payload in rows:
        report.source_rows += count_rows
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


def photo_format(path: Path) -> str:
    """The image format of ``path`` (``"JPEG"`` ...); raise ContentError unless it fully decodes."""
    result = check_photo(path, convert=False)
    if result.reason is not None:
        head = path.read_bytes()[:15] if path.is_file() else b""
        raise ContentError("invalid_image", f"{result.reason} (starts with {head!r})")
    return result.format


def photo_is_valid(path: Path) -> bool:
    """True when ``path`` exists and is a JPEG that fully decodes."""
    result = check_photo(path, convert=False)
    return result.reason is None and result.format == "JPEG"


def save_jpeg(image: Image.Image, path: Path) -> None:
    """Save ``image`` as a high-quality RGB JPEG (quality 95, no chroma subsampling)."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    image.save(path, format="JPEG", quality=JPEG_QUALITY, subsampling=0)


def normalize_photo(path: Path) -> None:
    """Check a downloaded photo; re-encode it as JPEG in place when it is another format."""
    if photo_format(path) == "JPEG":
        return
    with Image.open(path) as image:
        image.seek(0)
        rgb = image.convert("RGB")
    save_jpeg(rgb, path)


def format_csv_row(values: Sequence[str]) -> str:
    """One ';'-separated line, quoting fields that contain ';', '"', CR or LF (like the export).

    Written with CRLF so that both CR and LF force quoting, then ended with LF.
    """
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=CSV_SEPARATOR, lineterminator="\r\n").writerow(values)
    return buffer.getvalue()[:-2] + "\n"


def write_listings_csv(path: Path, rows: Iterable[Sequence[str]],
                       columns: Sequence[str] = OPENDATASOFT_COLUMNS) -> int:
    """Write ``listings.csv`` atomically (header ``columns``, default the 89 OpenDataSoft
    columns); return the row count."""
    count = 0
    with atomic_output(path, fsync=True) as tmp, open(tmp, "w", encoding="utf-8", newline="") as out:
        out.write(format_csv_row(columns))
        for row in rows:
            if len(row) != len(columns):
                raise ValueError(f"row with {len(row)} fields, expected {len(columns)}")
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

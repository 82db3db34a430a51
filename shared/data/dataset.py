"""Load and validate a dataset directory into the table of usable listings.

Rules (every model trains on these rows): ``ID`` and ``City`` are required (``Price`` too for
training), other OpenDataSoft columns are optional; ``ID`` is a unique positive integer (parsed
before it names a photo file); prices are parsed, never imputed; only Madrid, Spain is kept;
every photo is fully decoded once per content and listings with an unusable photo are dropped.
Each dropped row is counted with its reason and listing ID.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from shared import environment

from shared.data import schema
from shared.data import columns as feature_columns
from shared.data.schema import parse_listing_id  # noqa: F401 - one rule for IDs, re-exported here
from shared.io import atomic_path, sha256_file
from shared.data.photo_index import PhotoCheckIndex

#: Columns every dataset directory needs (``Price`` too to train or score: ``require_price``).
REQUIRED_COLUMNS: tuple[str, ...] = (schema.ID_COLUMN, "City")

# Photo modes TensorFlow's decoder reads directly (after conversion to 3 channels).
_TF_DECODABLE = {("JPEG", "RGB"), ("JPEG", "L"), ("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "L"),
                 ("PNG", "P"), ("PNG", "LA"), ("GIF", "P"), ("GIF", "L"), ("BMP", "RGB")}


class DatasetError(ValueError):
    """The dataset cannot be used as a whole (missing file or columns); the message says why."""


@dataclass
class Dataset:
    """The usable listings of one dataset directory.

    ``frame``: one row per listing, sorted by ``ID``, the raw columns (str) plus ``price`` (float
    EUR, NaN without prices), ``image_path`` and ``image_width`` / ``image_height`` (px).
    ``drops``: reason -> listing IDs (or row numbers for rows without a valid ID).
    """

    frame: pd.DataFrame
    drops: dict[str, list] = field(default_factory=dict)
    rows_read: int = 0
    data_dir: Path | None = None
    csv_sha256: str = ""
    has_prices: bool = True
    absent_columns: tuple[str, ...] = ()  # known OpenDataSoft columns absent from the header

    @property
    def ids(self) -> np.ndarray:
        """Listing IDs, shape (n,), int64."""
        return self.frame[schema.ID_COLUMN].to_numpy(dtype=np.int64)

    @property
    def prices(self) -> np.ndarray:
        """Nightly prices in euros, shape (n,), float64."""
        return self.frame["price"].to_numpy(dtype=np.float64)

    @property
    def image_paths(self) -> np.ndarray:
        """Photo file per listing, shape (n,), str."""
        return self.frame["image_path"].to_numpy(dtype=object)

    def subset(self, ids) -> Dataset:
        """A Dataset holding only ``ids`` (in the given order)."""
        position = pd.Series(np.arange(len(self.frame)), index=self.frame[schema.ID_COLUMN])
        rows = position.loc[list(ids)].to_numpy()
        return Dataset(self.frame.iloc[rows].reset_index(drop=True), dict(self.drops),
                       self.rows_read, self.data_dir, self.csv_sha256, self.has_prices,
                       self.absent_columns)

    def summary(self) -> dict:
        """Plain-dict summary (``airbnb-dl data check``, metrics files)."""
        out = {
            "data_dir": str(self.data_dir),
            "listings_sha256": self.csv_sha256,
            "rows_read": self.rows_read,
            "rows_usable": int(len(self.frame)),
            "drops": {reason: len(ids) for reason, ids in sorted(self.drops.items())},
        }
        if self.absent_columns:
            out["absent_columns"] = list(self.absent_columns)
            built = feature_columns.buildable_features(self.frame.columns)
            out["features_not_built"] = [name for name in feature_columns.ENGINEERED_COLUMNS
                                         if name not in built]
        if self.has_prices and len(self.frame):
            prices = self.prices
            out["price_eur"] = {"min": float(prices.min()), "median": float(np.median(prices)),
                                "max": float(prices.max())}
        if len(self.frame):
            w, h = self.frame["image_width"], self.frame["image_height"]
            out["image_size_px"] = {
                "width": {"min": int(w.min()), "median": float(w.median()), "max": int(w.max())},
                "height": {"min": int(h.min()), "median": float(h.median()), "max": int(h.max())},
            }
            out["room_types"] = self.frame["Room Type"].value_counts().to_dict()
        return out


# --------------------------------------------------------------------------- parsing helpers

_CURRENCY = re.compile(r"[\s$€£]|EUR|USD", flags=re.IGNORECASE)


def parse_price(value) -> float:
    """Parse a price string into euros; NaN when unparseable.

    >>> parse_price("$1,200.00"), parse_price("€45"), parse_price("50"), parse_price("1.200,50")
    (1200.0, 45.0, 50.0, 1200.5)
    """
    if value is None:
        return math.nan
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value) if np.isfinite(value) else math.nan
    text = _CURRENCY.sub("", str(value))
    if not text:
        return math.nan
    if "," in text and "." in text:
        # the last separator is the decimal one: "1,200.50" or "1.200,50"
        if text.rfind(",") > text.rfind("."):
            text = text.replace(".", "").replace(",", ".")
        else:
            text = text.replace(",", "")
    elif "," in text:
        head, _, tail = text.rpartition(",")
        text = text.replace(",", "") if len(tail) == 3 and head else text.replace(",", ".")
    try:
        number = float(text)
    except ValueError:
        return math.nan
    return number if math.isfinite(number) else math.nan


def normalise_city(value) -> str:
    """'Madrid, Comunidad de Madrid' / ' MADRID ' / 'Madrid ' -> 'madrid' (accents stripped)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = unicodedata.normalize("NFKD", str(value)).encode("ascii", "ignore").decode()
    return text.split(",")[0].strip().lower()


# --------------------------------------------------------------------------- photos

@dataclass(frozen=True)
class PhotoCheck:
    """Result of opening one photo: usable path (maybe a converted copy) or a drop reason.

    ``format``: Pillow's format name (``"JPEG"``...), empty when the file could not be opened.
    """

    path: str | None
    width: int = 0
    height: int = 0
    reason: str | None = None
    format: str = ""


def check_photo(path: Path, converted_dir: Path | None = None, *, convert: bool = True) -> PhotoCheck:
    """Fully decode ``path``; return where the pipeline should read it from, or why it cannot.

    Photos TensorFlow decodes directly are used in place; others Pillow decodes (CMYK JPEG, TIFF,
    WebP...) are converted once to an RGB JPEG in ``converted_dir`` (keyed by sha256), never in the
    read-only dataset directory. ``convert=False`` writes nothing and returns the photo's own path.
    """
    if not path.is_file():
        return PhotoCheck(None, reason="photo missing")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                fmt, mode = image.format, image.mode
                image.load()  # full decode: raises on truncated data
                width, height = image.size
                if min(width, height) < 1:
                    return PhotoCheck(None, reason="photo is empty", format=str(fmt))
                if (fmt, mode) in _TF_DECODABLE or not convert:
                    return PhotoCheck(str(path), width, height, format=str(fmt))
                target_dir = converted_dir or (environment.cache_dir() / "converted_photos")
                target = target_dir / f"{sha256_file(path)}.jpg"
                if not target.exists():
                    with atomic_path(target, suffix=".jpg") as tmp:
                        image.convert("RGB").save(tmp, format="JPEG", quality=95)
                return PhotoCheck(str(target), width, height, format=str(fmt))
    except (UnidentifiedImageError, Image.DecompressionBombError):
        return PhotoCheck(None, reason="photo is not an image")
    except (OSError, SyntaxError, ValueError, EOFError):
        return PhotoCheck(None, reason="photo truncated or corrupt")


# --------------------------------------------------------------------------- loading

def read_listings_csv(data_dir: Path) -> pd.DataFrame:
    """Read ``listings.csv`` with every column as text (parsing happens explicitly later)."""
    csv_path = data_dir / schema.LISTINGS_FILE
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path} not found. {environment.DATA_HELP}")
    try:
        frame = pd.read_csv(csv_path, sep=schema.CSV_SEPARATOR, dtype=str, keep_default_na=True,
                            encoding="utf-8")
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        detail = " ".join(str(exc).split())  # one line, whatever the parser's message holds
        raise DatasetError(f"{csv_path} is not a ';'-separated UTF-8 CSV: {detail}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def load_dataset(data_dir=None, require_price: bool = True, check_photos: bool = True,
                 converted_dir: Path | None = None) -> Dataset:
    """Load ``listings.csv`` + ``images/`` from a dataset directory and keep the usable rows.

    ``require_price``: True for training (Price required, rows without a valid price dropped);
    False for prediction. ``check_photos``: decode every photo (cached by content); False only in
    tests of the table logic. Raises :class:`DatasetError` if listings.csv is missing or unreadable
    or required columns are missing.
    """
    data_dir = environment.resolve_data_dir(data_dir)
    frame = read_listings_csv(data_dir)
    csv_sha = sha256_file(data_dir / schema.LISTINGS_FILE)
    required = list(REQUIRED_COLUMNS) + ([schema.TARGET_COLUMN] if require_price else [])
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DatasetError(
            f"{data_dir / schema.LISTINGS_FILE} is missing required column(s): {', '.join(missing)}")
    absent = tuple(c for c in schema.OPENDATASOFT_COLUMNS if c not in frame.columns)

    drops: dict[str, list] = defaultdict(list)
    rows_read = len(frame)
    has_prices = schema.TARGET_COLUMN in frame.columns
    frame = _keep_madrid(_keep_priced(_keep_valid_ids(frame, drops), drops, require_price), drops)
    frame = frame.sort_values(schema.ID_COLUMN).reset_index(drop=True)
    frame = _attach_photos(frame, data_dir, drops, check_photos, converted_dir)
    drops = {reason: ids for reason, ids in drops.items() if ids}
    return Dataset(frame, drops, rows_read, data_dir, csv_sha, has_prices, absent)


def _keep_valid_ids(frame: pd.DataFrame, drops: dict) -> pd.DataFrame:
    """The rows with a positive integer ``ID`` (parsed), the first of each repeated ID."""
    ids = frame[schema.ID_COLUMN].map(parse_listing_id)
    bad_id = ids.isna()
    for row_number in np.flatnonzero(bad_id.to_numpy()):
        drops["invalid ID (not a positive integer)"].append(f"row {row_number + 2}")
    frame = frame.loc[~bad_id].copy()
    frame[schema.ID_COLUMN] = ids[~bad_id].astype(np.int64)
    duplicated = frame[schema.ID_COLUMN].duplicated(keep="first")
    drops["duplicate ID"].extend(frame.loc[duplicated, schema.ID_COLUMN].tolist())
    return frame.loc[~duplicated]


def _keep_priced(frame: pd.DataFrame, drops: dict, require_price: bool) -> pd.DataFrame:
    """``frame`` with its parsed ``price`` (EUR); if required, only rows with a positive one,
    else a non-positive price becomes missing."""
    has_prices = schema.TARGET_COLUMN in frame.columns
    frame["price"] = frame[schema.TARGET_COLUMN].map(parse_price) if has_prices else np.nan
    if not require_price:
        frame.loc[frame["price"] <= 0, "price"] = np.nan
        return frame
    unparseable = frame["price"].isna()
    drops["price missing or unparseable"].extend(frame.loc[unparseable, schema.ID_COLUMN].tolist())
    non_positive = ~unparseable & (frame["price"] <= 0)
    drops["price not positive"].extend(frame.loc[non_positive, schema.ID_COLUMN].tolist())
    return frame.loc[~unparseable & ~non_positive]


def _keep_madrid(frame: pd.DataFrame, drops: dict) -> pd.DataFrame:
    """The rows in Madrid, Spain (city spellings normalised; a missing country is Spain)."""
    in_madrid = frame["City"].map(normalise_city).eq("madrid")
    if "Country" in frame.columns:
        country = frame["Country"].fillna("Spain").map(normalise_city)
        in_madrid &= country.isin({"spain", "espana"})
    drops["outside Madrid, Spain"].extend(frame.loc[~in_madrid, schema.ID_COLUMN].tolist())
    return frame.loc[in_madrid]


def cached_check_photo(path: Path, index: PhotoCheckIndex, converted_dir: Path | None = None
                       ) -> PhotoCheck:
    """:func:`check_photo` through the photo-check index: the file is hashed only when it changed
    and decoded only when its content was never checked (or its converted copy is gone)."""
    if not path.is_file():
        return PhotoCheck(None, reason="photo missing")
    try:
        key = index.content_key(path)
    except OSError:
        return check_photo(path, converted_dir)
    entry = index.get(key)
    if entry is not None:
        if entry["reason"]:
            return PhotoCheck(None, reason=entry["reason"], format=entry["format"])
        source = str(path)
        if entry["converted"]:
            source = str((converted_dir or (environment.cache_dir() / "converted_photos")) / f"{key}.jpg")
        if not entry["converted"] or Path(source).is_file():
            return PhotoCheck(source, entry["width"], entry["height"], format=entry["format"])
    check = check_photo(path, converted_dir)
    index.put(key, {"width": check.width, "height": check.height, "format": check.format,
                    "reason": check.reason,
                    "converted": check.reason is None and check.path != str(path)})
    return check


def _attach_photos(frame: pd.DataFrame, data_dir: Path, drops: dict, check_photos: bool,
                   converted_dir: Path | None) -> pd.DataFrame:
    images_dir = data_dir / schema.IMAGES_DIR
    index = PhotoCheckIndex.load() if check_photos else None
    checks = []
    for listing_id in frame[schema.ID_COLUMN].tolist():
        # the path is built from the parsed integer, never from the raw text
        photo = images_dir / f"{int(listing_id)}.jpg"
        checks.append(cached_check_photo(photo, index, converted_dir) if check_photos
                      else PhotoCheck(str(photo) if photo.is_file() else None, 0, 0,
                                      None if photo.is_file() else "photo missing"))
    if index is not None:
        index.save()
    keep = np.array([c.reason is None for c in checks], dtype=bool)
    for listing_id, check in zip(frame[schema.ID_COLUMN].tolist(), checks, strict=True):
        if check.reason:
            drops[check.reason].append(listing_id)
    frame = frame.assign(image_path=[c.path for c in checks],
                         image_width=[c.width for c in checks],
                         image_height=[c.height for c in checks])
    return frame.loc[keep].reset_index(drop=True)


def dataset_fingerprint(dataset: Dataset) -> str:
    """sha256 over the sorted usable IDs: identifies "the same rows" across machines."""
    return hashlib.sha256(",".join(map(str, sorted(dataset.ids.tolist()))).encode()).hexdigest()

"""Small dataset directories built by the tests themselves (no real data needed).

A dataset directory has the canonical layout of :mod:`shared.data.schema`: ``listings.csv``
(';'-separated, the 89 OpenDataSoft columns) and ``images/<ID>.jpg``. The helpers here write
such directories into a pytest ``tmp_path``:

* :func:`listing_row` — one plausible Madrid listing (all 89 columns, text values), with overrides;
* :func:`synthetic_rows` — ``n`` varied, valid listings (prices correlated with size and room type);
* :func:`write_photo` — tiny photos of a given *kind* (JPEG, grayscale, CMYK, PNG saved as .jpg,
  truncated JPEG, non-image bytes);
* :func:`make_dataset_dir` — the directory itself;
* :func:`tricky_dataset_dir` — the edge cases of issue 2 with the drops they must cause
  (:data:`TRICKY_EXPECTED_DROPS`, :data:`TRICKY_USABLE_IDS`);
* :func:`tree_state` — files + sizes + mtimes, to prove a directory was never written to.

Other test files import it as ``from fixtures import make_dataset_dir`` (``tests/`` is on
``sys.path`` under pytest's default import mode).
"""

from __future__ import annotations

import csv
import io
import os
import random
from pathlib import Path
from collections.abc import Iterable, Mapping

from PIL import Image

from shared.data.schema import CSV_SEPARATOR, IMAGES_DIR, LISTINGS_FILE, OPENDATASOFT_COLUMNS

#: Photo kinds understood by :func:`write_photo`.
PHOTO_KINDS = ("jpeg", "gray", "cmyk", "png_as_jpg", "rgba_png", "truncated", "corrupt")

NEIGHBOURHOODS = [  # (group, neighbourhood, zipcode, lat, lon)
    ("Centro", "Sol", "28013", 40.4168, -3.7038),
    ("Centro", "Embajadores", "28012", 40.4089, -3.7010),
    ("Centro", "Universidad", "28004", 40.4250, -3.7060),
    ("Salamanca", "Recoletos", "28001", 40.4240, -3.6880),
    ("Chamberí", "Trafalgar", "28010", 40.4320, -3.7010),
    ("Retiro", "Pacífico", "28007", 40.4040, -3.6760),
]
ROOM_TYPES = [("Entire home/apt", 1.0), ("Private room", 0.5), ("Shared room", 0.3)]
PROPERTY_TYPES = ["Apartment", "Apartment", "Apartment", "House", "Loft", "Condominium"]
POLICIES = ["flexible", "moderate", "strict"]
RESPONSE_TIMES = ["within an hour", "within a few hours", "within a day", None]


def listing_row(listing_id, **overrides) -> dict[str, str | None]:
    """One listing as ``{column: text}`` for all 89 OpenDataSoft columns (None = empty cell).

    Overrides use the column names with spaces replaced by underscores (``Price="$1,200.00"``,
    ``Weekly_Price=None``) or can be passed as a dict via ``**{"Weekly Price": ...}``.
    """
    lid = str(listing_id)
    row: dict[str, str | None] = {column: None for column in OPENDATASOFT_COLUMNS}
    row.update({
        "ID": lid,
        "Listing Url": f"https://www.airbnb.com/rooms/{lid}",
        "Scrape ID": "20170407214119",
        "Last Scraped": "2017-04-08",
        "Name": f"Bright flat {lid}",
        "Summary": "Cosy flat; close to the metro.",
        "Description": 'A "bright" flat in the centre; lift, wifi and a small balcony.',
        "Experiences Offered": "none",
        "Picture Url": f"https://example.invalid/{lid}.jpg",
        "Host ID": f"9{lid}",  # one host per listing (host groups are planted by the tests)
        "Host Name": "Ana",
        "Host Since": "2014-05-08",
        "Host Response Time": "within an hour",
        "Host Response Rate": "100.0",
        "Host Listings Count": "1.0",
        "Host Total Listings Count": "1.0",
        "Host Verifications": "email,phone,reviews,jumio",
        "Street": "Sol, Madrid, Comunidad de Madrid 28013, Spain",
        "Neighbourhood": "Sol",
        "Neighbourhood Cleansed": "Sol",
        "Neighbourhood Group Cleansed": "Centro",
        "City": "Madrid",
        "State": "Comunidad de Madrid",
        "Zipcode": "28013",
        "Market": "Madrid",
        "Smart Location": "Madrid, Spain",
        "Country Code": "ES",
        "Country": "Spain",
        "Latitude": "40.4168",
        "Longitude": "-3.7038",
        "Property Type": "Apartment",
        "Room Type": "Entire home/apt",
        "Accommodates": "2",
        "Bathrooms": "1.0",
        "Bedrooms": "1.0",
        "Beds": "1.0",
        "Bed Type": "Real Bed",
        "Amenities": "TV,Internet,Wireless Internet,Kitchen,Heating",
        "Price": "50.0",
        "Security Deposit": "100.0",
        "Cleaning Fee": "20.0",
        "Guests Included": "1",
        "Extra People": "10",
        "Minimum Nights": "2",
        "Maximum Nights": "1125",
        "Calendar Updated": "today",
        "Availability 30": "10",
        "Availability 60": "30",
        "Availability 90": "50",
        "Availability 365": "200",
        "Calendar last Scraped": "2017-04-08",
        "Number of Reviews": "12",
        "First Review": "2016-02-28",
        "Last Review": "2017-03-30",
        "Review Scores Rating": "95.0",
        "Review Scores Accuracy": "10.0",
        "Review Scores Cleanliness": "9.0",
        "Review Scores Checkin": "10.0",
        "Review Scores Communication": "10.0",
        "Review Scores Location": "10.0",
        "Review Scores Value": "9.0",
        "Cancellation Policy": "moderate",
        "Calculated host listings count": "1",
        "Reviews per Month": "1.2",
        "Geolocation": "40.4168,-3.7038",
        "Features": "Host Has Profile Pic,Host Identity Verified,Is Location Exact",
    })
    for key, value in overrides.items():
        column = key if key in row else key.replace("_", " ")
        if column not in row:
            raise KeyError(f"unknown OpenDataSoft column {key!r}")
        row[column] = None if value is None else str(value)
    return row


def synthetic_rows(n: int, seed: int = 0, first_id: int = 1000, price_format: str = "{:.1f}"
                   ) -> list[dict[str, str | None]]:
    """``n`` valid, varied listings with IDs ``first_id, first_id + 7, ...``.

    The price (EUR) grows with ``Accommodates`` and the room type, plus noise, so models and
    stratification have something to work with. Some optional cells are left empty on purpose
    (response rate, reviews, zipcode) so imputation is exercised.
    """
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        group, hood, zipcode, lat, lon = NEIGHBOURHOODS[rng.randrange(len(NEIGHBOURHOODS))]
        room, factor = ROOM_TYPES[0 if i % 3 == 0 else rng.choice([0, 1, 1, 2])]
        accommodates = rng.randint(1, 6)
        price = round(max(10.0, (18 + 14 * accommodates) * factor * rng.uniform(0.7, 1.4)), 0)
        reviews = rng.randint(0, 80)
        features = ["Host Has Profile Pic"]
        features += ["Host Is Superhost"] if rng.random() < 0.3 else []
        features += ["Instant Bookable"] if rng.random() < 0.5 else []
        rows.append(listing_row(
            first_id + 7 * i,
            Price=price_format.format(price),
            Weekly_Price=None if rng.random() < 0.6 else f"{price * 6:.1f}",
            Monthly_Price=None if rng.random() < 0.8 else f"{price * 25:.1f}",
            Neighbourhood_Group_Cleansed=group,
            Neighbourhood_Cleansed=hood,
            Neighbourhood=hood,
            Zipcode=None if rng.random() < 0.1 else zipcode,
            Latitude=f"{lat + rng.uniform(-0.01, 0.01):.6f}",
            Longitude=f"{lon + rng.uniform(-0.01, 0.01):.6f}",
            Room_Type=room,
            Property_Type=rng.choice(PROPERTY_TYPES),
            Accommodates=accommodates,
            Bathrooms=f"{rng.choice([1.0, 1.0, 1.5, 2.0]):.1f}",
            Bedrooms=f"{max(0, accommodates // 2):.1f}",
            Beds=f"{max(1, accommodates // 2):.1f}",
            Host_Since=f"20{rng.randint(10, 16)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
            Host_Response_Time=rng.choice(RESPONSE_TIMES),
            Host_Response_Rate=None if rng.random() < 0.15 else f"{rng.randint(50, 100)}.0",
            Host_Listings_Count=f"{rng.randint(1, 20)}.0",
            Security_Deposit=None if rng.random() < 0.5 else f"{rng.choice([100, 150, 300])}.0",
            Cleaning_Fee=None if rng.random() < 0.4 else f"{rng.choice([10, 20, 35])}.0",
            Extra_People=rng.choice([0, 0, 10, 15]),
            Minimum_Nights=rng.choice([1, 2, 3]),
            Availability_365=rng.randint(0, 365),
            Number_of_Reviews=reviews,
            First_Review=None if reviews == 0 else f"2016-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
            Last_Review=None if reviews == 0 else f"2017-0{rng.randint(1, 3)}-1{rng.randint(0, 9)}",
            Review_Scores_Rating=None if reviews == 0 else f"{rng.randint(70, 100)}.0",
            Review_Scores_Value=None if reviews == 0 else f"{rng.randint(6, 10)}.0",
            Reviews_per_Month=None if reviews == 0 else f"{rng.uniform(0.1, 4):.2f}",
            Cancellation_Policy=rng.choice(POLICIES),
            Features=",".join(features),
        ))
    return rows


# --------------------------------------------------------------------------- photos

def _colour(listing_id) -> tuple[int, int, int]:
    seed = sum(ord(c) for c in str(listing_id))
    return (40 + seed * 37 % 180, 40 + seed * 91 % 180, 40 + seed * 53 % 180)


def write_photo(path: Path, kind: str = "jpeg", size: tuple[int, int] = (24, 16),
                colour: tuple[int, int, int] = (200, 60, 30)) -> Path:
    """Write a tiny photo of ``kind`` (see :data:`PHOTO_KINDS`) to ``path``; solid ``colour``.

    * ``jpeg``: RGB baseline JPEG; ``gray``: mode-L JPEG; ``cmyk``: CMYK JPEG (TensorFlow cannot
      decode it: the loader converts it); ``png_as_jpg`` / ``rgba_png``: PNG bytes (RGB / RGBA)
      whatever the extension; ``truncated``: a noisy 64x48 JPEG cut to 60% of its bytes;
      ``corrupt``: bytes that are no image at all.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, colour)
    if kind == "jpeg":
        image.save(path, format="JPEG", quality=95)
    elif kind == "gray":
        image.convert("L").save(path, format="JPEG", quality=95)
    elif kind == "cmyk":
        image.convert("CMYK").save(path, format="JPEG", quality=95)
    elif kind == "png_as_jpg":
        image.save(path, format="PNG")
    elif kind == "rgba_png":
        image.convert("RGBA").save(path, format="PNG")
    elif kind == "truncated":
        noise = Image.frombytes("RGB", (64, 48), random.Random(3).randbytes(64 * 48 * 3))
        buffer = io.BytesIO()
        noise.save(buffer, format="JPEG", quality=95)
        data = buffer.getvalue()
        path.write_bytes(data[: int(len(data) * 0.6)])
    elif kind == "corrupt":
        path.write_bytes(b"this is not an image, just some bytes\n" * 20)
    else:
        raise ValueError(f"unknown photo kind {kind!r}; choose from {PHOTO_KINDS}")
    return path


# --------------------------------------------------------------------------- directories

def write_listings_csv(path: Path, rows: Iterable[Mapping[str, str | None]],
                       columns: Iterable[str] = OPENDATASOFT_COLUMNS) -> Path:
    """Write ``rows`` as a ';'-separated UTF-8 CSV with the given columns (export order)."""
    columns = list(columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=CSV_SEPARATOR, quoting=csv.QUOTE_MINIMAL)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
    return path


def make_dataset_dir(root: Path, rows: Iterable[Mapping[str, str | None]] | None = None,
                     images: Mapping[str, str | None] | None = None,
                     columns: Iterable[str] = OPENDATASOFT_COLUMNS, n: int = 30,
                     seed: int = 0, photo_size: tuple[int, int] = (24, 16)) -> Path:
    """Write a dataset directory at ``root`` and return it.

    Args:
        rows: listings (see :func:`listing_row`); default ``synthetic_rows(n, seed)``.
        images: ``{ID text: photo kind or None}``; None means "no photo file". IDs not in the
            mapping get an RGB JPEG when their ID is a plain integer (a colour per ID).
        columns: header to write (drop some to provoke a missing-column error).
    """
    root = Path(root)
    rows = list(rows) if rows is not None else synthetic_rows(n, seed)
    images = dict(images or {})
    write_listings_csv(root / LISTINGS_FILE, rows, columns)
    photos = root / IMAGES_DIR
    photos.mkdir(parents=True, exist_ok=True)
    for row in rows:
        lid = str(row["ID"])
        kind = images.get(lid, "jpeg" if lid.isdigit() else None)
        if kind is not None and not (photos / f"{lid}.jpg").exists():
            write_photo(photos / f"{lid}.jpg", kind, size=photo_size, colour=_colour(lid))
    return root


#: The edge cases of issue 2: (row overrides, photo kind) per listing, in CSV order.
TRICKY_LISTINGS: list[tuple[dict, str | None]] = [
    ({"ID": "101", "Price": "50.0"}, "jpeg"),
    ({"ID": "102", "Price": "$1,200.00", "Room Type": "Private room"}, "jpeg"),
    ({"ID": "103", "Price": "€45"}, "gray"),
    ({"ID": "104", "Price": "80"}, "cmyk"),
    ({"ID": "105", "Price": "65.0"}, "png_as_jpg"),
    ({"ID": "106", "Price": "70.0"}, "truncated"),
    ({"ID": "107", "Price": "70.0"}, "corrupt"),
    ({"ID": "108", "Price": "70.0"}, None),                     # no photo file
    ({"ID": "109", "Price": "free"}, "jpeg"),                   # unparseable price
    ({"ID": "110", "Price": "0"}, "jpeg"),                      # zero price
    ({"ID": "111", "Price": ""}, "jpeg"),                       # missing price
    ({"ID": "112", "Price": "60.0", "City": "Barcelona", "State": "Catalonia"}, "jpeg"),
    ({"ID": "113", "Price": "55.0", "City": "Madrid, Comunidad de Madrid"}, "rgba_png"),
    ({"ID": "../etc/passwd", "Price": "40.0"}, None),           # CSV row 15
    ({"ID": "12a", "Price": "40.0"}, None),                     # CSV row 16
    ({"ID": "101", "Price": "99.0"}, None),                     # duplicate of the first row
]
TRICKY_USABLE_IDS = [101, 102, 103, 104, 105, 113]
TRICKY_PRICES = {101: 50.0, 102: 1200.0, 103: 45.0, 104: 80.0, 105: 65.0, 113: 55.0}
TRICKY_EXPECTED_DROPS = {
    "invalid ID (not a positive integer)": ["row 15", "row 16"],
    "duplicate ID": [101],
    "price missing or unparseable": [109, 111],
    "price not positive": [110],
    "outside Madrid, Spain": [112],
    "photo truncated or corrupt": [106],
    "photo is not an image": [107],
    "photo missing": [108],
}


def tricky_rows() -> list[dict[str, str | None]]:
    """The rows of :data:`TRICKY_LISTINGS` (all 89 columns)."""
    return [listing_row(spec["ID"], **{k: v for k, v in spec.items() if k != "ID"})
            for spec, _ in TRICKY_LISTINGS]


def tricky_dataset_dir(root: Path) -> Path:
    """A dataset directory holding every edge case of :data:`TRICKY_LISTINGS`."""
    images = {}
    for spec, kind in TRICKY_LISTINGS:
        images.setdefault(spec["ID"], kind)
    return make_dataset_dir(root, rows=tricky_rows(), images=images)


def tree_state(root: Path) -> dict[str, tuple[int, int]]:
    """``{relative path: (size, mtime_ns)}`` of every file and directory under ``root``."""
    root = Path(root)
    state = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            info = path.lstat()
            state[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return state

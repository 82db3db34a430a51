"""Dataset schema: the canonical layout and the OpenDataSoft column names.

The canonical dataset directory, produced by every data source and read by
:mod:`shared.data.dataset`::

    <data-dir>/
      listings.csv      ';'-separated, UTF-8, the 89 OpenDataSoft "airbnb-listings" columns
      images/<ID>.jpg   one photo per listing
"""

from __future__ import annotations

import re
from typing import Any

LISTINGS_FILE = "listings.csv"
IMAGES_DIR = "images"
CSV_SEPARATOR = ";"

#: The 89 columns of the OpenDataSoft "airbnb-listings" export, in export order.
OPENDATASOFT_COLUMNS: tuple[str, ...] = (
    "ID", "Listing Url", "Scrape ID", "Last Scraped", "Name", "Summary", "Space", "Description",
    "Experiences Offered", "Neighborhood Overview", "Notes", "Transit", "Access", "Interaction",
    "House Rules", "Thumbnail Url", "Medium Url", "Picture Url", "XL Picture Url", "Host ID",
    "Host URL", "Host Name", "Host Since", "Host Location", "Host About", "Host Response Time",
    "Host Response Rate", "Host Acceptance Rate", "Host Thumbnail Url", "Host Picture Url",
    "Host Neighbourhood", "Host Listings Count", "Host Total Listings Count",
    "Host Verifications", "Street", "Neighbourhood", "Neighbourhood Cleansed",
    "Neighbourhood Group Cleansed", "City", "State", "Zipcode", "Market", "Smart Location",
    "Country Code", "Country", "Latitude", "Longitude", "Property Type", "Room Type",
    "Accommodates", "Bathrooms", "Bedrooms", "Beds", "Bed Type", "Amenities", "Square Feet",
    "Price", "Weekly Price", "Monthly Price", "Security Deposit", "Cleaning Fee",
    "Guests Included", "Extra People", "Minimum Nights", "Maximum Nights", "Calendar Updated",
    "Has Availability", "Availability 30", "Availability 60", "Availability 90",
    "Availability 365", "Calendar last Scraped", "Number of Reviews", "First Review",
    "Last Review", "Review Scores Rating", "Review Scores Accuracy", "Review Scores Cleanliness",
    "Review Scores Checkin", "Review Scores Communication", "Review Scores Location",
    "Review Scores Value", "License", "Jurisdiction Names", "Cancellation Policy",
    "Calculated host listings count", "Reviews per Month", "Geolocation", "Features",
)

#: The 48 columns of ``airbnb-madrid-10k`` (what the ``github`` source holds), in export order:
#: no free text, no amenities, no review dates, no ``Last Scraped``.
MADRID_10K_COLUMNS: tuple[str, ...] = (
    "ID", "Host ID", "Host Name", "Host Since", "Host Listings Count", "Street",
    "Neighbourhood Cleansed", "City", "State", "Zipcode", "Smart Location", "Country Code",
    "Country", "Latitude", "Longitude", "Property Type", "Room Type", "Accommodates", "Bathrooms",
    "Bedrooms", "Beds", "Bed Type", "Square Feet", "Price", "Weekly Price", "Monthly Price",
    "Security Deposit", "Cleaning Fee", "Guests Included", "Extra People", "Minimum Nights",
    "Maximum Nights", "Availability 30", "Availability 60", "Availability 90",
    "Availability 365", "Number of Reviews", "Review Scores Rating", "Review Scores Accuracy",
    "Review Scores Cleanliness", "Review Scores Checkin", "Review Scores Communication",
    "Review Scores Location", "Review Scores Value", "Cancellation Policy",
    "Calculated host listings count", "Reviews per Month", "Geolocation",
)

#: Columns derived from the target (nightly price): never model inputs.
PRICE_DERIVED_COLUMNS: tuple[str, ...] = ("Price", "Weekly Price", "Monthly Price")

TARGET_COLUMN = "Price"
ID_COLUMN = "ID"

_LISTING_ID = re.compile(r"[0-9]{1,18}(?:\.0+)?")


def parse_listing_id(value: Any) -> int | None:
    """The listing ID as a positive int, or None when ``value`` is not a positive integer.

    Accepted: ints (numpy too), integral floats and ASCII digit strings with surrounding spaces
    and an optional ``.0`` (how numeric exports write integers). Refused: booleans, NaN,
    fractions, exponents, signs and non-ASCII digits, which no source uses for an ID.
    """
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalar -> Python scalar
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        value = int(value) if value.is_integer() else None
    elif isinstance(value, str):
        text = value.strip()
        value = int(text.split(".")[0]) if _LISTING_ID.fullmatch(text) else None
    if isinstance(value, int) and value > 0:
        return value
    return None

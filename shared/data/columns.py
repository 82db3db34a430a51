"""Which engineered features exist and which raw columns each is computed from.

Plain declarations without scikit-learn, so the loader and ``airbnb-dl data check`` need not
import the modelling stack; :mod:`shared.features.tabular` does the engineering.
"""

from __future__ import annotations

#: The scrape date of the whole Madrid export: the reference date of the day counts without a
#: ``Last Scraped`` column (the 48-column set drops it: it is this date for every listing).
EXPORT_SCRAPE_DATE = "2017-04-08"

#: Puerta del Sol, kilometre zero of Spain's roads: the reference point for "how central".
CITY_CENTRE_LAT_LON = (40.416775, -3.703790)

# Raw numeric columns used as they are (counts that span orders of magnitude are log1p'd below).
RAW_NUMERIC = [
    "Accommodates", "Bathrooms", "Bedrooms", "Beds", "Guests Included", "Latitude", "Longitude",
    "Availability 30", "Availability 60", "Availability 90", "Availability 365",
    "Review Scores Rating", "Review Scores Accuracy", "Review Scores Cleanliness",
    "Review Scores Checkin", "Review Scores Communication", "Review Scores Location",
    "Review Scores Value", "Host Response Rate",
]
LOG_NUMERIC = [
    "Security Deposit", "Cleaning Fee", "Extra People", "Minimum Nights", "Maximum Nights",
    "Number of Reviews", "Reviews per Month", "Host Listings Count",
    "Calculated host listings count",
]
# An empty deposit or cleaning fee means "none" in the export, not "unknown".
ZERO_WHEN_MISSING = ("Security Deposit", "Cleaning Fee")
ENGINEERED_NUMERIC = [
    "host_tenure_days", "review_span_days", "days_since_last_review", "amenities_count",
    "host_verifications_count", "description_length", "distance_to_centre_km", "has_license",
    "is_superhost", "host_identity_verified", "instant_bookable", "is_location_exact",
    "has_security_deposit", "has_cleaning_fee",
]
CATEGORICAL = [
    "Room Type", "Property Type", "Neighbourhood Group Cleansed", "Neighbourhood Cleansed",
    "Cancellation Policy", "Bed Type", "Host Response Time", "zipcode",
]
NUMERIC = [*RAW_NUMERIC, *(f"log1p_{c}" for c in LOG_NUMERIC), *ENGINEERED_NUMERIC]
#: Every column :func:`engineer_features` returns, in order.
ENGINEERED_COLUMNS = [*NUMERIC, *CATEGORICAL]
#: Must never reach a model: asserted by the leakage tests.
FORBIDDEN_INPUTS = ("Price", "Weekly Price", "Monthly Price", "ID", "Listing Url", "Host ID",
                    "Scrape ID", "price")

_FLAGS = {
    "is_superhost": "Host Is Superhost",
    "host_identity_verified": "Host Identity Verified",
    "instant_bookable": "Instant Bookable",
    "is_location_exact": "Is Location Exact",
}

#: Engineered feature -> the raw columns it is computed from (all must be present to build it).
#: ``Last Scraped`` is not listed: without it the export's scrape date is the reference date.
FEATURE_SOURCES: dict[str, tuple[str, ...]] = {
    **{column: (column,) for column in RAW_NUMERIC},
    **{f"log1p_{column}": (column,) for column in LOG_NUMERIC},
    "host_tenure_days": ("Host Since",),
    "review_span_days": ("First Review", "Last Review"),
    "days_since_last_review": ("Last Review",),
    "amenities_count": ("Amenities",),
    "host_verifications_count": ("Host Verifications",),
    "description_length": ("Description",),
    "distance_to_centre_km": ("Latitude", "Longitude"),
    "has_license": ("License",),
    **{name: ("Features",) for name in _FLAGS},
    "has_security_deposit": ("Security Deposit",),
    "has_cleaning_fee": ("Cleaning Fee",),
    **{column: (column,) for column in CATEGORICAL[:-1]},
    "zipcode": ("Zipcode",),
}
#: Every raw column some feature reads (``Last Scraped`` included, used when present).
SOURCE_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(
    [c for sources in FEATURE_SOURCES.values() for c in sources] + ["Last Scraped"]))


class MissingColumnsError(ValueError):
    """A table lacks raw columns the fitted preprocessor was fitted on; ``columns`` names them."""

    def __init__(self, columns):
        self.columns = list(columns)
        super().__init__(f"missing column(s) the model was fitted on: {', '.join(self.columns)}")


def buildable_features(columns) -> list[str]:
    """The engineered features (in :data:`ENGINEERED_COLUMNS` order) computable from ``columns``."""
    present = set(columns)
    return [name for name in ENGINEERED_COLUMNS if set(FEATURE_SOURCES[name]) <= present]


def used_source_columns(columns) -> list[str]:
    """The raw columns among ``columns`` that the feature engineering reads, in
    :data:`SOURCE_COLUMNS` order: what a preprocessor fitted on such a table needs later."""
    built = buildable_features(columns)
    needed = {c for name in built for c in FEATURE_SOURCES[name]}
    if "Last Scraped" in set(columns) and needed & {"Host Since", "Last Review"}:
        needed.add("Last Scraped")
    return [c for c in SOURCE_COLUMNS if c in needed]

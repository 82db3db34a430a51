"""Tabular features: row-wise engineering plus a scikit-learn preprocessing pipeline.

Two stages, deliberately separate:

1. :func:`engineer_features` is *stateless* and row-wise: it parses the raw text columns into
   numbers and derives new ones (host tenure, review span, amenity counts, distance to the city
   centre...). It looks at one listing at a time, so it cannot leak anything between rows.
2. :func:`make_preprocessor` returns a scikit-learn pipeline with every *fitted* step (KNN
   imputation, scaling, one-hot encoding with rare-level grouping). It is fitted on the training
   rows only, then used to transform validation, test and new data, and is saved with each model.

Never used as inputs: ``Price``, ``Weekly Price``, ``Monthly Price`` (derived from the target),
IDs and URLs (identifiers, not properties of the flat), free text beyond simple lengths.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import KNNImputer, SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

#: Bumped whenever the engineered columns change; saved with every model and checked at load.
FEATURE_SET_VERSION = "features-v1"

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


def _numbers(series: pd.Series) -> pd.Series:
    """Text -> float; strips currency symbols, '%' and thousands separators; NaN if unparseable."""
    cleaned = series.astype("string").str.replace(r"[$€%\s,]", "", regex=True)
    return pd.to_numeric(cleaned, errors="coerce").astype(float)


def _dates(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, errors="coerce", format="%Y-%m-%d")


def _list_length(series: pd.Series) -> pd.Series:
    """Comma-separated list -> number of non-empty items (0 for missing)."""
    return series.fillna("").astype(str).map(lambda s: sum(1 for x in s.split(",") if x.strip()))


def _haversine_km(lat: pd.Series, lon: pd.Series, ref: tuple[float, float]) -> pd.Series:
    lat1, lon1 = np.radians(lat), np.radians(lon)
    lat2, lon2 = np.radians(ref[0]), np.radians(ref[1])
    a = (np.sin((lat2 - lat1) / 2) ** 2
         + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2)
    return 6371.0 * 2 * np.arcsin(np.sqrt(a))


def clean_zipcode(series: pd.Series) -> pd.Series:
    """'28012', '28012.0', 'Madrid 28012', '28 012' -> '28012'; anything else -> NaN."""
    digits = series.astype("string").str.replace(r"\.0$", "", regex=True)
    digits = digits.str.replace(r"\s", "", regex=True).str.extract(r"(28\d{3})", expand=False)
    return digits.astype(object).where(digits.notna(), np.nan)


def engineer_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Raw listing columns (text) -> the engineered feature table, shape (n, len(ENGINEERED_COLUMNS)).

    Row-wise and stateless: dates are measured against each listing's own ``Last Scraped`` date
    (units: days), distances in kilometres, money in euros before ``log1p``.
    """
    out = pd.DataFrame(index=frame.index)
    for column in RAW_NUMERIC:
        out[column] = _numbers(frame[column])
    for column in LOG_NUMERIC:
        values = _numbers(frame[column])
        if column in ZERO_WHEN_MISSING:
            values = values.fillna(0.0)
        out[f"log1p_{column}"] = np.log1p(values.clip(lower=0))

    scraped = _dates(frame["Last Scraped"])
    first, last = _dates(frame["First Review"]), _dates(frame["Last Review"])
    out["host_tenure_days"] = (scraped - _dates(frame["Host Since"])).dt.days.astype(float)
    out["review_span_days"] = (last - first).dt.days.astype(float)
    out["days_since_last_review"] = (scraped - last).dt.days.astype(float)
    out["amenities_count"] = _list_length(frame["Amenities"]).astype(float)
    out["host_verifications_count"] = _list_length(frame["Host Verifications"]).astype(float)
    out["description_length"] = np.log1p(frame["Description"].fillna("").astype(str).str.len())
    out["distance_to_centre_km"] = _haversine_km(out["Latitude"], out["Longitude"],
                                                 CITY_CENTRE_LAT_LON)
    out["has_license"] = frame["License"].notna().astype(float)
    features = frame["Features"].fillna("").astype(str)
    for name, flag in _FLAGS.items():
        out[name] = features.str.contains(flag, regex=False).astype(float)
    out["has_security_deposit"] = (_numbers(frame["Security Deposit"]).fillna(0) > 0).astype(float)
    out["has_cleaning_fee"] = (_numbers(frame["Cleaning Fee"]).fillna(0) > 0).astype(float)

    for column in CATEGORICAL[:-1]:
        values = frame[column].astype("string").str.strip()
        out[column] = values.astype(object).where(values.notna() & (values != ""), np.nan)
    out["zipcode"] = clean_zipcode(frame["Zipcode"])
    return out[ENGINEERED_COLUMNS]


def make_preprocessor(n_neighbors: int = 5, min_frequency: int = 5) -> Pipeline:
    """The fitted part of the tabular features: raw listing frame -> float32 matrix (n, d).

    * numeric: standardised (mean/std of training rows), then missing values filled by a
      KNN imputer over the training rows (missing-value indicators kept as extra columns);
    * categorical: missing -> "missing", one-hot with levels seen fewer than ``min_frequency``
      times in training grouped as "infrequent"; unseen levels at predict time go to that
      "infrequent" column (all zeros when training had no infrequent level).
    """
    numeric = Pipeline([
        ("scale", StandardScaler()),
        ("impute", KNNImputer(n_neighbors=n_neighbors, add_indicator=True)),
    ])
    categorical = Pipeline([
        ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
        ("onehot", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=min_frequency,
                                 sparse_output=False, dtype=np.float32)),
    ])
    columns = ColumnTransformer(
        [("numeric", numeric, NUMERIC), ("categorical", categorical, CATEGORICAL)],
        remainder="drop", verbose_feature_names_out=True,
    )
    return Pipeline([
        ("engineer", FunctionTransformer(engineer_features, feature_names_out=_engineered_names)),
        ("columns", columns),
        ("float32", FunctionTransformer(_to_float32, feature_names_out="one-to-one")),
    ])


def _engineered_names(_transformer, _input_features) -> np.ndarray:
    return np.asarray(ENGINEERED_COLUMNS, dtype=object)


def _to_float32(matrix) -> np.ndarray:
    return np.asarray(matrix, dtype=np.float32)


def log_target(prices_eur: np.ndarray) -> np.ndarray:
    """Training target: natural log of the nightly price in euros, shape (n,), float32."""
    return np.log(np.asarray(prices_eur, dtype=np.float64)).astype(np.float32)


def price_from_log(log_prices: np.ndarray) -> np.ndarray:
    """Inverse of :func:`log_target`: predictions back to euros, shape (n,), float64."""
    return np.exp(np.asarray(log_prices, dtype=np.float64).reshape(-1))

"""Tabular features: row-wise engineering plus a scikit-learn preprocessing pipeline.

:func:`engineer_features` is stateless and row-wise (it cannot leak between rows);
:func:`make_preprocessor` holds every *fitted* step, fitted on the training rows only and saved
with each model. Each feature is built only when its source columns are present
(:data:`FEATURE_SOURCES`); the fitted preprocessor records its raw input columns and raises
:class:`MissingColumnsError` on a table lacking any (extra columns are ignored).
Never inputs: prices (derived from the target), IDs and URLs, free text beyond lengths.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import KNNImputer, SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

# The column declarations live in a module without scikit-learn (the loader reads them).
from shared.data.columns import (  # noqa: F401 - re-exported
    _FLAGS, CATEGORICAL, CITY_CENTRE_LAT_LON, ENGINEERED_COLUMNS, ENGINEERED_NUMERIC,
    EXPORT_SCRAPE_DATE, FEATURE_SOURCES, FORBIDDEN_INPUTS, LOG_NUMERIC, NUMERIC, RAW_NUMERIC,
    SOURCE_COLUMNS, ZERO_WHEN_MISSING, MissingColumnsError, buildable_features,
    used_source_columns,
)

#: Bumped whenever the engineered columns change; saved with every model and checked at load.
FEATURE_SET_VERSION = "features-v1"


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
    """Raw listing columns (text) -> the engineered feature table, shape (n, k).

    The k columns are :func:`buildable_features` of ``frame.columns``. Days are counted to each
    listing's ``Last Scraped`` (else :data:`EXPORT_SCRAPE_DATE`), distances in km, money in euros
    before ``log1p``.
    """
    built = buildable_features(frame.columns)
    wanted = set(built)
    out = pd.DataFrame(index=frame.index)
    numbers: dict[str, pd.Series] = {}

    def number(column):
        if column not in numbers:
            numbers[column] = _numbers(frame[column])
        return numbers[column]

    _add_numbers(out, wanted, number)
    _add_days(out, frame, wanted)
    _add_counts_and_flags(out, frame, wanted, number)
    for column in CATEGORICAL[:-1]:
        if column in wanted:
            values = frame[column].astype("string").str.strip()
            out[column] = values.astype(object).where(values.notna() & (values != ""), np.nan)
    if "zipcode" in wanted:
        out["zipcode"] = clean_zipcode(frame["Zipcode"])
    return out[built]


def _add_numbers(out: pd.DataFrame, wanted: set, number) -> None:
    """The raw numbers as they are, and the log1p'd ones (missing fees count as 0)."""
    for column in RAW_NUMERIC:
        if column in wanted:
            out[column] = number(column)
    for column in LOG_NUMERIC:
        if f"log1p_{column}" in wanted:
            values = number(column)
            if column in ZERO_WHEN_MISSING:
                values = values.fillna(0.0)
            out[f"log1p_{column}"] = np.log1p(values.clip(lower=0))


def _add_days(out: pd.DataFrame, frame: pd.DataFrame, wanted: set) -> None:
    """Host tenure, review span and days since the last review (days)."""
    scraped = (_dates(frame["Last Scraped"]) if "Last Scraped" in frame.columns
               else pd.Series(pd.Timestamp(EXPORT_SCRAPE_DATE), index=frame.index))
    if "host_tenure_days" in wanted:
        out["host_tenure_days"] = (scraped - _dates(frame["Host Since"])).dt.days.astype(float)
    if "review_span_days" in wanted:
        span = _dates(frame["Last Review"]) - _dates(frame["First Review"])
        out["review_span_days"] = span.dt.days.astype(float)
    if "days_since_last_review" in wanted:
        out["days_since_last_review"] = (scraped - _dates(frame["Last Review"])).dt.days.astype(float)


def _add_counts_and_flags(out: pd.DataFrame, frame: pd.DataFrame, wanted: set, number) -> None:
    """Counts, description length, distance to the centre (km) and 0/1 flags.<<"""
    if "amenities_count" in wanted:
        out["amenities_count"] = _list_length(frame["Amenities"]).astype(float)
    if "host_verifications_count" in wanted:
        out["host_verifications_count"] = _list_length(frame["Host Verifications"]).astype(float)
    if "description_length" in wanted:
        out["description_length"] = np.log1p(frame["Description"].fillna("").astype(str).str.len())
    if "distance_to_centre_km" in wanted:
        out["distance_to_centre_km"] = _haversine_km(number("Latitude"), number("Longitude"),
                                                     CITY_CENTRE_LAT_LON)
    if "has_license" in wanted:
        out["has_license"] = frame["License"].notna().astype(float)
    if "Features" in frame.columns:
        features = frame["Features"].fillna("").astype(str)
        for name, flag in _FLAGS.items():
            out[name] = features.str.contains(flag, regex=False).astype(float)
    for name, column in (("has_security_deposit", "Security Deposit"),
                         ("has_cleaning_fee", "Cleaning Fee")):
        if name in wanted:
            out[name] = (number(column).fillna(0) > 0).astype(float)


class FeatureEngineer(BaseEstimator, TransformerMixin):
    """The first step of the preprocessor: :func:`engineer_features` with a memory of its inputs.

    ``fit`` records ``input_columns_`` (:func:`used_source_columns`) and ``features_``; nothing is
    learnt from the values. ``transform`` returns (n, len(features_)) and raises
    :class:`MissingColumnsError` naming every recorded input column the frame lacks.
    """

    def fit(self, frame: pd.DataFrame, y=None):
        self.input_columns_ = used_source_columns(frame.columns)
        self.features_ = buildable_features(self.input_columns_)
        return self

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in self.input_columns_ if c not in frame.columns]
        if missing:
            raise MissingColumnsError(missing)
        return engineer_features(frame[self.input_columns_])[self.features_]

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.asarray(self.features_, dtype=object)


class _Present:
    """Column selector: the names of ``columns`` present in the table (a class, unlike a lambda,
    so the fitted preprocessor can be saved)."""

    def __init__(self, columns):
        self.columns = list(columns)

    def __call__(self, frame: pd.DataFrame) -> list[str]:
        return [c for c in self.columns if c in frame.columns]


def input_columns(preprocessor) -> list[str]:
    """The raw columns a fitted preprocessor needs in the tables it transforms.<<"""
    first = preprocessor.steps[0][1] if hasattr(preprocessor, "steps") else preprocessor
    return list(first.input_columns_)


def feature_group(feature: str) -> str:
    """The group a feature belongs to in the reports' input table."""
    if feature in ("Latitude", "Longitude", "distance_to_centre_km", "Neighbourhood Cleansed",
                   "Neighbourhood Group Cleansed", "zipcode"):
        return "location"
    if feature.startswith("Review") or "review" in feature.lower():
        return "reviews"
    if feature.startswith("Availability") or "Nights" in feature or feature in (
            "instant_bookable", "Cancellation Policy", "log1p_Extra People", "Guests Included"):
        return "booking terms"
    if "host" in feature.lower():
        return "host"
    if feature in ("has_security_deposit", "has_cleaning_fee", "log1p_Security Deposit",
                   "log1p_Cleaning Fee"):
        return "fees (not the price)"
    return "property"


def input_table(preprocessor) -> pd.DataFrame:
    """One row per engineered feature of a fitted preprocessor: group, raw columns and what the
    model receives (``becomes``), sorted by group."""
    engineer = preprocessor.named_steps["engineer"]
    onehot = (preprocessor.named_steps["columns"].named_transformers_["categorical"]
              .named_steps["onehot"])
    fitted_categorical = [c for c in CATEGORICAL if c in engineer.features_]
    levels = {column: len(categories) for column, categories
              in zip(fitted_categorical, onehot.categories_, strict=True)}
    rows = []
    for feature in engineer.features_:
        if feature in CATEGORICAL:
            becomes = (f"one-hot, {levels[feature]} levels (rare ones grouped as "
                       "\"infrequent\")")
        elif feature.startswith("log1p_"):
            becomes = "log(1 + value), standardised; missing: k-NN imputed, flagged"
        elif feature in ENGINEERED_NUMERIC:
            becomes = "derived number, standardised"
        else:
            becomes = "standardised; missing: k-NN imputed, flagged"
        rows.append({"feature": feature, "group": feature_group(feature),
                     "raw columns": ", ".join(FEATURE_SOURCES[feature]), "becomes": becomes})
    return pd.DataFrame(rows).sort_values(["group", "feature"], kind="stable").set_index("feature")


def check_input_columns(preprocessor, columns) -> None:
    """Raise :class:`MissingColumnsError` naming the inputs of ``preprocessor`` not in ``columns``."""
    present = set(columns)
    missing = [c for c in input_columns(preprocessor) if c not in present]
    if missing:
        raise MissingColumnsError(missing)


def make_preprocessor(n_neighbors: int = 5, min_frequency: int = 5) -> Pipeline:
    """The fitted part of the tabular features: raw listing frame -> float32 matrix (n, d).

    Numeric: standardised, then KNN-imputed (missing indicators kept). Categorical: missing ->
    "missing", one-hot with levels seen fewer than ``min_frequency`` times (and unseen ones at
    predict time) in an "infrequent" column.
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
        [("numeric", numeric, _Present(NUMERIC)), ("categorical", categorical, _Present(CATEGORICAL))],
        remainder="drop", verbose_feature_names_out=True,
    )
    return Pipeline([
        ("engineer", FeatureEngineer()),
        ("columns", columns),
        ("float32", FunctionTransformer(_to_float32, feature_names_out="one-to-one")),
    ])


def _to_float32(matrix) -> np.ndarray:
    return np.asarray(matrix, dtype=np.float32)


def log_target(prices_eur: np.ndarray) -> np.ndarray:
    """Training target: natural log of the nightly price in euros, shape (n,), float32."""
    return np.log(np.asarray(prices_eur, dtype=np.float64)).astype(np.float32)


def price_from_log(log_prices: np.ndarray) -> np.ndarray:
    """Inverse of :func:`log_target`: predictions back to euros, shape (n,), float64."""
    return np.exp(np.asarray(log_prices, dtype=np.float64).reshape(-1))


#: The project's own objects in a fitted preprocessor (skops does not trust them by itself).
TRUSTED_TYPES = (FeatureEngineer, _Present, _to_float32)

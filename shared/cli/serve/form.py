"""The price-estimate form: which fields it asks for, their defaults, and how an answer becomes
one ``listings.csv`` row.

The fields are derived, never listed by hand per model: the raw columns the chosen models'
fitted preprocessors read (:func:`shared.features.tabular.input_columns`), plus ``Room Type``
(the price range's width depends on it), each described in a person's terms (:data:`LABELS`).
Choices, defaults and number bounds come from the training listings:

* choices: the levels seen in training, most frequent first;
* defaults: the training median (numbers, dates) or most common value (choices, flags), the
  most frequent items for a list (amenities, verifications), nothing for free text; the page
  states each default;
* bounds: :data:`NUMBER_BOUNDS` (what the quantity can be), widened to the training range.

Some columns are not asked: ``Neighbourhood Group Cleansed`` follows from the neighbourhood,
``Zipcode`` is the nearest training listing's, ``Last Scraped`` is the export's scrape date, and
``City`` / ``Country`` are Madrid, Spain. :func:`parse_form` turns the submitted text into the row
(``{column: text or None}``) or raises :class:`FormError` naming the field.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from shared.data import columns as cols

#: Asked first and always required (when the models read them): the listing in a person's terms.
MAIN = ("Room Type", "Property Type", "Accommodates", "Bedrooms", "Bathrooms", "Beds",
        "Neighbourhood Cleansed", "Latitude", "Longitude")
#: Filled from other answers, never asked (see the module docstring).
DERIVED = ("Neighbourhood Group Cleansed", "Zipcode", "Last Scraped")
LIST_COLUMNS = ("Amenities", "Host Verifications")
DATE_COLUMNS = ("Host Since", "First Review", "Last Review")
FLAG_COLUMNS = {"Features": tuple(cols._FLAGS.values()), "License": ("License",)}
TEXT_LIMIT = 10_000  # characters of a free-text answer
EARLIEST_DATE = dt.date(2008, 1, 1)  # Airbnb's founding year: no host or review before it
SCRAPE_DATE = dt.date.fromisoformat(cols.EXPORT_SCRAPE_DATE)

LABELS = {
    "Room Type": "Room type", "Property Type": "Property type",
    "Neighbourhood Cleansed": "Neighbourhood", "Neighbourhood Group Cleansed": "District",
    "Accommodates": "Guests", "Bedrooms": "Bedrooms", "Bathrooms": "Bathrooms", "Beds": "Beds",
    "Latitude": "Latitude", "Longitude": "Longitude", "Bed Type": "Bed type",
    "Guests Included": "Guests included in the price", "Extra People": "Fee per extra guest (EUR)",
    "Security Deposit": "Security deposit (EUR, empty: none)",
    "Cleaning Fee": "Cleaning fee (EUR, empty: none)",
    "Minimum Nights": "Minimum nights", "Maximum Nights": "Maximum nights",
    "Availability 30": "Nights free in the next 30 days",
    "Availability 60": "Nights free in the next 60 days",
    "Availability 90": "Nights free in the next 90 days",
    "Availability 365": "Nights free in the next 365 days",
    "Number of Reviews": "Number of reviews", "Reviews per Month": "Reviews per month",
    "Review Scores Rating": "Overall rating (0-100)",
    "Review Scores Accuracy": "Accuracy score (0-10)",
    "Review Scores Cleanliness": "Cleanliness score (0-10)",
    "Review Scores Checkin": "Check-in score (0-10)",
    "Review Scores Communication": "Communication score (0-10)",
    "Review Scores Location": "Location score (0-10)", "Review Scores Value": "Value score (0-10)",
    "Host Since": "Host since", "Host Listings Count": "Host's listings",
    "Calculated host listings count": "Host's listings in this city",
    "Host Response Rate": "Host response rate (%)", "Host Response Time": "Host response time",
    "Cancellation Policy": "Cancellation policy", "First Review": "First review",
    "Last Review": "Last review", "Amenities": "Amenities (comma-separated)",
    "Host Verifications": "Host verifications (comma-separated)", "Description": "Description",
    "Host Is Superhost": "Superhost", "Host Identity Verified": "Host identity verified",
    "Instant Bookable": "Instant booking", "Is Location Exact": "Location shown exactly",
    "License": "Has a tourist licence number",
}

#: column -> (lowest, highest, whole number): what the quantity can be (widened to the training
#: range by :func:`number_field`).
NUMBER_BOUNDS = {
    "Accommodates": (1, 16, True), "Bedrooms": (0, 20, True), "Bathrooms": (0, 20, False),
    "Beds": (0, 32, True), "Guests Included": (0, 16, True), "Extra People": (0, 1000, False),
    "Security Deposit": (0, 10_000, False), "Cleaning Fee": (0, 1000, False),
    "Minimum Nights": (1, 1125, True), "Maximum Nights": (1, 10_000, True),
    "Availability 30": (0, 30, True), "Availability 60": (0, 60, True),
    "Availability 90": (0, 90, True), "Availability 365": (0, 365, True),
    "Number of Reviews": (0, 10_000, True), "Reviews per Month": (0, 100, False),
    "Review Scores Rating": (0, 100, False), "Host Response Rate": (0, 100, False),
    "Host Listings Count": (0, 10_000, True), "Calculated host listings count": (0, 10_000, True),
    **{f"Review Scores {s}": (0, 10, False)
       for s in ("Accuracy", "Cleanliness", "Checkin", "Communication", "Location", "Value")},
}


class FormError(ValueError):
    """An answer that cannot be used; ``field`` is the form key, the message names it."""

    def __init__(self, field_key: str, message: str):
        self.field = field_key
        super().__init__(message)


@dataclass(frozen=True)
class Field:
    """One form input. ``key``: its name in the form; ``column``: the CSV column it fills (a
    flag fills one item of a comma-separated column); ``kind``: choice, number, date, text,
    textarea, list or flag; ``low`` / ``high`` bound a number (units of the column) or a date
    (ISO text); ``default`` is what the page starts with, ``default_note`` says where it comes
    from."""

    key: str
    column: str
    label: str
    kind: str
    main: bool = False
    required: bool = False
    default: object = None
    default_note: str = ""
    choices: tuple = ()
    low: object = None
    high: object = None
    integer: bool = False

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, (), "")}


@dataclass
class Form:
    """The fields of one pair of models and what fills the derived columns."""

    fields: list[Field]
    columns: tuple[str, ...]  # every raw column the models read (plus Room Type)
    groups: dict = field(default_factory=dict)  # neighbourhood -> district (most common)

    @property
    def asked(self) -> set[str]:
        """The columns a field fills."""
        return {f.column for f in self.fields}

    def spec(self) -> list[dict]:
        return [f.to_json() for f in self.fields]


# ----------------------------------------------------------------------------- building


def build_form(columns, train: pd.DataFrame) -> Form:
    """The form for models reading raw ``columns`` (``Room Type`` is always asked), defaults and
    choices from the training listings ``train`` (raw text columns, one row per listing)."""
    needed = list(dict.fromkeys(["Room Type", *columns]))
    fields = []
    for column in [c for c in MAIN if c in needed] + [c for c in needed if c not in MAIN]:
        if column in DERIVED and not (column == "Neighbourhood Group Cleansed"
                                      and "Neighbourhood Cleansed" not in needed):
            continue
        fields += column_fields(column, train[column] if column in train else
                                pd.Series([], dtype=object), main=column in MAIN)
    groups = {}
    if {"Neighbourhood Cleansed", "Neighbourhood Group Cleansed"} <= set(train.columns):
        pairs = train[["Neighbourhood Cleansed", "Neighbourhood Group Cleansed"]].dropna()
        groups = pairs.groupby("Neighbourhood Cleansed")["Neighbourhood Group Cleansed"].agg(
            lambda s: s.value_counts().index[0]).to_dict()
    return Form(fields, tuple(needed), groups)


def column_fields(column: str, values: pd.Series, main: bool = False) -> list[Field]:
    """The field(s) asking for ``column``; ``values``: its training cells (text)."""
    label = LABELS.get(column, column)
    if column in FLAG_COLUMNS:
        return [flag_field(column, item, values) for item in FLAG_COLUMNS[column]]
    if column in NUMBER_BOUNDS or column in ("Latitude", "Longitude"):
        return [number_field(column, label, values, main)]
    if column in DATE_COLUMNS:
        dates = pd.to_datetime(values, errors="coerce", format="%Y-%m-%d").dropna()
        default = dates.sort_values().iloc[len(dates) // 2].date().isoformat() if len(dates) else None
        return [Field(column, column, label, "date", main, main, default,
                      "median of the training listings", low=EARLIEST_DATE.isoformat(),
                      high=SCRAPE_DATE.isoformat())]
    if column in LIST_COLUMNS:
        return [list_field(column, label, values)]
    if column in cols.CATEGORICAL or column == "Zipcode":
        present = values.dropna().astype(str).str.strip()
        levels = tuple(present[present != ""].value_counts().index)
        return [Field(column, column, label, "choice", main, main, levels[0] if levels else None,
                      "most common in the training listings", choices=levels)]
    kind = "textarea" if column == "Description" else "text"
    return [Field(column, column, label, kind, main, main, "",
                  "the model then sees no text")]


def number_field(column: str, label: str, values: pd.Series, main: bool) -> Field:
    """A number field: default the training median, bounds :data:`NUMBER_BOUNDS` widened to the
    training range (latitude and longitude: the training listings' box, 0.05 degrees around)."""
    numbers = pd.to_numeric(values.astype("string").str.replace(r"[$€%\s,]", "", regex=True),
                            errors="coerce").dropna()
    if column in ("Latitude", "Longitude"):
        low, high = ((round(float(numbers.min()) - 0.05, 4), round(float(numbers.max()) + 0.05, 4))
                     if len(numbers) else (40.3, 40.6) if column == "Latitude" else (-3.9, -3.5))
        integer = False
    else:
        low, high, integer = NUMBER_BOUNDS[column]
        if len(numbers):
            low, high = min(low, float(numbers.min())), max(high, float(numbers.max()))
    default = float(numbers.median()) if len(numbers) else None
    if default is not None:
        default = round(default) if integer else round(default, 6 if column in ("Latitude", "Longitude") else 2)
    return Field(column, column, label, "number", main, main, default,
                 "median of the training listings", low=low, high=high, integer=integer)


def flag_field(column: str, item: str, values: pd.Series) -> Field:
    """A yes/no field filling one item of ``column`` (``Features``) or the column itself
    (``License``: any text means yes); default: what most training listings have."""
    if column == "License":
        share = float(values.notna().mean()) if len(values) else 0.0
    else:
        share = float(values.fillna("").astype(str).str.contains(item, regex=False).mean()) \
            if len(values) else 0.0
    return Field(item, column, LABELS.get(item, item), "flag", default=share > 0.5,
                 default_note=f"{share:.0%} of the training listings")


def list_field(column: str, label: str, values: pd.Series) -> Field:
    """A comma-separated list: default the median number of items, the most frequent ones."""
    lists = values.fillna("").astype(str).map(
        lambda s: [x.strip() for x in s.split(",") if x.strip()])
    counts = Counter(item for items in lists for item in items)
    n = int(np.median(lists.map(len))) if len(lists) else 0
    default = ", ".join(item for item, _ in counts.most_common(n))
    return Field(column, column, label, "list", default=default,
                 default_note=f"the {n} most common items of the training listings")


# ----------------------------------------------------------------------------- parsing


def parse_form(form: Form, answers) -> dict[str, str | None]:
    """The listing row ``{column: text or None}`` for the asked columns, from the submitted
    ``answers`` (``{key: text}``; an absent flag means "no"). Raises :class:`FormError` naming
    the first field that cannot be used."""
    row: dict[str, str | None] = {}
    flags: dict[str, list[str]] = {}
    for f in form.fields:
        text = answers.get(f.key)
        text = text.strip() if isinstance(text, str) else ""
        if f.kind == "flag":
            flags.setdefault(f.column, [])
            if text.lower() in ("on", "true", "yes", "1"):
                flags[f.column].append(f.key)
            continue
        if not text:
            if f.required:
                raise FormError(f.key, f"{f.label}: required")
            row[f.column] = None
            continue
        row[f.column] = parse_value(f, text)
    for column, items in flags.items():
        row[column] = (("yes" if column == "License" else ",".join(items)) if items else None)
    return row


def parse_value(f: Field, text: str) -> str:
    """``text`` checked against field ``f``; returns the CSV cell, :class:`FormError` if unusable."""
    if len(text) > TEXT_LIMIT:
        raise FormError(f.key, f"{f.label}: longer than {TEXT_LIMIT:,} characters")
    if f.kind == "choice":
        if text not in f.choices:
            raise FormError(f.key, f"{f.label}: {text[:60]!r} is not one of the choices")
        return text
    if f.kind == "number":
        return number_text(f, text)
    if f.kind == "date":
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            raise FormError(f.key, f"{f.label}: {text[:30]!r} is not a date (YYYY-MM-DD)") from None
        if not f.low <= day.isoformat() <= f.high:
            raise FormError(f.key, f"{f.label}: must be a date from {f.low} to {f.high}, got {text}")
        return day.isoformat()
    return " ".join(text.split()) if f.kind != "textarea" else text


def number_text(f: Field, text: str) -> str:
    """A number answer as its CSV cell; :class:`FormError` when it is not a finite number within
    the field's bounds (or not whole where it must be)."""
    try:
        value = float(text)
    except ValueError:
        raise FormError(f.key, f"{f.label}: {text[:30]!r} is not a number") from None
    whole = " whole" if f.integer else ""
    if not math.isfinite(value) or not f.low <= value <= f.high:
        raise FormError(f.key, f"{f.label}: must be a{whole} number from {_plain(f.low)} to "
                               f"{_plain(f.high)}, got {text[:30]}")
    if f.integer and not value.is_integer():
        raise FormError(f.key, f"{f.label}: must be a whole number, got {text[:30]}")
    return str(int(value)) if f.integer else repr(value)


def _plain(number: float) -> str:
    return f"{number:g}" if abs(number) < 1e6 else f"{number:,.0f}"

"""The training listings behind the page: choices and defaults of the form, the map, the
derived columns (district, zipcode) and the five most similar listings of an answer.

The training listings are the ``train`` part of the models folder's ``split.json`` (the rows the
models were fitted on), read from the data directory without decoding any photo (no photo is
shown or served); every usable listing with a price when the split does not match the data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shared.data import schema
from shared.data.dataset import load_dataset
from shared.data.split import SPLIT_FILE
from shared.features.tabular import CITY_CENTRE_LAT_LON

SIMILAR = 5
#: What makes two listings similar, after the same room type: a kilometre of distance counts as
#: much as one guest, bedroom, bathroom or bed of difference.
SIZE_COLUMNS = ("Accommodates", "Bedrooms", "Bathrooms", "Beds")
EARTH_RADIUS_KM = 6371.0


@dataclass
class TrainingListings:
    """``frame``: the training listings' raw text columns plus ``price`` (EUR), ``lat`` and
    ``lon`` (degrees, NaN when unparseable); ``source``: which rows these are, in words."""

    frame: pd.DataFrame
    source: str

    @property
    def centre(self) -> tuple[float, float]:
        """Median (lat, lon) of the listings, degrees (Puerta del Sol without coordinates)."""
        lat, lon = self.frame["lat"].median(), self.frame["lon"].median()
        return (CITY_CENTRE_LAT_LON if np.isnan(lat) or np.isnan(lon)
                else (float(lat), float(lon)))

    def map_points(self) -> dict:
        """The map's dots: {"lat": [...], "lon": [...], "hood": [index into "hoods"], "hoods"}
        (degrees, 5 decimals, about a metre)."""
        located = self.frame.dropna(subset=["lat", "lon"])
        hood = located.get("Neighbourhood Cleansed", pd.Series("", index=located.index)).fillna("")
        hoods = sorted(set(hood))
        index = {name: i for i, name in enumerate(hoods)}
        return {"lat": np.round(located["lat"], 5).tolist(),
                "lon": np.round(located["lon"], 5).tolist(),
                "hood": [index[h] for h in hood], "hoods": hoods}

    def nearest_value(self, column: str, lat: float, lon: float) -> str | None:
        """``column`` of the nearest training listing to (lat, lon) that has it (None: none has)."""
        if column not in self.frame:
            return None
        rows = self.frame[self.frame[column].notna() & self.frame["lat"].notna()]
        if rows.empty:
            return None
        km = distance_km(lat, lon, rows["lat"].to_numpy(), rows["lon"].to_numpy())
        return str(rows[column].iloc[int(np.argmin(km))])

    def similar(self, row: dict, k: int = SIMILAR) -> list[dict]:
        """The ``k`` training listings most like ``row`` (a listing's raw columns): the same room
        type when any has it, then the smallest sum of distance (km) and differences in guests,
        bedrooms, bathrooms and beds. Each: {"id", "price" (EUR), "km" (None without
        coordinates), "lat", "lon" (degrees), "room_type", "property_type", "neighbourhood", "guests", "bedrooms"}."""
        frame = self.frame
        same = frame[frame["Room Type"] == row.get("Room Type")]
        pool = same if len(same) else frame
        score = np.zeros(len(pool))
        km = np.full(len(pool), np.nan)
        lat, lon = _number(row.get("Latitude")), _number(row.get("Longitude"))
        if not (np.isnan(lat) or np.isnan(lon)):
            km = distance_km(lat, lon, pool["lat"].to_numpy(), pool["lon"].to_numpy())
            score += np.nan_to_num(km, nan=100.0)
        for column in SIZE_COLUMNS:
            wanted = _number(row.get(column))
            if column in pool and not np.isnan(wanted):
                have = pd.to_numeric(pool[column], errors="coerce").to_numpy(dtype=float)
                score += np.nan_to_num(np.abs(have - wanted), nan=10.0)
        order = np.argsort(score, kind="stable")[:k]
        return [_summary(pool.iloc[i], km[i]) for i in order]


def _summary(listing: pd.Series, km: float) -> dict:
    def text(column):
        value = listing.get(column)
        return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)

    def count(column):  # "2.0" -> "2", "1.5" stays
        number = _number(listing.get(column))
        return None if np.isnan(number) else f"{number:g}"

    return {"id": int(listing[schema.ID_COLUMN]), "price": round(float(listing["price"]), 2),
            "km": None if np.isnan(km) else round(float(km), 2),
            "lat": None if np.isnan(listing["lat"]) else round(float(listing["lat"]), 5),
            "lon": None if np.isnan(listing["lon"]) else round(float(listing["lon"]), 5),
            "room_type": text("Room Type"), "property_type": text("Property Type"),
            "neighbourhood": text("Neighbourhood Cleansed"), "guests": count("Accommodates"),
            "bedrooms": count("Bedrooms")}


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def distance_km(lat: float, lon: float, lats: np.ndarray, lons: np.ndarray) -> np.ndarray:
    """Great-circle distance (km) from (lat, lon) to each of (lats, lons), degrees; shape (n,)."""
    lat1, lon1 = np.radians(lat), np.radians(lon)
    lat2, lon2 = np.radians(lats.astype(float)), np.radians(lons.astype(float))
    a = (np.sin((lat2 - lat1) / 2) ** 2
         + np.cos(lat1) * np.cos(lat2) * np.sin((lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def train_ids(models_dir: Path) -> np.ndarray | None:
    """The listing IDs of the ``train`` part of ``models_dir/split.json`` (None without one)."""
    try:
        stored = json.loads((Path(models_dir) / SPLIT_FILE).read_text())
        return np.asarray(stored["train"], dtype=np.int64)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_training_listings(data_dir, models_dir) -> TrainingListings:
    """The training listings of the models in ``models_dir``, from the dataset ``data_dir``."""
    dataset = load_dataset(data_dir, require_price=True, check_photos=False)
    frame = dataset.frame
    ids = train_ids(models_dir)
    source = f"every usable listing of {Path(dataset.data_dir).name}"
    if ids is not None:
        chosen = frame[frame[schema.ID_COLUMN].isin(ids)]
        if len(chosen):
            frame = chosen
            source = f"the training part of {SPLIT_FILE} ({Path(dataset.data_dir).name})"
    frame = frame.assign(**{key: pd.to_numeric(frame[column], errors="coerce")
                            if column in frame else np.nan
                            for key, column in (("lat", "Latitude"), ("lon", "Longitude"))})
    return TrainingListings(frame.reset_index(drop=True), source)

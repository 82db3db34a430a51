"""One estimate: the answers become a one-listing dataset directory, read and scored exactly as
``airbnb-dl predict`` reads and scores a directory.

Per request, a temporary folder (removed afterwards, whatever happens) holds::

    data/listings.csv        one ';'-separated row: ID 1, the asked columns, City, Country
    data/images/1.jpg        the uploaded bytes as they came (or the placeholder photo)
    converted/               the loader's RGB copy of a photo TensorFlow cannot decode (CMYK)
    features/                the photo's backbone features (never the user's feature cache)

The row is read by :func:`shared.data.dataset.load_dataset` (``require_price=False``) and its
photo checked by :func:`shared.data.dataset.check_photo`, the loader's own check, without the
loader's photo-check index (which lives in the user's cache); each model then scores it with
:func:`shared.cli.predict.predict_frame`, the function behind ``airbnb-dl predict``. So the page
shows, to the cent, what ``airbnb-dl predict --model models/<name>`` writes for the same row and
photo (the downloadable ``listings.csv`` of the answer).

Estimates run one at a time (a lock): the models and the backbone are shared, and the machine
has two cores either way. Within one, OpenMP (scikit-learn's gradient boosting) runs on one
thread: for one row, waking a pool of threads for every tree costs more than it saves, much more
on a loaded machine (median 0.50 -> 0.40 s, 95th percentile 1.8 -> 0.5 s at a load of 7 on 2
cores); each row's prediction is the same either way.
"""

from __future__ import annotations

import logging
import io
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from threadpoolctl import threadpool_limits

from shared.cli.predict import predict_frame
from shared.cli.serve import form as forms
from shared.cli.serve.form import build_form
from shared.cli.serve.listings import TrainingListings
from shared.cli.serve.listings import load_training_listings
from shared.cli.serve.models import ServedModels, load_models, needs_photo, read_picks
from shared.cli.serve.photo import check_upload, decode_failure, placeholder_jpeg
from shared import environment
from shared.data import schema
from shared.data.dataset import check_photo, load_dataset
from shared.features.tabular import input_columns

logger = logging.getLogger(__name__)

COVERAGE = 0.8
LISTING_ID = 1
FIXED = {"City": "Madrid", "Country": "Spain"}
DERIVED_LABELS = {"Neighbourhood Group Cleansed": "district (from the neighbourhood)",
                  "Zipcode": "zipcode (the nearest training listing's)"}


@dataclass
class Estimator:
    """Everything an estimate needs, loaded once: the two models, the form and the training
    listings. :meth:`estimate` is safe to call from many threads (one runs at a time)."""

    models: ServedModels
    form: forms.Form
    listings: TrainingListings
    lock: threading.Lock = field(default_factory=threading.Lock)
    placeholder: bytes = field(default_factory=placeholder_jpeg)

    def listing_row(self, answers) -> dict[str, str | None]:
        """The CSV row of ``answers`` ({form key: text}): asked columns, derived ones, fixed
        ones. :class:`~shared.cli.serve.form.FormError` names a field that cannot be used."""
        row = forms.parse_form(self.form, answers)
        lat, lon = row.get("Latitude"), row.get("Longitude")
        point = ((float(lat), float(lon)) if lat is not None and lon is not None
                 else self.listings.centre)
        columns = set(self.form.columns)
        if "Neighbourhood Group Cleansed" in columns and "Neighbourhood Cleansed" in row:
            row["Neighbourhood Group Cleansed"] = self.form.groups.get(row["Neighbourhood Cleansed"])
        if "Zipcode" in columns:
            row["Zipcode"] = self.listings.nearest_value("Zipcode", *point)
        if "Last Scraped" in columns:
            row["Last Scraped"] = forms.SCRAPE_DATE.isoformat()
        return {schema.ID_COLUMN: str(LISTING_ID), **row, **FIXED}

    def estimate(self, answers, photo: bytes | None) -> dict:
        """The page's answer for ``answers`` and the uploaded ``photo`` bytes (None: no photo):
        {"models": {slot: {"name", "price", "low", "high", "uses_photo"} or {"name", "note"}},
        "photo_change_eur", "similar", "derived", "csv", "notes", "seconds"} (prices in EUR per
        night, ``coverage`` 80%). Raises :class:`~shared.cli.serve.form.FormError` for bad input."""
        start = time.perf_counter()
        row = self.listing_row(answers)
        with (self.lock, threadpool_limits(limits=1, user_api="openmp"),
              tempfile.TemporaryDirectory(prefix="airbnb-dl-serve-") as tmp):
            if photo is not None:
                check_upload(photo)  # in the lock: Pillow's warning filters are process-wide
            data_dir = write_listing(Path(tmp) / "data", row, photo or self.placeholder)
            dataset = load_listing(data_dir, Path(tmp) / "converted")
            features = {"cache_root": Path(tmp) / "features",
                        "backbones": self.models.backbones}
            results = {slot: self._score(bundle, dataset, photo is not None, features)
                       for slot, bundle in self.models.by_slot().items()}
            csv_text = (data_dir / schema.LISTINGS_FILE).read_text(encoding="utf-8")
        return self._answer(row, results, photo is not None, csv_text, start)

    def _score(self, bundle, dataset, has_photo: bool, features: dict) -> dict:
        uses_photo = needs_photo(bundle)
        if uses_photo and not has_photo:
            return {"name": bundle.name, "uses_photo": True,
                    "note": f"{bundle.name} needs a photo: upload one to get its estimate"}
        frame = predict_frame(bundle, dataset, COVERAGE, **features)
        return {"name": bundle.name, "uses_photo": uses_photo,
                "price": float(frame["predicted_price"].iloc[0]),
                "low": float(frame["price_low"].iloc[0]), "high": float(frame["price_high"].iloc[0])}

    def _answer(self, row: dict, results: dict, has_photo: bool, csv_text: str,
                start: float) -> dict:
        fusion, tabular = results["fusion"], results["tabular"]
        notes = []
        if not has_photo:
            notes.append("No photo: the estimate is the tabular model's only. Upload a JPEG or "
                         "PNG to see what the photo changes.")
        elif not fusion["uses_photo"]:
            notes.append(f"{fusion['name']} does not look at the photo.")
        change = (round(fusion["price"] - tabular["price"], 2)
                  if "price" in fusion and "price" in tabular else None)
        derived = {label: row.get(column) for column, label in DERIVED_LABELS.items()
                   if column in self.form.columns and column not in self.form.asked}
        return {"models": results, "photo_change_eur": change, "coverage": COVERAGE,
                "similar": self.listings.similar(row), "derived": derived, "csv": csv_text,
                "notes": notes, "seconds": round(time.perf_counter() - start, 3)}


def write_listing(data_dir: Path, row: dict, photo: bytes) -> Path:
    """Write ``row`` as ``data_dir/listings.csv`` (';'-separated, one row) and ``photo`` as
    ``data_dir/images/<ID>.jpg``; returns ``data_dir``. Only fixed names: nothing from the
    request names a path."""
    images = data_dir / schema.IMAGES_DIR
    images.mkdir(parents=True)
    buffer = io.StringIO()
    pd.DataFrame([row]).to_csv(buffer, sep=schema.CSV_SEPARATOR, index=False)
    (data_dir / schema.LISTINGS_FILE).write_text(buffer.getvalue(), encoding="utf-8")
    (images / f"{LISTING_ID}.jpg").write_bytes(photo)
    return data_dir


def load_listing(data_dir: Path, converted_dir: Path):
    """The one-listing :class:`~shared.data.dataset.Dataset` of ``data_dir``, as
    ``load_dataset(data_dir, require_price=False)`` reads it: the table through the loader, the
    photo through the loader's check (:func:`~shared.data.dataset.check_photo`), with a photo
    TensorFlow cannot decode converted into ``converted_dir``. FormError when the photo fails."""
    dataset = load_dataset(data_dir, require_price=False, check_photos=False)
    if len(dataset.frame) != 1:  # cannot happen for a row the form built: say why if it does
        reasons = "; ".join(dataset.drops) or "unknown reason"
        raise forms.FormError("", f"The listing cannot be read: {reasons}")
    check = check_photo(Path(dataset.frame["image_path"].iloc[0]), converted_dir)
    if check.reason:
        raise decode_failure(check.reason)
    dataset.frame = dataset.frame.assign(image_path=[check.path], image_width=[check.width],
                                         image_height=[check.height])
    return dataset


def build_estimator(models_dir, data_dir=None, overrides: dict | None = None):
    """Load everything once and run one warm-up estimate; returns (estimator, start-up seconds).
    Logs one progress line once the picks and the data directory are found.

    Raises :class:`~shared.cli.serve.models.ServeSetupError` (no models folder or picks),
    :class:`shared.environment.DataDirError` and the model-loading errors, each one line."""
    start = time.perf_counter()
    picks = read_picks(Path(models_dir), overrides)
    data_dir = environment.resolve_data_dir(data_dir)
    logger.info(f"loading {picks['fusion']} and {picks['tabular']} from {models_dir}, training "
                f"listings from {data_dir} ...")
    models = load_models(Path(models_dir), picks)
    listings = load_training_listings(data_dir, models_dir)
    columns = [c for b in models.by_slot().values() for p in b.preprocessors()
               for c in input_columns(p)]
    estimator = Estimator(models, build_form(columns, listings.frame), listings)
    defaults = {f.key: ("on" if f.default is True else "" if f.default is False
                        else str(f.default if f.default is not None else ""))
                for f in estimator.form.fields}
    estimator.estimate(defaults, warmup_photo())  # compiles the models' graphs before the page opens
    return estimator, time.perf_counter() - start


def warmup_photo() -> bytes:
    """A 320 x 240 synthetic gradient JPEG (no listing photo), for the warm-up estimate."""
    x = np.linspace(0, 255, 320, dtype=np.float32)
    y = np.linspace(0, 255, 240, dtype=np.float32)[:, None]
    pixels = np.stack([np.broadcast_to(x, (240, 320)), np.broadcast_to(y, (240, 320)),
                       np.full((240, 320), 128.0)], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()

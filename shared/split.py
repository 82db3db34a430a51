"""The one train/validation/test split shared by every model of both deliverables.

70/10/20, stratified on deciles of the price, seeded. The split is a function of the sorted
usable listing IDs, their prices and the seed only, so the same data gives the same listing IDs in
each part on every machine. It is persisted as ``split.json`` next to the models and reused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from shared import config
from shared.dataset import Dataset, dataset_fingerprint
from shared.io import write_json_atomic

FRACTIONS = {"train": 0.70, "val": 0.10, "test": 0.20}
PRICE_BINS = 10
SPLIT_FILE = "split.json"


class SplitError(ValueError):
    """The persisted split does not fit the dataset (other rows or other seed)."""


@dataclass(frozen=True)
class Split:
    """Listing IDs of each part (sorted int64 arrays) plus what the split was made from."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    seed: int
    fingerprint: str

    def parts(self) -> dict[str, np.ndarray]:
        return {"train": self.train, "val": self.val, "test": self.test}

    def to_json(self) -> dict:
        return {"seed": self.seed, "dataset_fingerprint": self.fingerprint,
                "fractions": FRACTIONS,
                **{name: ids.tolist() for name, ids in self.parts().items()}}


def _strata(prices: np.ndarray, n_bins: int) -> np.ndarray:
    """Price-quantile bin per row (fewer bins when the data is too small to fill them)."""
    n_bins = max(1, min(n_bins, len(prices) // 10))
    if n_bins == 1:
        return np.zeros(len(prices), dtype=int)
    return pd.qcut(pd.Series(prices).rank(method="first"), q=n_bins, labels=False).to_numpy()


def make_split(dataset: Dataset, seed: int = config.SEED) -> Split:
    """Split the usable listings 70/10/20, stratified on price deciles.

    Raises:
        SplitError: fewer than 10 priced listings (too few for three parts).
    """
    order = np.argsort(dataset.ids, kind="stable")
    ids, prices = dataset.ids[order], dataset.prices[order]
    if len(ids) < 10 or np.isnan(prices).any():
        raise SplitError(f"a split needs at least 10 listings, all with a price; got {len(ids)}")
    strata = _strata(prices, PRICE_BINS)
    test_size = FRACTIONS["test"]
    rest_ids, test_ids, rest_strata, _ = train_test_split(
        ids, strata, test_size=test_size, random_state=seed, stratify=strata)
    val_share = FRACTIONS["val"] / (1.0 - test_size)
    stratify_rest = rest_strata if np.bincount(rest_strata).min() >= 2 else None
    train_ids, val_ids = train_test_split(
        rest_ids, test_size=val_share, random_state=seed + 1, stratify=stratify_rest)
    return Split(np.sort(train_ids), np.sort(val_ids), np.sort(test_ids), seed,
                 dataset_fingerprint(dataset))


def load_or_make_split(dataset: Dataset, models_dir: Path, seed: int = config.SEED) -> Split:
    """Reuse ``models_dir/split.json`` when it was made from the same rows and seed; else make it.

    A persisted split for other rows (another dataset) is replaced, never silently mixed.
    """
    path = Path(models_dir) / SPLIT_FILE
    fingerprint = dataset_fingerprint(dataset)
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("dataset_fingerprint") == fingerprint and stored.get("seed") == seed:
            return Split(*(np.asarray(stored[p], dtype=np.int64) for p in ("train", "val", "test")),
                         seed, fingerprint)
    split = make_split(dataset, seed)
    write_json_atomic(path, split.to_json())
    return split

"""The one train/validation/calibration/test split shared by every model of both deliverables.

60/10/10/20, stratified on deciles of the price, seeded. The parts have one job each:

* ``train`` fits every model, transformer, imputer and scaler;
* ``val`` chooses: hyperparameter searches, early stopping, which model speaks for a kind;
* ``cal`` chooses nothing: it only calibrates the prediction intervals (:mod:`shared.intervals`),
  so the models were never selected to do well on it and its residuals are those of new listings;
* ``test`` is read once, for the reported numbers.

The test part is drawn first, so adding the calibration part (it came from the training share)
left the test listings unchanged. The split is a function of the sorted
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

FRACTIONS = {"train": 0.60, "val": 0.10, "cal": 0.10, "test": 0.20}
PART_NAMES = tuple(FRACTIONS)
PRICE_BINS = 10
SPLIT_FILE = "split.json"


class SplitError(ValueError):
    """The persisted split does not fit the dataset (other rows or other seed)."""


@dataclass(frozen=True)
class Split:
    """Listing IDs of each part (sorted int64 arrays) plus what the split was made from."""

    train: np.ndarray
    val: np.ndarray
    cal: np.ndarray
    test: np.ndarray
    seed: int
    fingerprint: str

    def parts(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in PART_NAMES}

    def parts_sha256(self) -> str:
        """sha256 of the listing IDs of every part, in order: two splits with the same value put
        every listing in the same part (the dataset fingerprint alone does not say that)."""
        import hashlib

        digest = hashlib.sha256()
        for name, ids in self.parts().items():
            digest.update(f"{name}:{','.join(map(str, ids.tolist()))};".encode())
        return digest.hexdigest()

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
    """Split the usable listings 60/10/10/20 (train/val/cal/test), stratified on price deciles.

    Raises:
        SplitError: fewer than 10 priced listings (too few for four parts).
    """
    order = np.argsort(dataset.ids, kind="stable")
    ids, prices = dataset.ids[order], dataset.prices[order]
    if len(ids) < 10 or np.isnan(prices).any():
        raise SplitError(f"a split needs at least 10 listings, all with a price; got {len(ids)}")
    strata = _strata(prices, PRICE_BINS)
    test_size = FRACTIONS["test"]
    rest_ids, test_ids, rest_strata, _ = train_test_split(
        ids, strata, test_size=test_size, random_state=seed, stratify=strata)
    held_share = (FRACTIONS["val"] + FRACTIONS["cal"]) / (1.0 - test_size)
    train_ids, held_ids, _, held_strata = train_test_split(
        rest_ids, rest_strata, test_size=held_share, random_state=seed + 1,
        stratify=_stratify_or_none(rest_strata))
    cal_share = FRACTIONS["cal"] / (FRACTIONS["val"] + FRACTIONS["cal"])
    val_ids, cal_ids = train_test_split(
        held_ids, test_size=cal_share, random_state=seed + 2,
        stratify=_stratify_or_none(held_strata))
    return Split(np.sort(train_ids), np.sort(val_ids), np.sort(cal_ids), np.sort(test_ids), seed,
                 dataset_fingerprint(dataset))


def _stratify_or_none(strata: np.ndarray):
    """``strata`` when every stratum has at least 2 rows (scikit-learn's requirement), else None."""
    return strata if np.bincount(strata).min() >= 2 else None


def load_or_make_split(dataset: Dataset, models_dir: Path, seed: int = config.SEED,
                       persist: bool = True) -> Split:
    """Reuse ``models_dir/split.json`` when it was made from the same rows and seed; else make it
    (and write it when ``persist``: the non-chief workers of a multi-worker run make the same
    split but write nothing).

    A persisted split for other rows (another dataset) is replaced, never silently mixed.
    """
    path = Path(models_dir) / SPLIT_FILE
    fingerprint = dataset_fingerprint(dataset)
    if path.is_file():
        stored = json.loads(path.read_text())
        if (stored.get("dataset_fingerprint") == fingerprint and stored.get("seed") == seed
                and stored.get("fractions") == FRACTIONS):
            return Split(*(np.asarray(stored[p], dtype=np.int64) for p in PART_NAMES),
                         seed, fingerprint)
    split = make_split(dataset, seed)
    if persist:
        write_json_atomic(path, split.to_json())
    return split

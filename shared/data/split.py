"""The one train/validation/calibration/test split shared by every model of both deliverables.

60/10/10/20, grouped by host and by identical photo, stratified on price deciles, seeded.
``train`` fits everything, ``val`` chooses, ``cal`` only calibrates the prediction intervals (so
its residuals are those of new listings), ``test`` is read once for the reported numbers.
Grouped (:data:`RULE`) because a host's listings share price level, style and sometimes the
very photo: a random split would be optimistic about a host the model has never seen
(:func:`make_random_split` measures by how much). The split depends only on the sorted IDs,
prices, host IDs, photo bytes and seed, and is persisted as ``split.json``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from shared.data.dataset import Dataset, dataset_fingerprint
from shared.io import sha256_file, write_json_atomic

FRACTIONS = {"train": 0.60, "val": 0.10, "cal": 0.10, "test": 0.20}
PART_NAMES = tuple(FRACTIONS)
PRICE_BINS = 10
SPLIT_FILE = "split.json"
HOST_COLUMN = "Host ID"
#: The rule of :func:`make_split`, recorded with every persisted split.
RULE = ("groups = connected components of same Host ID and byte-identical photo (sha256); "
        "StratifiedGroupKFold, 10 folds, stratified on price deciles, shuffled with the seed; "
        "folds 0-1 test, 2 validation, 3 calibration, 4-9 train")
RANDOM_RULE = "random, stratified on price deciles (ungrouped; for comparison only)"
#: Folds of :func:`make_split` per part (10 folds of ~10% each).
FOLDS = {"test": (0, 1), "val": (2,), "cal": (3,), "train": (4, 5, 6, 7, 8, 9)}


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
    rule: str = RULE

    def parts(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in PART_NAMES}

    def parts_sha256(self) -> str:
        """sha256 of the listing IDs of every part, in order (equal values: every listing in the same
        part, which the dataset fingerprint alone does not say)."""
        digest = hashlib.sha256()
        for name, ids in self.parts().items():
            digest.update(f"{name}:{','.join(map(str, ids.tolist()))};".encode())
        return digest.hexdigest()

    def to_json(self) -> dict:
        return {"seed": self.seed, "dataset_fingerprint": self.fingerprint,
                "fractions": FRACTIONS, "rule": self.rule,
                **{name: ids.tolist() for name, ids in self.parts().items()}}


def _strata(prices: np.ndarray, n_bins: int) -> np.ndarray:
    """Price-quantile bin per row (fewer bins when the data is too small to fill them)."""
    n_bins = max(1, min(n_bins, len(prices) // 10))
    if n_bins == 1:
        return np.zeros(len(prices), dtype=int)
    return pd.qcut(pd.Series(prices).rank(method="first"), q=n_bins, labels=False).to_numpy()


def listing_groups(dataset: Dataset) -> np.ndarray:
    """Group label per listing, shape (n,) int64 in row order: the smallest listing ID of its
    connected component of "same ``Host ID``" and "byte-identical photo" (no Host ID: photo only)."""
    n = len(dataset.frame)
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(rows) -> None:
        rows = list(rows)
        for other in rows[1:]:
            a, b = find(rows[0]), find(other)
            if a != b:
                parent[max(a, b)] = min(a, b)

    hosts = (dataset.frame[HOST_COLUMN].astype("string").str.strip()
             if HOST_COLUMN in dataset.frame else pd.Series([pd.NA] * n, dtype="string"))
    paths = dataset.frame["image_path"] if "image_path" in dataset.frame else [None] * n
    photos = pd.Series([sha256_file(p) if isinstance(p, str) and Path(p).is_file() else pd.NA
                        for p in paths], dtype="string")
    for keys in (hosts.reset_index(drop=True), photos):
        present = keys[keys.notna() & (keys != "")]
        for rows in present.groupby(present, sort=True).indices.values():
            if len(rows) > 1:
                join(present.index[rows])
    roots = np.array([find(i) for i in range(n)])
    # each group named by its smallest listing ID: the labels do not depend on the row order
    return pd.Series(dataset.ids).groupby(roots).transform("min").to_numpy(dtype=np.int64)


def make_split(dataset: Dataset, seed: int) -> Split:
    """Split 60/10/10/20 (train/val/cal/test), every :func:`listing_groups` group wholly in one
    part, stratified on price deciles (:data:`RULE`). Raises :class:`SplitError` with fewer than
    10 priced listings or 10 groups."""
    order = np.argsort(dataset.ids, kind="stable")
    ids, prices = dataset.ids[order], dataset.prices[order]
    if len(ids) < 10 or np.isnan(prices).any():
        raise SplitError(f"a split needs at least 10 listings, all with a price; got {len(ids)}")
    groups = listing_groups(dataset)[order]
    if len(np.unique(groups)) < 10:
        raise SplitError(f"a grouped split needs at least 10 groups of listings (hosts and identical "
                         f"photos); these {len(ids)} listings form {len(np.unique(groups))}")
    strata = _strata(prices, PRICE_BINS)
    folds = np.empty(len(ids), dtype=int)
    splitter = StratifiedGroupKFold(n_splits=10, shuffle=True, random_state=seed)
    for fold, (_, rows) in enumerate(splitter.split(ids, strata, groups)):
        folds[rows] = fold
    parts = {part: np.sort(ids[np.isin(folds, FOLDS[part])]) for part in PART_NAMES}
    return Split(parts["train"], parts["val"], parts["cal"], parts["test"], seed,
                 dataset_fingerprint(dataset))


def make_random_split(dataset: Dataset, seed: int) -> Split:
    """The same fractions at random (stratified, ungrouped): only to measure how much such a split
    overstates the scores, never to train the reported models."""
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
                 dataset_fingerprint(dataset), RANDOM_RULE)


def _stratify_or_none(strata: np.ndarray):
    """``strata`` when every stratum has at least 2 rows (scikit-learn's requirement), else None."""
    return strata if np.bincount(strata).min() >= 2 else None


def load_or_make_split(dataset: Dataset, models_dir: Path, seed: int,
                       persist: bool = True) -> Split:
    """Reuse ``models_dir/split.json`` if made from the same rows, seed and rule, else make it
    (written when ``persist``: non-chief workers write nothing). Another dataset's split is
    replaced, never mixed."""
    path = Path(models_dir) / SPLIT_FILE
    fingerprint = dataset_fingerprint(dataset)
    if path.is_file():
        stored = json.loads(path.read_text())
        if (stored.get("dataset_fingerprint") == fingerprint and stored.get("seed") == seed
                and stored.get("fractions") == FRACTIONS and stored.get("rule") == RULE):
            return Split(*(np.asarray(stored[p], dtype=np.int64) for p in PART_NAMES),
                         seed, fingerprint)
    split = make_split(dataset, seed)
    if persist:
        write_json_atomic(path, split.to_json())
    return split

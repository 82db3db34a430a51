"""The data every model of a run trains on: one immutable object, built once per run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np

from shared.features import tabular as feats
from shared.data.dataset import Dataset, load_dataset
from shared.data.split import PART_NAMES, Split, load_or_make_split

PARTS = PART_NAMES  # ("train", "val", "cal", "test")


@dataclass(frozen=True)
class ModelData:
    """The split data of one run.

    ``parts``: {part: :class:`~shared.data.dataset.Dataset`}; ``tabular``: {part: (n, d_tab)
    float32} from ``preprocessor`` (fitted on the training rows only). Both are read-only.
    """

    dataset: Dataset
    split: Split
    parts: MappingProxyType
    preprocessor: object
    tabular: MappingProxyType

    def y_log(self, part: str) -> np.ndarray:
        """Log-price target of a part, shape (n,), float32."""
        return feats.log_target(self.parts[part].prices)

    def y_eur(self, part: str) -> np.ndarray:
        """Nightly price of a part in EUR, shape (n,)."""
        return self.parts[part].prices

    def paths(self, part: str) -> list[str]:
        """Photo paths of a part, in row order."""
        return list(self.parts[part].image_paths)

    def provenance(self) -> dict:
        """What a model trained on this data was fitted on: split fingerprint, seed and parts hash,
        sha256 of ``listings.csv`` and the feature set version."""
        return {"split_fingerprint": self.split.fingerprint, "split_seed": int(self.split.seed),
                "split_parts_sha256": self.split.parts_sha256(),
                "listings_sha256": self.dataset.csv_sha256,
                "feature_set_version": feats.FEATURE_SET_VERSION}


def prepare_data(data_dir, models_dir, seed: int, persist: bool = True) -> ModelData:
    """Load data, split (persisted in ``models_dir`` when ``persist``), fit the tabular
    preprocessor on the training rows only."""
    dataset = load_dataset(data_dir)
    models_dir = Path(models_dir)
    if persist:
        models_dir.mkdir(parents=True, exist_ok=True)
    return data_for_split(dataset, load_or_make_split(dataset, models_dir, seed, persist=persist))


def data_for_split(dataset: Dataset, split: Split) -> ModelData:
    """:class:`ModelData` of ``dataset`` cut by ``split``, the preprocessor fitted on training rows.<<"""
    parts = {name: dataset.subset(ids) for name, ids in split.parts().items()}
    preprocessor = feats.make_preprocessor()
    preprocessor.fit(parts["train"].frame)  # training rows only
    tabular = {name: np.asarray(preprocessor.transform(part.frame), dtype=np.float32)
               for name, part in parts.items()}
    for matrix in tabular.values():
        matrix.setflags(write=False)
    return ModelData(dataset, split, MappingProxyType(parts), preprocessor,
                     MappingProxyType(tabular))

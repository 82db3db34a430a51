"""Project-wide settings: where the data, models and caches live, and the global seed.

Resolution order for the dataset directory (see :func:`resolve_data_dir`):
``--data-dir`` on the command line, else the ``AIRBNB_DATA_DIR`` environment variable, else
``data/airbnb-madrid-10k/`` inside the project (gitignored, filled by ``airbnb-dl data fetch``
with the reports' dataset, which it is named after).
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Named after the set ``airbnb-dl data fetch`` builds by default (the reports' dataset).
DEFAULT_DATA_DIR = PROJECT_ROOT / "data" / "airbnb-madrid-10k"
DEFAULT_MODELS_DIR = PROJECT_ROOT / "models"
DOCS_DIR = PROJECT_ROOT / "docs"

#: The one seed behind the split, weight initialisation, shuffling and bootstrap resampling.
SEED = 42

DATA_HELP = (
    "Get the data with `airbnb-dl data fetch` (or `nox -s data`), or point --data-dir / "
    "AIRBNB_DATA_DIR at a directory holding listings.csv and images/<ID>.jpg."
)


class DataDirError(FileNotFoundError):
    """The dataset directory is missing or does not hold a dataset."""


def resolve_data_dir(data_dir: str | os.PathLike | None = None, must_exist: bool = True) -> Path:
    """Return the dataset directory: ``data_dir``, else ``$AIRBNB_DATA_DIR``, else the default.

    Raises :class:`DataDirError` (with instructions to get the data) when ``must_exist`` and the
    directory does not exist.
    """
    if data_dir is not None:
        path, origin = Path(data_dir), "--data-dir"
    elif os.environ.get("AIRBNB_DATA_DIR"):
        path, origin = Path(os.environ["AIRBNB_DATA_DIR"]), "AIRBNB_DATA_DIR"
    else:
        path, origin = DEFAULT_DATA_DIR, "the default location"
    path = path.expanduser().resolve()
    if must_exist and not path.is_dir():
        raise DataDirError(f"dataset directory {path} (from {origin}) does not exist. {DATA_HELP}")
    return path


def resolve_models_dir(models_dir: str | os.PathLike | None = None) -> Path:
    """Return where trained models are saved: ``models_dir``, ``$AIRBNB_MODELS_DIR`` or ``models/``."""
    if models_dir is not None:
        return Path(models_dir).expanduser().resolve()
    if os.environ.get("AIRBNB_MODELS_DIR"):
        return Path(os.environ["AIRBNB_MODELS_DIR"]).expanduser().resolve()
    return DEFAULT_MODELS_DIR


def cache_dir() -> Path:
    """Directory for derived, rebuildable artefacts (converted weights, backbone features)."""
    if os.environ.get("AIRBNB_DL_CACHE"):
        return Path(os.environ["AIRBNB_DL_CACHE"]).expanduser()
    return Path.home() / ".cache" / "airbnb-dl"

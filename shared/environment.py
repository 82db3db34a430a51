"""Where the data, models and caches live, and everything else the environment says.

The only module that reads the project's environment variables (``AIRBNB_DATA_DIR``,
``AIRBNB_MODELS_DIR``, ``AIRBNB_DL_CACHE``, ``AIRBNB_COLUMN_COST_DATA_DIR``,
``AIRBNB_DL_MIXED_PRECISION``, ``TF_CONFIG``).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import platform
import sys
import tempfile
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import cpuinfo


PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: Named after the set ``airbnb-dl data fetch`` builds by default (the reports' dataset).
DEFAULT_DATA_DIR = PROJECT_ROOT / "data" / "airbnb-madrid-10k"
DEFAULT_MODELS_DIR = PROJECT_ROOT / "models"
DOCS_DIR = PROJECT_ROOT / "docs"

#: The loggers progress lines come from (the standard ``logging`` module).
PROGRESS_LOGGERS = ("shared", "deliverable1", "deliverable2", "experiments")


class _ProgressHandler(logging.StreamHandler):
    """Writes to ``sys.<name>`` as it is at each line (a replaced stream, as under pytest, is
    followed)."""

    def __init__(self, name: str):
        super().__init__()
        self.name_of_stream = name
        self.setFormatter(logging.Formatter("%(message)s"))
        self.addFilter(lambda record: record.name.split(".")[0] in PROGRESS_LOGGERS)

    @property
    def stream(self):
        return getattr(sys, self.name_of_stream)

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ assigns it; the stream is looked up instead
        pass


def log_progress(to: str = "stderr") -> logging.Handler:
    """Send the INFO progress lines of :data:`PROGRESS_LOGGERS` to ``to``, one plain line each,
    through one root handler (records still propagate, e.g. to ``caplog``); called again, it
    moves that handler."""
    if to not in ("stderr", "stdout"):
        raise ValueError(f"log_progress: to is 'stderr' or 'stdout', got {to!r}")
    for name in PROGRESS_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, _ProgressHandler)), None)
    if handler is None:
        handler = _ProgressHandler(to)
        root.addHandler(handler)
    handler.name_of_stream = to
    return handler


@contextlib.contextmanager
def showing_progress(to: str = "stdout") -> Iterator[None]:
    """Inside the block, progress lines go to ``to`` unless the process already shows them.<<"""
    if any(isinstance(h, _ProgressHandler) for h in logging.getLogger().handlers):
        yield
        return
    handler = log_progress(to)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)


DATA_HELP = (
    "Get the data with `airbnb-dl data fetch` (or `nox -s data`), or point --data-dir / "
    "AIRBNB_DATA_DIR at a directory holding listings.csv and images/<ID>.jpg."
)


class DataDirError(FileNotFoundError):
    """The dataset directory is missing or does not hold a dataset."""


def resolve_data_dir(data_dir: str | os.PathLike | None = None, must_exist: bool = True) -> Path:
    """The dataset directory: ``data_dir``, else ``$AIRBNB_DATA_DIR``, else the default; raises
    :class:`DataDirError` (with instructions) when ``must_exist`` and it does not exist."""
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


def smoke_models_dir(models_dir: str | os.PathLike | None = None) -> Path:
    """Where a smoke run saves its models: ``models_dir`` when given, else a new scratch folder,
    so a smoke-trained model never lands in the real ``models/``."""
    if models_dir is not None:
        return Path(models_dir).expanduser().resolve()
    return Path(tempfile.mkdtemp(prefix="airbnb-dl-smoke-models-"))


def cache_dir() -> Path:
    """Directory for derived, rebuildable artefacts (converted weights, backbone features)."""
    if os.environ.get("AIRBNB_DL_CACHE"):
        return Path(os.environ["AIRBNB_DL_CACHE"]).expanduser()
    return Path.home() / ".cache" / "airbnb-dl"


#: The dataset deliverable 1's column-cost table runs on when the run's own dataset lacks columns.
COLUMN_COST_ENV = "AIRBNB_COLUMN_COST_DATA_DIR"
ALL_COLUMNS_SET = "airbnb-madrid"


def column_cost_data_dir(data_dir) -> Path:
    """Where the column-cost table looks for a dataset with every column when ``data_dir`` lacks
    some: ``$AIRBNB_COLUMN_COST_DATA_DIR``, else ``airbnb-madrid`` beside ``data_dir``."""
    return Path(os.environ.get(COLUMN_COST_ENV) or Path(data_dir).parent / ALL_COLUMNS_SET)


#: Environment variable overriding the automatic mixed-precision choice ("0" or "1").
MIXED_PRECISION_ENV = "AIRBNB_DL_MIXED_PRECISION"


def mixed_precision_setting() -> str:
    """The raw ``$AIRBNB_DL_MIXED_PRECISION`` value ("" when unset)."""
    return os.environ.get(MIXED_PRECISION_ENV, "")


def tf_config() -> str | None:
    """The ``TF_CONFIG`` cluster description of a multi-worker run (None when unset)."""
    return os.environ.get("TF_CONFIG")


def is_chief_task(tf_config: str | dict | None) -> bool:
    """True unless ``TF_CONFIG`` names this task a non-chief cluster member (the chief: the
    ``chief`` task, else worker 0). Only the chief writes models, metrics and reports."""
    if tf_config is None or (isinstance(tf_config, str) and not tf_config.strip()):
        return True
    spec = json.loads(tf_config) if isinstance(tf_config, str) else dict(tf_config)
    task = spec.get("task") or {}
    task_type, index = task.get("type"), int(task.get("index", 0))
    if task_type == "chief":
        return True
    if task_type == "worker":
        return index == 0 and not (spec.get("cluster") or {}).get("chief")
    return not task_type


# --------------------------------------------------------------------------- the machine

#: Vector instruction sets that decide which float kernels TensorFlow and BLAS run.
ISA_FLAGS = frozenset({
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512dq", "avx512vl",
    "avx512vnni", "avx512_vnni", "avx512_bf16", "avx512bf16", "avx_vnni", "amx_tile",
    "amx_bf16", "amx_int8", "asimd", "neon", "sve", "sve2"})


@functools.lru_cache(maxsize=1)
def cpu_kind() -> dict[str, Any]:
    """What decides which float kernels run on this CPU (``run.cpu``): model and family,
    architecture, the cores this process may use and the :data:`ISA_FLAGS` present."""
    try:
        info = cpuinfo.get_cpu_info()
    except Exception:  # noqa: BLE001 - any failure of the probe: record what platform knows
        info = {}
    family = (f"family {info['family']}, model {info['model']}"
              if "family" in info and "model" in info else None)
    cores = (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
             else os.cpu_count())
    return {"model": info.get("brand_raw") or platform.processor() or platform.machine(),
            "family_model": family, "arch": platform.machine(), "usable_cores": cores,
            "isa": sorted(ISA_FLAGS & set(info.get("flags", [])))}

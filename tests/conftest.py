"""Shared pytest fixtures: generated dataset directories, an isolated cache, the real data.

Nothing here is autouse: other test files are unaffected unless they ask for a fixture.
The dataset builders live in :mod:`fixtures` (``tests/fixtures.py``) so they can be imported too.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:  # `import fixtures` whatever pytest's import mode
    sys.path.insert(0, str(TESTS_DIR))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from fixtures import make_dataset_dir, tricky_dataset_dir  # noqa: E402

REAL_DATA_ENV = "AIRBNB_DATA_DIR"


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """Point the derived-data cache (``AIRBNB_DL_CACHE``) at a fresh folder of this test."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("AIRBNB_DL_CACHE", str(cache))
    return cache


@pytest.fixture
def tricky_dir(tmp_path) -> Path:
    """A dataset directory with every edge case of issue 2 (see ``fixtures.TRICKY_LISTINGS``)."""
    return tricky_dataset_dir(tmp_path / "tricky")


@pytest.fixture(scope="session")
def small_dir(tmp_path_factory) -> Path:
    """40 valid synthetic listings with RGB JPEG photos (read-only: tests must not modify it)."""
    return make_dataset_dir(tmp_path_factory.mktemp("small") / "data", n=40, seed=1)


@pytest.fixture(scope="session")
def small_dataset(small_dir, tmp_path_factory):
    """``load_dataset(small_dir)`` (converted photos, if any, go to a session temp folder)."""
    from shared.data.dataset import load_dataset

    return load_dataset(small_dir, converted_dir=tmp_path_factory.mktemp("converted"))


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real dataset directory from ``$AIRBNB_DATA_DIR``; skips the test when it is absent."""
    value = os.environ.get(REAL_DATA_ENV)
    if not value:
        pytest.skip(f"real-data integration test: set {REAL_DATA_ENV} to a dataset directory "
                    "(listings.csv + images/) to run it")
    path = Path(value).expanduser().resolve()  # absolute: tests symlink to it from tmp dirs
    if not (path / "listings.csv").is_file():
        pytest.skip(f"{REAL_DATA_ENV}={value} does not hold listings.csv")
    return path


@pytest.fixture
def no_proxy(monkeypatch) -> None:
    """requests talks to 127.0.0.1 directly even where a proxy is configured (the test servers
    of the data-fetch tests)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def server(no_proxy):
    """A local HTTP server on 127.0.0.1 (:class:`acq_server.LocalServer`), stopped afterwards."""
    from acq_server import LocalServer

    with LocalServer() as local:
        yield local


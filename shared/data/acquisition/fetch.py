"""``fetch_dataset``: check the destination, run one source, write and return the summary."""

from __future__ import annotations

import logging
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shared import environment
from shared.data.schema import LISTINGS_FILE

from .base import (DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_PHOTO_BYTES, DestinationError,
                   FetchOptions, UnusableSourceError)
from .drive import DRIVE_IMAGES_URL, FINAL_DATA_URL, fetch_drive
from .github import (DEFAULT_GITHUB_SOURCES, GithubSources, StagedSource, fetch_github,
                     stage_github)
from .http import DownloadError, HttpSettings, remove_stale_parts
from .opendatasoft import OPENDATASOFT_EXPORT_URL, fetch_opendatasoft
from .report import REPORT_FILE, FetchReport, format_summary
from .sets import REPORTS_SET, DatasetSet

logger = logging.getLogger(__name__)

#: Every source, the default first.
SOURCES = ("github", "drive", "opendatasoft")
DEFAULT_SOURCE = SOURCES[0]

#: What each source downloads by default: {source: {item: location}}.
DEFAULT_SOURCE_URLS: dict[str, dict[str, str]] = {
    "github": DEFAULT_GITHUB_SOURCES.locations(),
    "drive": {"final_data.npy": FINAL_DATA_URL, "images.npy": DRIVE_IMAGES_URL},
    "opendatasoft": {"listings export": OPENDATASOFT_EXPORT_URL,
                     "photos": "each listing's 'Picture Url' (else 'Thumbnail Url') in the export"},
}


def source_locations(source: str, url: str | None = None, images_url: str | None = None,
                     github_sources: GithubSources | None = None) -> dict[str, str]:
    """What ``source`` will download, and from where, after the command-line overrides."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    if images_url and source != "drive":
        raise ValueError(f"--images-url only applies to --source drive (the {source} photo "
                         "URLs come from the source itself)")
    if source == "github":
        return (github_sources or DEFAULT_GITHUB_SOURCES).locations(url)
    if github_sources is not None:
        raise ValueError("pins only apply to --source github")
    locations = dict(DEFAULT_SOURCE_URLS[source])
    main_item = next(iter(locations))
    if url:
        locations[main_item] = url
    if images_url:
        locations["images.npy"] = images_url
    return locations


def check_destination(dest: Path, source: str, force: bool = False,
                      dataset: str | None = None) -> None:
    """Refuse to overwrite a dataset not fetched by us, from another source or (``github``)
    another set; a fetch without a recorded set counts as another set."""
    if dest.exists() and not dest.is_dir():
        raise DestinationError(f"destination {dest} exists and is not a folder")
    if force:
        return
    report = dest / REPORT_FILE
    if report.is_file():
        try:
            previous = json.loads(report.read_text(encoding="utf-8"))
            previous_source, previous_set = previous.get("source"), previous.get("dataset")
        except (ValueError, OSError, AttributeError):
            previous_source = previous_set = None
        if previous_source and previous_source != source:
            raise DestinationError(
                f"{dest} holds a dataset fetched from source {previous_source!r}; fetching "
                f"{source!r} there would mix the two: use another --dest (or --force)")
        if previous_source == source and dataset is not None and previous_set != dataset:
            held = (f"the set {previous_set!r}" if previous_set
                    else "a set fetched with the original photos (before sets were scaled)")
            raise DestinationError(
                f"{dest} holds {held}; building {dataset!r} there would mix the two: use "
                "another --dest (or --force)")
    elif (dest / LISTINGS_FILE).exists():
        raise DestinationError(
            f"{dest} already holds a {LISTINGS_FILE} that `data fetch` did not create (no "
            f"{REPORT_FILE}); refusing to overwrite it: use another --dest (or --force)")


def fetch_dataset(dest: Path, source: str = DEFAULT_SOURCE, url: str | None = None,
                  images_url: str | None = None, workers: int = 4, timeout: float = 30.0,
                  retries: int = 4, progress: bool = True, *, backoff: float = 1.0,
                  max_photo_bytes: int = DEFAULT_MAX_PHOTO_BYTES,
                  max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, force: bool = False,
                  github_sources: GithubSources | None = None,
                  dataset: DatasetSet | None = None) -> dict[str, Any]:
    """Fetch ``source`` into ``dest`` in the canonical layout; return the summary.

    The summary is also written to ``<dest>/fetch_report.json`` and logged. Fetch problems do not
    raise: they set ``status`` (``complete`` / ``incomplete`` / ``failed`` / ``unusable``) and
    ``exit_code`` (0 / 1 / 1 / 2). For ``github`` nothing is written into ``dest`` until every table
    matches its pinned sha256 (``written`` False otherwise); ``dataset`` is the set to build
    (default :data:`.sets.REPORTS_SET`). Raises ``ValueError`` on invalid arguments and
    :class:`DestinationError` for a destination that must not be overwritten.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if dataset is not None and source != "github":
        raise ValueError(f"a set ({dataset.name}, --all) only applies to --source github")
    dest = Path(dest).expanduser().resolve()
    locations = source_locations(source, url, images_url, github_sources)
    if source == "github":
        dataset = dataset or REPORTS_SET
    check_destination(dest, source, force, dataset.name if dataset else None)
    options = FetchOptions(dest=dest, settings=HttpSettings(timeout, retries, backoff),
                           url=url, images_url=images_url, workers=workers, progress=progress,
                           max_photo_bytes=max_photo_bytes, max_file_bytes=max_file_bytes,
                           github_sources=github_sources,
                           dataset=dataset)
    logger.info(f"fetching the {source} dataset into {dest}")
    if dataset is not None:
        logger.info(f"  set: {dataset.describe()}")
    for item, location in locations.items():
        logger.info(f"  {item}: {location}")
    report = FetchReport(source, dest, locations, photos_required=source == "github",
                         dataset=dataset.name if dataset else None)
    if source == "github":
        written = _run_github(options, report)
    else:
        _prepare(options, report)
        _run_guarded(lambda: _source_fetcher(source)(options, report), report)
        written = True
    summary = report.finish()
    summary["written"] = written
    if written:
        report.write(summary)
    logger.info(format_summary(summary))
    return summary


def _prepare(options: FetchOptions, report: FetchReport) -> None:
    options.dest.mkdir(parents=True, exist_ok=True)
    report.write()  # marks the folder as ours (and in progress) from the start
    for folder in (options.dest, options.raw_dir, options.images_dir):
        removed = remove_stale_parts(folder)
        if removed:
            logger.info(f"removed {removed} partial file(s) left in {folder} by an interrupted run")


def _source_fetcher(source: str) -> Callable[[FetchOptions, FetchReport], None]:
    return fetch_drive if source == "drive" else fetch_opendatasoft


def _run_guarded(step: Callable[[], Any], report: FetchReport,
                 missing_is_unusable: bool = False) -> bool:
    """Run ``step``; turn a source or download problem into the report's status. True if it ran.
    A download error is ``failed``; with ``missing_is_unusable`` one that retrying cannot fix
    makes the source ``unusable``."""
    try:
        step()
    except UnusableSourceError as error:
        report.fail("unusable", str(error))
    except DownloadError as error:
        unusable = missing_is_unusable and not error.retryable
        report.fail("unusable" if unusable else "failed",
                    f"could not download {error.url} ({error.reason}): {error.detail}")
    else:
        return True
    return False


def _run_github(options: FetchOptions, report: FetchReport) -> bool:
    """Verify and join the tables outside ``dest``, then fetch into it; False if nothing was
    written."""
    with tempfile.TemporaryDirectory(prefix="airbnb-dl-tables-") as staging:
        staged: list[StagedSource] = []
        if not _run_guarded(lambda: staged.append(stage_github(options, report, Path(staging))),
                            report, missing_is_unusable=True):
            return False
        _prepare(options, report)
        _run_guarded(lambda: fetch_github(options, report, staged[0]), report)
    return True


def ensure_data(data_dir) -> Path:
    """Return the dataset directory, fetching the dataset first when it is absent or empty."""
    path = environment.resolve_data_dir(data_dir, must_exist=False)
    if (path / "listings.csv").is_file():
        return path
    print(f"No dataset in {path} (listings.csv missing): fetching it now with the default source "
          f"'{DEFAULT_SOURCE}' (what is fetched, and from where, follows).", flush=True)
    with environment.showing_progress("stdout"):
        summary = fetch_dataset(path, source=DEFAULT_SOURCE)
    if not (path / "listings.csv").is_file():
        details = (f"details in {path / REPORT_FILE}" if summary.get("written", True)
                   else "nothing was written")
        problem = summary.get("error") or summary.get("status")
        raise environment.DataDirError(
            f"fetching the dataset into {path} failed ({problem}); {details}. {environment.DATA_HELP}")
    return path

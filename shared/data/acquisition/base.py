"""What every source module shares: the fetch options, the source errors, raw source files."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from shared.data.schema import IMAGES_DIR

from .http import ContentError, HttpSettings, download
from .report import FetchReport, PhotoOutcome

logger = logging.getLogger(__name__)

RAW_DIR = "raw"
DEFAULT_MAX_PHOTO_BYTES = 20 * 2**20
DEFAULT_MAX_FILE_BYTES = 2**30


class UnusableSourceError(Exception):
    """A source file was fetched but cannot be used (wrong columns or shape, refused pickle...)."""


class DestinationError(ValueError):
    """The destination folder holds something ``data fetch`` must not overwrite."""


@dataclass(frozen=True)
class FetchOptions:
    """Everything a source module needs to fetch into ``dest``."""

    dest: Path
    settings: HttpSettings
    url: str | None = None
    images_url: str | None = None
    workers: int = 4
    progress: bool = True
    max_photo_bytes: int = DEFAULT_MAX_PHOTO_BYTES
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    github_sources: Any = None  # :class:`.github.GithubSources`; None: the real pins
    dataset: Any = None  # :class:`.sets.DatasetSet`; None: :data:`.sets.REPORTS_SET`

    @property
    def raw_dir(self) -> Path:
        return self.dest / RAW_DIR

    @property
    def images_dir(self) -> Path:
        return self.dest / IMAGES_DIR


def ensure_file(path: Path, check: Callable[[Path], Any], fetch: Callable[[Path], Any],
                options: FetchOptions, report: FetchReport) -> None:
    """Skip ``path`` when present and valid per ``check``, else ``fetch`` it (atomically)."""
    if path.is_file():
        try:
            check(path)
        except (ContentError, UnusableSourceError) as error:
            logger.info(f"{path} is present but invalid ({error}); fetching it again")
        else:
            logger.info(f"{path.name}: already present in {path.parent}, not downloaded again")
            report.file(path.name, "already_present")
            return
    fetch(path)
    report.file(path.name, "fetched")


def download_source(url: str, path: Path, check: Callable[[Path], Any],
                    options: FetchOptions) -> None:
    """Download a raw source file to ``path`` (atomically, durably, within the size limit);
    ``check`` finalises the download (a failing check discards it)."""
    download(url, path, settings=options.settings, max_bytes=options.max_file_bytes,
             finalize=check, progress=options.progress, durable=True)


def ensure_source_file(path: Path, url: str, check: Callable[[Path], Any], options: FetchOptions,
                       report: FetchReport) -> None:
    """:func:`ensure_file` for a raw source file fetched with :func:`download_source`.<<"""
    ensure_file(path, check, lambda target: download_source(url, target, check, options),
                options, report)


def iter_progress(items: Sequence[Any], options: FetchOptions, desc: str) -> Iterator[Any]:
    """``items`` wrapped in a tqdm bar when progress is on."""
    yield from tqdm(items, desc=desc, unit="photo", disable=not options.progress)


def run_photo_jobs(jobs: Sequence[Callable[[], PhotoOutcome]], options: FetchOptions,
                   report: FetchReport) -> list[PhotoOutcome]:
    """Run one job per listing photo on ``options.workers`` threads; record and return the
    outcomes (completion order). On Ctrl-C the queued jobs are cancelled."""
    options.images_dir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="photo") as pool:
        futures = [pool.submit(job) for job in jobs]
        try:
            return _collect(futures, options, report)
        except BaseException:  # Ctrl-C: do not start the queued downloads
            for future in futures:
                future.cancel()
            raise


def _collect(futures: list[Future], options: FetchOptions,
             report: FetchReport) -> list[PhotoOutcome]:
    outcomes = []
    with tqdm(total=len(futures), desc="photos", unit="photo",
              disable=not options.progress) as bar:
        for future in as_completed(futures):
            outcomes.append(future.result())
            report.photo(outcomes[-1])
            bar.update()
    return outcomes

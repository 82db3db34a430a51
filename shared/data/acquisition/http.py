"""Robust, atomic file downloads over HTTP(S) (or from a local file standing in for a URL).

A download streams into a hidden temporary file in the destination folder, renamed into place
only once complete and checked, so an interrupted fetch never leaves a truncated file that looks
valid. Timeouts apply to connecting and to every read; connection errors, timeouts, truncated
bodies, 5xx, 408 and 429 are retried with exponential backoff (never other 4xx). Size limits
and ``Content-Length`` are enforced. Failures raise :class:`DownloadError` with a short
``reason`` code for the fetch report (``http_404``, ``timeout``, ``incomplete``...).
"""

from __future__ import annotations

import email.utils
import random
import shutil
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import requests
from tqdm import tqdm

from shared.io import atomic_path, remove_stale_temporaries

PART_SUFFIX = ".part"
CHUNK_SIZE = 64 * 1024
USER_AGENT = "airbnb-dl/0.1 (dataset fetch; +https://github.com/rogebautista/deep-learning-rogelio)"

#: HTTP statuses worth retrying: request timeout, rate limiting and server errors.
RETRYABLE_STATUSES = frozenset({408, 429}) | frozenset(range(500, 600))


@dataclass(frozen=True)
class HttpSettings:
    """How patiently to download: timeouts (connect and per read, s), extra attempts after the first,
    and backoff (retry n waits ``backoff * 2**n`` s + up to 10 % jitter, at most ``max_backoff``);
    a ``Retry-After`` above ``max_retry_after`` s fails the download at once.
    """

    timeout: float = 30.0
    retries: int = 4
    backoff: float = 1.0
    max_backoff: float = 30.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, got {self.timeout}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")


class DownloadError(Exception):
    """A download that failed; ``reason`` is a short code, ``retryable`` says if trying later may help."""

    def __init__(self, url: str, reason: str, detail: str, retryable: bool = False,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{url}: {detail}")
        self.url = url
        self.reason = reason
        self.detail = detail
        self.retryable = retryable
        self.retry_after = retry_after


class ContentError(Exception):
    """Raised by a content check on a completely downloaded file (turned into a DownloadError)."""

    def __init__(self, reason: str, detail: str, retryable: bool = False) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.retryable = retryable


# --------------------------------------------------------------------------- atomic files


def atomic_output(path: Path, fsync: bool = False) -> AbstractContextManager[Path]:
    """:func:`shared.io.atomic_path` with the ``.part`` suffix of downloads in progress."""
    return atomic_path(path, suffix=PART_SUFFIX, fsync=fsync)


def remove_stale_parts(folder: Path) -> int:
    """Delete ``.*.part`` files left in ``folder`` by a killed run; return how many."""
    return remove_stale_temporaries(folder, PART_SUFFIX)


# --------------------------------------------------------------------------- download


Finalizer = Callable[[Path], None]


def download(url: str, path: Path, *, settings: HttpSettings, max_bytes: int,
             finalize: Finalizer | None = None, progress: bool = False,
             durable: bool = False) -> int:
    """Download ``url`` to ``path`` atomically, retrying transient failures; return the byte count.

    ``finalize(tmp_path)`` runs on the complete temporary file before the rename: it may check it
    (:class:`ContentError` becomes a :class:`DownloadError`) or rewrite it. ``url`` may be a
    ``file://`` URL or a local path (copied, same checks). ``durable`` fsyncs before the rename.
    """
    attempt = 0
    while True:
        try:
            with atomic_output(path, fsync=durable) as tmp:
                size = _fetch_once(url, tmp, settings, max_bytes, progress, path.name)
                _run_finalizer(finalize, url, tmp)
            return size
        except DownloadError as error:
            if not error.retryable or attempt >= settings.retries:
                raise
            delay = retry_delay(error, attempt, settings)
            if delay is None:
                raise DownloadError(url, error.reason,
                                    f"{error.detail}; Retry-After {error.retry_after:.0f} s exceeds "
                                    f"the {settings.max_retry_after:.0f} s limit, not retrying",
                                    ) from error
            time.sleep(delay)
            attempt += 1


def _run_finalizer(finalize: Finalizer | None, url: str, tmp: Path) -> None:
    if finalize is None:
        return
    try:
        finalize(tmp)
    except ContentError as error:
        raise DownloadError(url, error.reason, error.detail, error.retryable) from error


def retry_delay(error: DownloadError, attempt: int, settings: HttpSettings) -> float | None:
    """Seconds to wait before retry number ``attempt + 1``, or None when the server asks too much."""
    if error.retry_after is not None:
        if error.retry_after > settings.max_retry_after:
            return None
        return error.retry_after
    delay = min(settings.backoff * 2**attempt, settings.max_backoff)
    return delay + random.uniform(0, delay / 10)


def parse_retry_after(value: str | None) -> float | None:
    """Parse a ``Retry-After`` header (seconds or HTTP date) into seconds from now."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def local_source(url: str) -> Path | None:
    """The local path ``url`` designates (``file://`` URL or plain path), or None for http(s)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme in ("http", "https"):
        return None
    if len(parsed.scheme) > 1:  # "ftp:", "s3:" ...; a one-letter scheme is a Windows drive
        raise DownloadError(url, "bad_url", f"unsupported URL scheme {parsed.scheme!r}")
    return Path(url)


def _fetch_once(url: str, tmp: Path, settings: HttpSettings, max_bytes: int, progress: bool,
                label: str) -> int:
    local = local_source(url)
    if local is not None:
        return _copy_local(url, local, tmp, max_bytes)
    try:
        return _http_get(url, tmp, settings, max_bytes, progress, label)
    except requests.RequestException as error:
        raise _classify_request_error(url, error) from error


def _copy_local(url: str, source: Path, tmp: Path, max_bytes: int) -> int:
    if not source.is_file():
        raise DownloadError(url, "not_found", f"local file {source} does not exist")
    size = source.stat().st_size
    if size > max_bytes:
        raise DownloadError(url, "too_large", f"{source} is {size} bytes, limit {max_bytes}")
    shutil.copyfile(source, tmp)
    return size


_local = threading.local()


def _session() -> requests.Session:
    """One requests session per thread (sessions are not guaranteed thread-safe)."""
    session = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
        _local.session = session
    return session


def _http_get(url: str, tmp: Path, settings: HttpSettings, max_bytes: int, progress: bool,
              label: str) -> int:
    timeout = (settings.timeout, settings.timeout)
    with _session().get(url, stream=True, timeout=timeout) as response:
        _check_status(url, response)
        expected = _content_length(response)
        if expected is not None and expected > max_bytes:
            raise DownloadError(url, "too_large",
                                f"Content-Length {expected} bytes exceeds the limit of {max_bytes}")
        written = _stream_body(url, response, tmp, max_bytes, expected, progress, label)
    if expected is not None and _is_identity_encoded(response) and written != expected:
        raise DownloadError(url, "incomplete", f"got {written} of {expected} bytes", retryable=True)
    return written


def _stream_body(url: str, response: requests.Response, tmp: Path, max_bytes: int,
                 expected: int | None, progress: bool, label: str) -> int:
    written = 0
    with open(tmp, "wb") as out, tqdm(total=expected, unit="B", unit_scale=True, desc=label,
                                      disable=not progress, leave=False) as bar:
        for chunk in response.iter_content(CHUNK_SIZE):
            written += len(chunk)
            if written > max_bytes:
                raise DownloadError(url, "too_large",
                                    f"body exceeds the limit of {max_bytes} bytes; aborted")
            out.write(chunk)
            bar.update(len(chunk))
    return written


def _check_status(url: str, response: requests.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    retryable = status in RETRYABLE_STATUSES
    retry_after = parse_retry_after(response.headers.get("Retry-After")) if retryable else None
    raise DownloadError(url, f"http_{status}", f"HTTP {status} {response.reason or ''}".strip(),
                        retryable=retryable, retry_after=retry_after)


def _content_length(response: requests.Response) -> int | None:
    value = response.headers.get("Content-Length", "")
    return int(value) if value.strip().isdigit() else None


def _is_identity_encoded(response: requests.Response) -> bool:
    return response.headers.get("Content-Encoding", "identity").strip().lower() in ("", "identity")


def _classify_request_error(url: str, error: requests.RequestException) -> DownloadError:
    """Map a requests exception to a DownloadError with a reason code and a retry decision."""
    text = str(error)
    if isinstance(error, requests.Timeout) or "timed out" in text.lower():
        return DownloadError(url, "timeout", f"timed out: {text}", retryable=True)
    if isinstance(error, (requests.exceptions.ChunkedEncodingError,
                          requests.exceptions.ContentDecodingError)):
        return DownloadError(url, "incomplete", f"connection broken mid-body: {text}",
                             retryable=True)
    if isinstance(error, requests.ConnectionError):
        return DownloadError(url, "connection", f"connection failed: {text}", retryable=True)
    if isinstance(error, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                          requests.exceptions.InvalidSchema)):
        return DownloadError(url, "bad_url", f"invalid URL: {text}")
    if isinstance(error, requests.TooManyRedirects):
        return DownloadError(url, "too_many_redirects", text)
    return DownloadError(url, "request_error", text)

"""What a fetch did: :class:`FetchReport` accumulates it, ``<dest>/fetch_report.json`` keeps it.

``exit_code`` is 0 (complete), 1 (a rerun may fix a failure, or a source whose every listing
needs its photo dropped some) or 2 (unusable). A ``github`` set that is complete but not
byte-identical (``identity``; e.g. another Pillow) still exits 0: it is usable.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from shared.io import write_text_atomic

REPORT_FILE = "fetch_report.json"
MAX_FAILURES_LISTED = 5000  # per-listing failure entries kept in fetch_report.json


@dataclass(frozen=True)
class PhotoOutcome:
    """What happened to one listing's photo: ``fetched``, ``already_present`` or ``failed``."""

    listing_id: int
    status: str
    reason: str = ""
    url: str = ""
    detail: str = ""
    transient: bool = False
    #: sha256 (hex) of the photo file as written or found (``github``: the scaled photo).
    sha256: str = ""


@dataclass
class FetchReport:
    """Accumulates the outcome of a fetch; :meth:`finish` turns it into the summary dict."""

    source: str
    dest: Path
    locations: dict[str, str]
    started: float = field(default_factory=time.time)
    files: dict[str, str] = field(default_factory=dict)
    source_rows: int = 0
    written: int = 0
    dropped: Counter = field(default_factory=Counter)
    photos: Counter = field(default_factory=Counter)
    photo_failures: Counter = field(default_factory=Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)
    status: str = "in_progress"
    error: str | None = None
    #: A source writing only listings with a photo: any failed photo makes the fetch incomplete.
    photos_required: bool = False
    dataset: str | None = None  # the name of the set ``github`` builds
    identity: dict[str, Any] | None = None  # vs the set's pinned hashes (``github`` only)

    def file(self, name: str, status: str) -> None:
        """Record a source file as ``fetched`` or ``already_present``."""
        self.files[name] = status

    def drop_listing(self, raw_id: Any, reason: str, detail: str) -> None:
        """Record a source row left out of listings.csv (invalid or repeated ID, malformed row)."""
        self.dropped[reason] += 1
        self._add_failure({"listing_id": str(raw_id), "reason": reason, "detail": detail})

    def exclude(self, reason: str) -> None:
        """Count a source row the source leaves out by design (another city, no price ...)."""
        self.dropped[reason] += 1

    def photo(self, outcome: PhotoOutcome) -> None:
        """Record the outcome of one listing's photo."""
        if outcome.status != "failed":
            self.photos[outcome.status] += 1
            return
        self.photos["failed"] += 1
        self.photo_failures[outcome.reason] += 1
        self.photos["transient_failures"] += outcome.transient
        self._add_failure({"listing_id": str(outcome.listing_id), "reason": outcome.reason,
                           "url": outcome.url, "detail": outcome.detail,
                           "transient": outcome.transient})

    def fail(self, status: str, message: str) -> None:
        """Record a failure that stopped the fetch: status ``failed`` or ``unusable``."""
        self.status, self.error = status, message

    def _add_failure(self, entry: dict[str, Any]) -> None:
        if len(self.failures) < MAX_FAILURES_LISTED:
            self.failures.append(entry)

    def finish(self) -> dict[str, Any]:
        """Settle the final status and return the summary."""
        if self.status == "in_progress":
            dropped = self.photos_required and self.photos["failed"]
            self.status = ("incomplete" if self.photos["transient_failures"] or dropped
                           else "complete")
        return self.summary()

    def summary(self) -> dict[str, Any]:
        exit_codes = {"complete": 0, "unusable": 2}
        summary = {
            "source": self.source,
            "dataset": self.dataset,
            "dest": str(self.dest),
            "locations": self.locations,
            "status": self.status,
            "exit_code": exit_codes.get(self.status, 1),
            "error": self.error,
            "started_at": _iso(self.started),
            "finished_at": _iso(time.time()),
            "seconds": round(time.time() - self.started, 2),
            "files": self.files,
            "listings": {"source_rows": self.source_rows, "written": self.written,
                         "dropped": dict(self.dropped)},
            "photos": {"total": sum(self.photos[key] for key in
                                    ("fetched", "already_present", "failed")),
                       "fetched": self.photos["fetched"],
                       "already_present": self.photos["already_present"],
                       "failed": self.photos["failed"],
                       "transient_failures": self.photos["transient_failures"],
                       "failed_by_reason": dict(sorted(self.photo_failures.items()))},
            "failures": self.failures,
        }
        if self.identity is not None:
            summary["identity"] = self.identity
        return summary

    def write(self, summary: dict[str, Any] | None = None) -> Path:
        """Write the summary (or the in-progress state) to ``<dest>/fetch_report.json`` atomically."""
        path = self.dest / REPORT_FILE
        write_text_atomic(path, json.dumps(summary or self.summary(), indent=2) + "\n", fsync=True)
        return path


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable lines for a fetch summary."""
    listings, photos = summary["listings"], summary["photos"]
    lines = [f"fetch summary ({summary['source']} -> {summary['dest']}): {summary['status']}"]
    if summary["error"]:
        lines.append(f"  error: {summary['error']}")
    for name, status in summary["files"].items():
        lines.append(f"  {name}: {status.replace('_', ' ')}")
    dropped = _counts(listings["dropped"])
    lines.append(f"  listings.csv: {listings['written']} listings"
                 + (f" (dropped: {dropped})" if dropped else ""))
    failed = _counts(photos["failed_by_reason"])
    lines.append(f"  photos: {photos['fetched']} fetched, {photos['already_present']} already "
                 f"present, {photos['failed']} failed" + (f" ({failed})" if failed else ""))
    if summary.get("identity"):
        lines.append(f"  {identity_line(summary['identity'])}")
    if photos["transient_failures"]:
        lines.append(f"  {photos['transient_failures']} photo failures may be transient: "
                     "rerun the same command to retry them")
    if summary.get("written", True):
        lines.append(f"  report: {Path(summary['dest']) / REPORT_FILE}")
    else:
        lines.append(f"  nothing was written into {summary['dest']}")
    return "\n".join(lines)


def identity_line(identity: dict[str, Any]) -> str:
    """One line: is the set byte-identical to its pinned hashes, and if not, what differs."""
    name, photos = identity["dataset"], identity["photos"]
    if identity["byte_identical"]:
        return (f"byte-identical to the reports' dataset {name}: listings.csv sha256 "
                f"{identity['listings_csv']['sha256']}, {photos['identical']} photos verified")
    checked = (f"{photos['identical']} of its photos byte-identical to the reports' dataset"
               + (f", {photos['differing']} differ" if photos["differing"] else "")
               + (f", {photos['unchecked']} without a pinned hash" if photos["unchecked"] else ""))
    if identity["byte_identical"] is None:
        return f"{name}: not the reports' dataset (no pinned listings.csv); {checked}"
    problems = []
    if photos["differing"]:
        problems.append(f"{photos['differing']} photo(s) differ")
    if identity["missing_listings"]:
        problems.append(f"{identity['missing_listings']} listing(s) missing")
    csv_hashes = identity["listings_csv"]
    if csv_hashes["sha256"] != csv_hashes["expected"]:
        problems.append(f"listings.csv sha256 {csv_hashes['sha256']}, expected "
                        f"{csv_hashes['expected']}")
    return (f"the set is not byte-identical to the reports' dataset ({name}): "
            f"{'; '.join(problems)}. Models trained on it may give slightly different numbers "
            f"than the published reports")


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in counter.items())

"""``airbnb-dl data fetch``: the command-line face of :func:`shared.data.acquisition.fetch_dataset`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from shared import environment

from . import (DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_PHOTO_BYTES, DEFAULT_SOURCE,
               DEFAULT_SOURCE_URLS, SOURCES, DestinationError, GithubSources, fetch_dataset)
from .github_photos import RAW_FILE_HOST
from .sets import ALL_LISTINGS, REPORTS_SET

EPILOG = """\
github builds the reports' dataset, airbnb-madrid-10k (10,351 listings, photos scaled to a 224 px
shorter side), checked byte for byte against shipped hashes; --all builds every listing of the
source (12,232) the same way. A scaled photo that differs from its pinned hash (another Pillow)
is kept when it decodes and named with both hashes; the summary then says the set is not
byte-identical to the reports' dataset (numbers may differ slightly).

default destination: $AIRBNB_DATA_DIR when set, else data/<set name>/ in the project
(data/airbnb-madrid-10k/, with --all data/airbnb-madrid-12k/; drive and opendatasoft:
data/airbnb-madrid-<source>/).

exit status: 0 when the dataset is complete (for opendatasoft, dead photo URLs are expected and
only counted), 1 when something failed that a rerun may fix or (github) when listings were
dropped because their photo failed (rerunning resumes and skips complete files), 2 when a
source is unusable (a table that does not match its pinned sha256: nothing is written) or the
destination must not be overwritten. The summary is written to <dest>/fetch_report.json."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``fetch`` sub-command to the ``data`` command group."""
    parser = subparsers.add_parser(
        "fetch", help="download the real dataset into the canonical layout",
        description="Download the Airbnb Madrid dataset from its public sources into "
                    "<dest>/listings.csv + <dest>/images/<ID>.jpg.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", choices=SOURCES, default=DEFAULT_SOURCE,
                        help="github: the reports' 10,351 Madrid listings (48 columns, photos "
                             "scaled to 224 px) from pinned public GitHub commits, verified byte "
                             "for byte (default; --all: all 12,232); "
                             "drive: the student's 1000 listings, final_data.npy + images.npy; "
                             "opendatasoft: the CSV export plus each listing's photo URL")
    parser.add_argument("--dest", type=Path, default=None,
                        help="destination folder (default: $AIRBNB_DATA_DIR, else data/<set>/ "
                             "in the project, see below)")
    parser.add_argument("--url", default=None,
                        help=f"github: a base URL replacing {RAW_FILE_HOST} (a mirror); "
                             "drive: final_data.npy; opendatasoft: the CSV export; "
                             "an http(s) URL, file:// URL or local path "
                             f"(defaults: {DEFAULT_SOURCE_URLS['drive']['final_data.npy']} / "
                             "the OpenDataSoft export)")
    parser.add_argument("--all", dest="all_listings", action="store_true",
                        help="github only: every listing of the source (12,232), photos scaled "
                             "the same way (default: the reports' 10,351, airbnb-madrid-10k)")
    parser.add_argument("--pins", type=Path, default=None,
                        help="github only: a JSON file of other pinned repositories, commits, "
                             "paths, sha256 and photo manifest (default: the built-in pins)")
    parser.add_argument("--images-url", default=None,
                        help="drive only: fetch images.npy from this URL or path with the "
                             "built-in downloader instead of Google Drive via gdown")
    parser.add_argument("--workers", type=_positive_int, default=4,
                        help="parallel photo downloads (default 4, be polite)")
    parser.add_argument("--timeout", type=_positive_float, default=30.0,
                        help="seconds to wait for a connection or for data (default 30)")
    parser.add_argument("--retries", type=_non_negative_int, default=4,
                        help="retries on timeouts, connection errors, 5xx and 429 (default 4)")
    parser.add_argument("--max-photo-mb", type=_positive_float,
                        default=DEFAULT_MAX_PHOTO_BYTES / 2**20,
                        help="abort a photo larger than this (default 20)")
    parser.add_argument("--max-file-mb", type=_positive_float,
                        default=DEFAULT_MAX_FILE_BYTES / 2**20,
                        help="abort a table, .npy or CSV download larger than this "
                             "(default 1024)")
    parser.add_argument("--force", action="store_true",
                        help="write into a folder holding a dataset from elsewhere")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run_fetch)


def run_fetch(args: argparse.Namespace) -> int:
    """Handle ``data fetch``; return the exit status."""
    try:
        if args.all_listings and args.source != "github":
            raise ValueError("--all only applies to --source github")
        dataset = (ALL_LISTINGS if args.all_listings else REPORTS_SET) \
            if args.source == "github" else None
        dest = args.dest if args.dest is not None else default_dest(args.source, dataset)
        pins = GithubSources.from_json(args.pins) if args.pins is not None else None
        with environment.showing_progress("stdout"):
            summary = fetch_dataset(
                dest, source=args.source, url=args.url, images_url=args.images_url,
                workers=args.workers, timeout=args.timeout, retries=args.retries,
                progress=not args.no_progress,
                max_photo_bytes=int(args.max_photo_mb * 2**20),
                max_file_bytes=int(args.max_file_mb * 2**20), force=args.force,
                github_sources=pins, dataset=dataset)
    except (DestinationError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return int(summary["exit_code"])


def default_dest(source: str, dataset=None) -> Path:
    """Where ``data fetch`` writes without ``--dest``: ``$AIRBNB_DATA_DIR`` when set, else
    ``data/<set name>`` or ``data/airbnb-madrid-<source>``, so no folder name labels another set."""
    if os.environ.get("AIRBNB_DATA_DIR"):
        return environment.resolve_data_dir(None, must_exist=False)
    name = dataset.name if dataset is not None else f"airbnb-madrid-{source}"
    return environment.DEFAULT_DATA_DIR.parent / name


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value

"""Tests for shared.data.acquisition: both sources, end to end against a real HTTP server on 127.0.0.1.

The server (tests/acq_server.py) is scripted per path: 404s, 500-then-200, slow answers, bodies cut
off mid-way, HTML served as a photo... Nothing here contacts any other address: the default
Google Drive download is exercised through a stand-in for gdown that reads from the local server.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from PIL import Image

from shared.data.acquisition import (DRIVE_IMAGES_FILE_ID, REPORT_FILE, DestinationError,
                                fetch_dataset, format_csv_row, format_summary, parse_listing_id)
from shared.data.acquisition.cli import register
from shared.data.acquisition.http import parse_retry_after
from shared.data.acquisition.safe_pickle import UnsafePickleError, load_npy
from shared.data.schema import OPENDATASOFT_COLUMNS

try:
    from acq_server import LocalServer, Reply
except ImportError:  # tests/ imported as a package
    from tests.acq_server import LocalServer, Reply

pytestmark = pytest.mark.usefixtures("no_proxy")  # every test talks to 127.0.0.1

COLUMNS = OPENDATASOFT_COLUMNS
REFERENCE_LISTINGS = Path(__file__).resolve().parents[2] / "shared/data/airbnb-madrid/listings.csv"
REAL_DATA_DIR = Path(os.environ.get("AIRBNB_DATA_DIR") or REFERENCE_LISTINGS.parent)
TRICKY_TEXT = {"Name": 'Sunny; "central" flat', "Summary": "line one\nline two\r\nline three",
               "Description": "tab\there, semicolon; and quote \"", "Amenities": "TV,Wifi"}


# --------------------------------------------------------------------------- fixtures


def fetch(dest: Path, source: str = "drive", **options) -> dict:
    """fetch_dataset with fast test defaults (quick backoff, no progress bars, no logging)."""
    settings = {"timeout": 5.0, "retries": 2, "backoff": 0.01, "progress": False}
    settings.update(options)
    return fetch_dataset(dest, source, **settings)


def jpeg_bytes(color=(200, 30, 30), size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def png_bytes(color=(10, 120, 240)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", (20, 20), color + (255,)).save(buffer, format="PNG")
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def drive_table(ids: list) -> np.ndarray:
    """An (N, 89) object array of plain values, like the student's final_data.npy."""
    table = np.empty((len(ids), len(COLUMNS)), dtype=object)
    for row, listing_id in enumerate(ids):
        values = {"ID": listing_id, "Price": 40.0 + row, "Accommodates": 2,
                  "Square Feet": float("nan"), "Beds": None, "Latitude": np.float64(40.41),
                  "City": "Madrid", "Country": "Spain", **TRICKY_TEXT}
        table[row] = [values.get(name, f"{name} {row}") for name in COLUMNS]
    return table


def solid_images(count: int, size: int = 32) -> np.ndarray:
    """uint8 (count, size, size, 3): image i is a flat color, so JPEG keeps it almost exactly."""
    images = np.zeros((count, size, size, 3), dtype=np.uint8)
    for index in range(count):
        images[index] = (20 * index + 10, 100, 250 - 20 * index)
    return images


def serve_drive(server: LocalServer, ids: list, images: np.ndarray | None = None) -> dict:
    """Route final_data.npy and images.npy; return the fetch URL options."""
    images = solid_images(len(ids)) if images is None else images
    return {"url": server.route("/final_data.npy", Reply(npy_bytes(drive_table(ids)))),
            "images_url": server.route("/images.npy", Reply(npy_bytes(images)))}


def listing(listing_id, **columns: str) -> dict[str, str]:
    """One export row: every column filled, tricky text included; ``columns`` use '_' for ' '."""
    row = {name: f"{name} of {listing_id}" for name in COLUMNS}
    row.update(TRICKY_TEXT, ID=str(listing_id), Price="65.0", City="Madrid", Country="Spain")
    row["Picture Url"] = row["Thumbnail Url"] = ""
    row.update({name.replace("_", " "): value for name, value in columns.items()})
    return row


def export_csv(rows: list[dict[str, str]], columns=None) -> bytes:
    """An OpenDataSoft-like export: BOM, ';', columns in another order plus an extra one."""
    columns = columns or [*reversed(COLUMNS), "Extra Column"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([row.get(name, "extra") for name in columns])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def read_listings(dest: Path) -> pd.DataFrame:
    return pd.read_csv(dest / "listings.csv", sep=";", dtype=str, keep_default_na=False)


def photos_in(dest: Path) -> set[str]:
    return {path.name for path in (dest / "images").iterdir()} if (dest / "images").is_dir() else set()


def assert_no_partial_files(dest: Path) -> None:
    assert [path for path in dest.rglob("*") if path.name.endswith(".part")] == []


# --------------------------------------------------------------------------- drive source


def test_drive_end_to_end_builds_canonical_layout_and_rerun_skips(tmp_path, server):
    urls = serve_drive(server, [101, 202, 303])
    # GitHub's /raw/ URL answers with a redirect: follow it like the real thing.
    server.route("/github/raw/final_data.npy", Reply(status=302, location="/final_data.npy"))
    dest = tmp_path / "data"

    summary = fetch(dest, url=server.url("/github/raw/final_data.npy"),
                    images_url=urls["images_url"])

    assert (summary["status"], summary["exit_code"]) == ("complete", 0)
    assert summary["files"] == {"final_data.npy": "fetched", "images.npy": "fetched"}
    assert summary["photos"] | {"failed_by_reason": {}} == {
        "total": 3, "fetched": 3, "already_present": 0, "failed": 0,
        "transient_failures": 0, "failed_by_reason": {}}
    header = (dest / "listings.csv").read_text(encoding="utf-8").split("\n", 1)[0]
    assert header == ";".join(COLUMNS)
    if REFERENCE_LISTINGS.is_file():
        with open(REFERENCE_LISTINGS, encoding="utf-8") as reference:
            assert header == reference.readline().rstrip("\n")
    table = read_listings(dest)
    assert list(table.columns) == list(COLUMNS)
    assert table["ID"].tolist() == ["101", "202", "303"]
    assert table["Price"].tolist() == ["40.0", "41.0", "42.0"]
    assert table.loc[0, "Accommodates"] == "2" and table.loc[0, "Latitude"] == "40.41"
    assert table.loc[0, "Square Feet"] == "" and table.loc[0, "Beds"] == ""
    for name, text in TRICKY_TEXT.items():
        assert table.loc[2, name] == text
    assert photos_in(dest) == {"101.jpg", "202.jpg", "303.jpg"}
    with Image.open(dest / "images" / "202.jpg") as photo:
        assert (photo.format, photo.size, photo.mode) == ("JPEG", (32, 32), "RGB")
        assert np.abs(np.asarray(photo, dtype=int) - (30, 100, 230)).max() <= 3
    assert json.loads((dest / REPORT_FILE).read_text()) == summary
    assert_no_partial_files(dest)

    hits = dict(server.hits)
    again = fetch(dest, **urls)
    assert server.hits == hits, "a rerun must not download complete files again"
    assert again["files"] == {"final_data.npy": "already_present", "images.npy": "already_present"}
    assert (again["photos"]["already_present"], again["photos"]["fetched"]) == (3, 0)
    assert again["exit_code"] == 0


class _RunsShellCommand:
    """A pickle payload: unpickling it runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def test_drive_refuses_malicious_pickle_without_running_it(tmp_path, server):
    table = drive_table([1, 2, 3])
    table[1, 5] = _RunsShellCommand(tmp_path / "pwned")
    payload = npy_bytes(table)
    server.route("/final_data.npy", Reply(payload))
    server.route("/images.npy", Reply(npy_bytes(solid_images(3))))
    dest = tmp_path / "data"

    summary = fetch(dest, url=server.url("/final_data.npy"), images_url=server.url("/images.npy"))

    assert (summary["status"], summary["exit_code"]) == ("unusable", 2)
    assert "refused to load 'posix.system'" in summary["error"]
    assert "final_data.npy" in summary["error"]
    assert not (tmp_path / "pwned").exists(), "the pickle payload must never run"
    assert not (dest / "raw" / "final_data.npy").exists() and not (dest / "listings.csv").exists()
    assert server.hits["/images.npy"] == 0
    assert_no_partial_files(dest)
    # Control: the payload is real, np.load(allow_pickle=True) would have run it.
    control = tmp_path / "control.npy"
    table[1, 5] = _RunsShellCommand(tmp_path / "control-marker")
    control.write_bytes(npy_bytes(table))
    np.load(control, allow_pickle=True)
    assert (tmp_path / "control-marker").exists()


def _npy_with_pickle(path: Path, pickled: bytes, shape=(1,)) -> Path:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "|O", "fortran_order": False, "shape": shape})
    path.write_bytes(header.getvalue() + pickled)
    return path


@pytest.mark.parametrize("module, name", [
    ("builtins", "eval"), ("builtins", "exec"), ("builtins", "getattr"), ("builtins", "__import__"),
    ("os", "system"), ("subprocess", "Popen"), ("numpy", "load"), ("copyreg", "_reconstructor"),
])
def test_restricted_unpickler_refuses_dangerous_globals(tmp_path, module, name):
    pickled = f"c{module}\n{name}\n(S'1'\ntR.".encode()  # protocol 0: call module.name('1')
    with pytest.raises(UnsafePickleError, match=f"{module}.{name}"):
        load_npy(_npy_with_pickle(tmp_path / "evil.npy", pickled))


@pytest.mark.parametrize("protocol, rename", [(2, False), (3, True), (4, False), (5, False)])
def test_restricted_unpickler_reads_numpy1_and_numpy2_object_arrays(tmp_path, protocol, rename):
    table = np.array([[1, "x", float("nan"), None, np.float64(2.5), np.int64(3), b"raw", 1j]],
                     dtype=object)
    pickled = pickle.dumps(table, protocol=protocol)
    if rename:  # what numpy 1.x writes: "numpy.core" instead of "numpy._core"
        pickled = pickled.replace(b"numpy._core", b"numpy.core")
        assert b"numpy.core.multiarray" in pickled
    loaded = load_npy(_npy_with_pickle(tmp_path / "ok.npy", pickled, table.shape))
    assert loaded.shape == table.shape and loaded[0, 1] == "x" and np.isnan(loaded[0, 2])
    assert loaded[0, 4] == 2.5 and loaded[0, 5] == 3 and loaded[0, 6] == b"raw"


def test_drive_404_is_not_retried(tmp_path, server):
    server.route("/final_data.npy", Reply(b"gone", status=404))
    dest = tmp_path / "data"

    summary = fetch(dest, url=server.url("/final_data.npy"), retries=3)

    assert (summary["status"], summary["exit_code"]) == ("failed", 1)
    assert server.hits["/final_data.npy"] == 1
    assert server.url("/final_data.npy") in summary["error"] and "http_404" in summary["error"]
    assert not (dest / "raw" / "final_data.npy").exists() and not (dest / "listings.csv").exists()
    assert json.loads((dest / REPORT_FILE).read_text())["status"] == "failed"


def test_drive_500_then_success_is_retried(tmp_path, server):
    urls = serve_drive(server, [1, 2, 3])
    body = server.body("/final_data.npy")
    server.route("/final_data.npy", Reply(status=500), Reply(status=503, headers={"Retry-After": "0"}),
                 Reply(body))

    summary = fetch(tmp_path / "data", **urls, retries=2)

    assert summary["exit_code"] == 0 and server.hits["/final_data.npy"] == 3


def test_drive_slow_response_times_out_after_bounded_retries(tmp_path, server):
    urls = serve_drive(server, [1, 2, 3])
    body = server.body("/images.npy")
    server.route("/images.npy", Reply(body, delay=5))
    dest = tmp_path / "data"

    started = time.monotonic()
    summary = fetch(dest, **urls, timeout=0.5, retries=1)

    assert time.monotonic() - started < 4
    assert (summary["status"], summary["exit_code"]) == ("failed", 1)
    assert "(timeout)" in summary["error"] and server.hits["/images.npy"] == 2
    assert not (dest / "raw" / "images.npy").exists()


def test_drive_interrupted_download_leaves_nothing_and_rerun_resumes(tmp_path, server):
    urls = serve_drive(server, [1, 2, 3])
    body = server.body("/images.npy")
    cut = Reply(body, truncate_at=len(body) // 2)  # announces the full length, then hangs up
    server.route("/images.npy", cut, cut, Reply(body))
    dest = tmp_path / "data"

    first = fetch(dest, **urls, retries=1)

    assert (first["status"], first["exit_code"]) == ("failed", 1)
    assert "(incomplete)" in first["error"] and server.hits["/images.npy"] == 2
    assert not (dest / "raw" / "images.npy").exists()
    assert (dest / "raw" / "final_data.npy").is_file()
    assert_no_partial_files(dest)

    second = fetch(dest, **urls, retries=1)

    assert (second["status"], second["exit_code"]) == ("complete", 0)
    assert second["files"] == {"final_data.npy": "already_present", "images.npy": "fetched"}
    assert server.hits["/final_data.npy"] == 1
    assert photos_in(dest) == {"1.jpg", "2.jpg", "3.jpg"}


def test_drive_truncated_npy_without_content_length_is_detected(tmp_path, server):
    urls = serve_drive(server, [1, 2, 3])
    body = server.body("/images.npy")
    server.route("/images.npy", Reply(body[: len(body) // 2], content_length=False))
    dest = tmp_path / "data"

    summary = fetch(dest, **urls, retries=1)

    assert summary["exit_code"] == 1 and "truncated" in summary["error"]
    assert server.hits["/images.npy"] == 2 and not (dest / "raw" / "images.npy").exists()


def test_drive_html_page_instead_of_npy_is_rejected(tmp_path, server):
    urls = serve_drive(server, [1, 2, 3])
    server.route("/images.npy", Reply(b"<!DOCTYPE html><html>Quota exceeded</html>",
                                      headers={"Content-Type": "text/html"}))

    summary = fetch(tmp_path / "data", **urls)

    assert summary["exit_code"] == 1 and "HTML page" in summary["error"]
    assert server.hits["/images.npy"] == 1


@pytest.mark.parametrize("content_length", [True, False])
def test_drive_download_over_the_size_limit_is_aborted(tmp_path, server, content_length):
    urls = serve_drive(server, [1, 2, 3])
    body = server.body("/images.npy")
    server.route("/images.npy", Reply(body, content_length=content_length))
    dest = tmp_path / "data"

    summary = fetch(dest, **urls, max_file_bytes=len(body) - 1)

    assert "(too_large)" in summary["error"] and server.hits["/images.npy"] == 1
    assert not (dest / "raw" / "images.npy").exists()


def test_drive_image_count_must_match_listings(tmp_path, server):
    urls = serve_drive(server, [1, 2, 3], images=solid_images(2))

    summary = fetch(tmp_path / "data", **urls)

    assert (summary["status"], summary["exit_code"]) == ("unusable", 2)
    assert "holds 2 images" in summary["error"] and "3 listings" in summary["error"]


def test_drive_invalid_and_repeated_ids_are_never_used_as_paths(tmp_path, server):
    ids = [101, "abc", -3, "../../escaped", 101, 7.0, True]
    urls = serve_drive(server, ids)
    dest = tmp_path / "data"

    summary = fetch(dest, **urls)

    assert summary["exit_code"] == 0
    assert summary["listings"] == {"source_rows": 7, "written": 2,
                                   "dropped": {"invalid_id": 4, "duplicate_id": 1}}
    assert read_listings(dest)["ID"].tolist() == ["101", "7"]
    assert photos_in(dest) == {"101.jpg", "7.jpg"}
    assert not list(tmp_path.glob("*.jpg")) and not (tmp_path / "escaped.jpg").exists()
    reasons = {entry["listing_id"]: entry["reason"] for entry in summary["failures"]}
    assert reasons["../../escaped"] == "invalid_id"


def test_drive_default_images_come_from_google_drive_via_gdown(tmp_path, server, monkeypatch):
    import gdown

    urls = serve_drive(server, [1, 2, 3])
    calls = []

    def fake_gdown(id=None, output=None, quiet=False, **kwargs):  # noqa: A002 - gdown's name
        calls.append((id, Path(output)))
        Path(output).write_bytes(requests.get(urls["images_url"], timeout=5).content)
        return output

    monkeypatch.setattr(gdown, "download", fake_gdown)
    dest = tmp_path / "data"

    summary = fetch(dest, url=urls["url"])

    assert summary["exit_code"] == 0 and summary["files"]["images.npy"] == "fetched"
    assert calls[0][0] == DRIVE_IMAGES_FILE_ID and calls[0][1].parent == dest.resolve() / "raw"
    assert (dest / "raw" / "images.npy").is_file()


def test_drive_gdown_failure_explains_the_manual_route(tmp_path, server, monkeypatch):
    import gdown

    urls = serve_drive(server, [1, 2, 3])

    def failing_gdown(**kwargs):
        raise RuntimeError("Too many users have viewed or downloaded this file recently")

    monkeypatch.setattr(gdown, "download", failing_gdown)
    summary = fetch(tmp_path / "data", url=urls["url"])

    assert summary["exit_code"] == 1 and "--images-url" in summary["error"]
    assert "Too many users" in summary["error"]


def test_drive_sources_may_be_local_files(tmp_path):
    local = tmp_path / "mirror"
    local.mkdir()
    (local / "final_data.npy").write_bytes(npy_bytes(drive_table([5, 6])))
    (local / "images.npy").write_bytes(npy_bytes(solid_images(2)))

    summary = fetch(tmp_path / "data", url=str(local / "final_data.npy"),
                    images_url=(local / "images.npy").as_uri())

    assert summary["exit_code"] == 0 and photos_in(tmp_path / "data") == {"5.jpg", "6.jpg"}


# --------------------------------------------------------------------------- opendatasoft source


def test_opendatasoft_end_to_end_counts_dead_photos_and_rerun_skips(tmp_path, server):
    good, photo = jpeg_bytes(), server.url
    html = b"<!DOCTYPE html><html><body>Photo not available</body></html>"
    truncated = jpeg_bytes(size=(400, 300))
    server.route("/p/a.jpg", Reply(good))
    server.route("/p/b-dead.jpg", Reply(status=404))
    server.route("/t/b.jpg", Reply(jpeg_bytes((0, 200, 0))))
    server.route("/p/c-dead.jpg", Reply(status=404))
    server.route("/t/c-dead.jpg", Reply(status=410))
    server.route("/p/d.jpg", Reply(html, headers={"Content-Type": "text/html"}))
    server.route("/p/e.jpg", Reply(truncated[: len(truncated) // 2]))
    server.route("/p/f.jpg", Reply(status=500), Reply(good))
    server.route("/p/g.jpg", Reply(good))
    server.route("/p/i.png", Reply(png_bytes()))
    rows = [
        listing(11, Picture_Url=photo("/p/a.jpg"), Price="1200.0"),
        listing(12, Picture_Url=photo("/p/b-dead.jpg"), Thumbnail_Url=photo("/t/b.jpg")),
        listing(13, Picture_Url=photo("/p/c-dead.jpg"), Thumbnail_Url=photo("/t/c-dead.jpg")),
        listing(14, Picture_Url=photo("/p/d.jpg")),
        listing(15, Picture_Url=photo("/p/e.jpg")),
        listing(16, Picture_Url=photo("/p/f.jpg")),
        listing("../../g", Picture_Url=photo("/p/g.jpg")),
        listing(11, Picture_Url=photo("/p/g.jpg")),
        listing(19, Picture_Url=photo("/p/i.png")),
        listing(20),
        listing(21, Picture_Url="file:///etc/hostname"),
    ]
    export_url = server.route("/export.csv", Reply(status=500), Reply(export_csv(rows)))
    dest = tmp_path / "data"

    summary = fetch(dest, "opendatasoft", url=export_url)

    assert (summary["status"], summary["exit_code"]) == ("complete", 0)
    assert server.hits["/export.csv"] == 2 and server.hits["/p/f.jpg"] == 2
    assert server.hits["/p/g.jpg"] == 0 and server.hits["/p/b-dead.jpg"] == 1
    assert summary["listings"] == {"source_rows": 11, "written": 9,
                                   "dropped": {"invalid_id": 1, "duplicate_id": 1}}
    assert summary["photos"] == {
        "total": 9, "fetched": 4, "already_present": 0, "failed": 5, "transient_failures": 0,
        "failed_by_reason": {"bad_url": 1, "http_404": 1, "invalid_image": 2, "no_url": 1}}
    assert photos_in(dest) == {"11.jpg", "12.jpg", "16.jpg", "19.jpg"}
    with Image.open(dest / "images" / "19.jpg") as converted:
        assert converted.format == "JPEG" and converted.mode == "RGB"
    table = read_listings(dest)
    assert list(table.columns) == list(COLUMNS)
    expected = [row for index, row in enumerate(rows) if index not in (6, 7)]
    assert table.to_dict("records") == expected, "values (Price included) are copied as exported"
    assert json.loads((dest / REPORT_FILE).read_text()) == summary
    assert_no_partial_files(dest)

    hits = dict(server.hits)
    again = fetch(dest, "opendatasoft", url=export_url)
    assert again["photos"]["already_present"] == 4 and again["photos"]["failed"] == 5
    assert server.hits["/export.csv"] == hits["/export.csv"]
    assert server.hits["/p/a.jpg"] == hits["/p/a.jpg"] and server.hits["/t/b.jpg"] == hits["/t/b.jpg"]
    assert server.hits["/p/c-dead.jpg"] == hits["/p/c-dead.jpg"] + 1  # dead ones are tried again


def test_opendatasoft_slow_photo_times_out_and_is_reported_as_transient(tmp_path, server):
    server.route("/slow.jpg", Reply(jpeg_bytes(), delay=5))
    export_url = server.route("/export.csv", Reply(export_csv([
        listing(1, Picture_Url=server.url("/slow.jpg"))])))

    started = time.monotonic()
    summary = fetch(tmp_path / "data", "opendatasoft", url=export_url, timeout=0.5, retries=1)

    assert time.monotonic() - started < 4
    assert (summary["status"], summary["exit_code"]) == ("incomplete", 1)
    assert summary["photos"]["failed_by_reason"] == {"timeout": 1}
    assert server.hits["/slow.jpg"] == 2
    assert "rerun" in format_summary(summary)
    assert read_listings(tmp_path / "data")["ID"].tolist() == ["1"]


def test_opendatasoft_interrupted_downloads_are_resumed_by_reruns(tmp_path, server):
    export = export_csv([listing(7, Picture_Url=server.url("/p/7.jpg"))])
    photo = jpeg_bytes(size=(300, 200))
    server.route("/export.csv", Reply(export, truncate_at=len(export) // 2))
    server.route("/p/7.jpg", *[Reply(photo, truncate_at=len(photo) // 3)] * 2, Reply(photo))
    dest = tmp_path / "data"

    first = fetch(dest, "opendatasoft", url=server.url("/export.csv"), retries=1)

    assert (first["status"], first["exit_code"]) == ("failed", 1)
    assert "(incomplete)" in first["error"]
    assert not (dest / "raw" / "opendatasoft-export.csv").exists()
    assert not (dest / "listings.csv").exists()

    server.route("/export.csv", Reply(export))
    second = fetch(dest, "opendatasoft", url=server.url("/export.csv"), retries=1)

    assert (second["status"], second["exit_code"]) == ("incomplete", 1)
    assert second["photos"]["failed_by_reason"] == {"incomplete": 1}
    assert photos_in(dest) == set()
    assert_no_partial_files(dest)

    third = fetch(dest, "opendatasoft", url=server.url("/export.csv"), retries=1)

    assert (third["status"], third["exit_code"]) == ("complete", 0)
    assert third["files"] == {"opendatasoft-export.csv": "already_present"}
    assert third["photos"]["fetched"] == 1 and photos_in(dest) == {"7.jpg"}
    assert server.hits["/p/7.jpg"] == 3


def test_opendatasoft_export_404_and_missing_columns(tmp_path, server):
    missing = server.route("/missing.csv", Reply(status=404))
    summary = fetch(tmp_path / "a", "opendatasoft", url=missing)
    assert (summary["status"], summary["exit_code"]) == ("failed", 1)
    assert server.hits["/missing.csv"] == 1

    columns = [name for name in COLUMNS if name != "Price"]
    narrow = server.route("/narrow.csv", Reply(export_csv([listing(1)], columns=columns)))
    summary = fetch(tmp_path / "b", "opendatasoft", url=narrow)
    assert (summary["status"], summary["exit_code"]) == ("unusable", 2)
    assert "Price" in summary["error"]
    assert not (tmp_path / "b" / "raw" / "opendatasoft-export.csv").exists()


def test_opendatasoft_photo_over_the_size_limit_is_aborted(tmp_path, server):
    server.route("/big.jpg", Reply(jpeg_bytes(size=(200, 200))))
    export_url = server.route("/export.csv", Reply(export_csv([
        listing(1, Picture_Url=server.url("/big.jpg"))])))

    summary = fetch(tmp_path / "data", "opendatasoft", url=export_url, max_photo_bytes=200)

    assert summary["photos"]["failed_by_reason"] == {"too_large": 1}
    assert summary["exit_code"] == 0 and server.hits["/big.jpg"] == 1


def test_opendatasoft_photo_concurrency_is_bounded_by_workers(tmp_path, server):
    rows = []
    for index in range(1, 7):
        rows.append(listing(index, Picture_Url=server.route(f"/p/{index}.jpg",
                                                            Reply(jpeg_bytes(), delay=0.2))))
    export_url = server.route("/export.csv", Reply(export_csv(rows)))

    summary = fetch(tmp_path / "data", "opendatasoft", url=export_url, workers=2)

    assert summary["photos"]["fetched"] == 6
    assert server.max_in_flight == 2


def test_retry_after_is_honoured_when_small_and_refused_when_large(tmp_path, server):
    urls = serve_drive(server, [1, 2, 3])
    body = server.body("/final_data.npy")
    server.route("/final_data.npy", Reply(status=429, headers={"Retry-After": "1"}), Reply(body))

    started = time.monotonic()
    summary = fetch(tmp_path / "a", **urls)
    assert summary["exit_code"] == 0 and time.monotonic() - started >= 0.9

    server.route("/final_data.npy", Reply(status=503, headers={"Retry-After": "3600"}))
    server.hits.clear()
    summary = fetch(tmp_path / "b", **urls)
    assert summary["exit_code"] == 1 and server.hits["/final_data.npy"] == 1
    assert "Retry-After 3600 s" in summary["error"]


# --------------------------------------------------------------------------- project data check


@pytest.mark.parametrize("source", ["drive", "opendatasoft"])  # github: tests/test_github_source.py
def test_fetched_directory_passes_the_project_data_check(tmp_path, server, source):
    dataset_module = pytest.importorskip("shared.data.dataset", reason="shared/data/dataset.py not written yet")
    if source == "drive":
        options = serve_drive(server, [11, 22, 33])
    else:
        rows = [listing(11, Picture_Url=server.route("/p/11.jpg", Reply(jpeg_bytes()))),
                listing(22, Picture_Url=server.route("/p/22.jpg", Reply(png_bytes()))),
                listing(33, Picture_Url=server.route("/p/33.jpg", Reply(status=404)))]
        options = {"url": server.route("/export.csv", Reply(export_csv(rows)))}
    dest = tmp_path / "data"
    assert fetch(dest, source, **options)["exit_code"] == 0

    dataset = dataset_module.load_dataset(dest)

    usable = [11, 22, 33] if source == "drive" else [11, 22]  # 33: dead photo URL, kept in csv
    assert dataset.rows_read == 3
    assert sorted(dataset.frame["ID"].tolist()) == usable


def _real_rows() -> list[list[str]]:
    listings = REAL_DATA_DIR / "listings.csv"
    if not listings.is_file():
        pytest.skip(f"real dataset absent: no {listings} (set AIRBNB_DATA_DIR)")
    with open(listings, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter=";"))
    if tuple(rows[0]) != COLUMNS:
        pytest.skip(f"{listings} does not have the 89 OpenDataSoft columns")
    return rows


@pytest.mark.realdata
def test_real_listings_through_the_drive_source_come_out_byte_identical(tmp_path, server):
    rows = _real_rows()
    table = np.array(rows[1:], dtype=object)
    urls = {"url": server.route("/final_data.npy", Reply(npy_bytes(table))),
            "images_url": server.route("/images.npy", Reply(npy_bytes(
                np.zeros((len(table), 8, 8, 3), dtype=np.uint8))))}

    summary = fetch(tmp_path / "data", **urls)

    assert summary["exit_code"] == 0 and summary["photos"]["fetched"] == len(table)
    assert (tmp_path / "data" / "listings.csv").read_bytes() == \
        (REAL_DATA_DIR / "listings.csv").read_bytes()


@pytest.mark.realdata
def test_real_export_and_photos_through_the_opendatasoft_source(tmp_path, server):
    header, *rows = _real_rows()
    rows = [row for row in rows if (REAL_DATA_DIR / "images" / f"{row[0]}.jpg").is_file()][:60]
    picture, thumbnail = COLUMNS.index("Picture Url"), COLUMNS.index("Thumbnail Url")
    for row in rows:  # photos come from the local server, never from the 2017 URLs
        photo = (REAL_DATA_DIR / "images" / f"{row[0]}.jpg").read_bytes()
        row[picture] = server.route(f"/photos/{row[0]}.jpg", Reply(photo))
        row[thumbnail] = server.url(f"/thumbs/{row[0]}.jpg")
    export = export_csv([dict(zip(header, row, strict=True)) for row in rows])
    dest = tmp_path / "data"

    summary = fetch(dest, "opendatasoft", url=server.route("/export.csv", Reply(export)))

    assert summary["exit_code"] == 0 and summary["photos"]["fetched"] == len(rows)
    with open(dest / "listings.csv", encoding="utf-8", newline="") as handle:
        assert list(csv.reader(handle, delimiter=";")) == [header, *rows]
    for row in rows[:10]:
        assert (dest / "images" / f"{row[0]}.jpg").read_bytes() == \
            (REAL_DATA_DIR / "images" / f"{row[0]}.jpg").read_bytes()
    assert not any(path.startswith("/thumbs/") for path in server.hits)


# --------------------------------------------------------------------------- destination and CLI


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airbnb-dl data")
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_fetch_returns_exit_codes(tmp_path, server, capsys):
    urls = serve_drive(server, [1, 2, 3])
    base = ["fetch", "--source", "drive", "--url", urls["url"], "--images-url",
            urls["images_url"], "--timeout", "5", "--retries", "1", "--workers", "2",
            "--no-progress"]

    args = _parser().parse_args([*base, "--dest", str(tmp_path / "ok")])
    assert args.func(args) == 0
    output = capsys.readouterr().out
    assert urls["url"] in output and "fetch summary" in output  # says what and from where

    server.route("/images.npy", Reply(npy_bytes(solid_images(1))))
    args = _parser().parse_args([*base, "--dest", str(tmp_path / "bad")])
    assert args.func(args) == 2

    with pytest.raises(SystemExit):
        _parser().parse_args([*base, "--workers", "0"])


def test_cli_default_dest_comes_from_the_project_config(tmp_path, server, monkeypatch):
    pytest.importorskip("shared.environment", reason="shared/environment.py is not written yet")
    urls = serve_drive(server, [1, 2, 3])
    monkeypatch.setenv("AIRBNB_DATA_DIR", str(tmp_path / "configured"))
    args = _parser().parse_args(["fetch", "--source", "drive", "--url", urls["url"],
                                 "--images-url", urls["images_url"], "--no-progress"])
    assert args.func(args) == 0
    assert (tmp_path / "configured" / "listings.csv").is_file()


def test_foreign_datasets_are_never_overwritten(tmp_path, server, capsys):
    urls = serve_drive(server, [1, 2, 3])
    foreign = tmp_path / "sample"
    foreign.mkdir()
    (foreign / "listings.csv").write_text("ID\n1\n")
    with pytest.raises(DestinationError, match="did not create"):
        fetch(foreign, **urls)
    assert (foreign / "listings.csv").read_text() == "ID\n1\n"

    args = _parser().parse_args(["fetch", "--source", "drive", "--dest", str(foreign), "--url",
                                 urls["url"], "--images-url", urls["images_url"], "--no-progress"])
    assert args.func(args) == 2 and "refusing to overwrite" in capsys.readouterr().err

    mine = tmp_path / "mine"
    assert fetch(mine, **urls)["exit_code"] == 0
    with pytest.raises(DestinationError, match="'drive'"):
        fetch(mine, "opendatasoft", url=urls["url"])


# --------------------------------------------------------------------------- small units


def test_csv_rows_are_quoted_only_when_needed():
    assert format_csv_row(["1", "plain", ""]) == "1;plain;\n"
    assert format_csv_row(['a;b', 'say "hi"', "x\ny", "cr\ronly"]) == \
        '"a;b";"say ""hi""";"x\ny";"cr\ronly"\n'


@pytest.mark.parametrize("value, expected", [
    (15141125, 15141125), ("15141125", 15141125), (" 42 ", 42), (7.0, 7), (np.int64(9), 9),
    (0, None), (-3, None), (7.5, None), ("abc", None), ("../1", None), ("1e3", None),
    ("", None), (None, None), (True, None), ("١٢", None), (float("nan"), None),
])
def test_parse_listing_id(value, expected):
    assert parse_listing_id(value) == expected


def test_parse_retry_after():
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_one_implementation_per_fact_is_shared_with_the_rest_of_the_project():
    from shared import io as shared_io
    from shared import io as restricted_pickle
    from shared.data import dataset
    from shared.data.acquisition import github_photos, layout, safe_pickle
    from shared.features.backbones import torch_legacy

    assert layout.check_photo is github_photos.check_photo is dataset.check_photo
    assert layout.parse_listing_id is dataset.parse_listing_id
    assert safe_pickle.UnsafePickleError is torch_legacy.UnsafePickleError \
        is restricted_pickle.UnsafePickleError
    assert issubclass(safe_pickle.NumpyArrayUnpickler, restricted_pickle.RestrictedUnpickler)
    assert issubclass(torch_legacy.StateDictUnpickler, restricted_pickle.RestrictedUnpickler)
    assert safe_pickle.NumpyArrayUnpickler.allowed is not torch_legacy.StateDictUnpickler.allowed
    from shared.data.acquisition import http
    assert http.atomic_path is shared_io.atomic_path


def test_photo_checks_of_fetch_and_loader_agree(tmp_path):
    from shared.data.acquisition.layout import photo_is_valid
    from shared.data.dataset import check_photo

    good, html, cut = tmp_path / "good.jpg", tmp_path / "html.jpg", tmp_path / "cut.jpg"
    good.write_bytes(jpeg_bytes())
    html.write_bytes(b"<html>quota exceeded</html>")
    cut.write_bytes(jpeg_bytes()[:300])
    for path, usable in ((good, True), (html, False), (cut, False)):
        assert photo_is_valid(path) is usable
        assert (check_photo(path, convert=False).reason is None) is usable
